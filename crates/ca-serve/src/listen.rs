//! Connections, accepted here rather than by `axum::serve` so that each one
//! gets hyper's header read timeout ([`ServeConfig::header_timeout`]: a
//! client that trickles its headers, or a keep-alive connection left idle,
//! is closed), the open connections are counted against
//! [`ServeConfig::max_connections`] (one more is answered 503 with
//! `Retry-After` and closed, so idle sockets cannot take every file
//! descriptor), and the peer's address reaches the request log.
//!
//! A WebSocket's connection leaves the count when it is upgraded: from
//! then on the page holds a colony slot instead, bounded by
//! [`ServeConfig::max_colonies`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::ServeConfig;

/// Seconds a client refused for want of a connection slot is told to wait
/// (pages refused for want of a colony slot: [`crate::error::BUSY_RETRY_SECONDS`]).
const CONNECTION_RETRY_SECONDS: u64 = 5;

/// Connections over the cap being answered at once.
const MAX_REFUSING: usize = 256;

/// Longest the refusal of a connection over the cap waits for the request's
/// headers (an answer before the request confuses some clients; an idle
/// flood sends none).
const REFUSAL_HEADER_WAIT: Duration = Duration::from_millis(250);

/// Longest the refusal takes to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (out of file descriptors: the pause lets
/// closing connections give theirs back instead of spinning).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, app: Router, config: Arc<ServeConfig>) {
    let open = Arc::new(Semaphore::new(config.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                max_connections = config.max_connections,
                "connection refused: every connection slot is open"
            );
            // At most MAX_REFUSING answered refusals at once; past that a
            // flood is closed without a word, so that it cannot hold
            // descriptors through its refusals either.
            if let Ok(refusing) = refusing.clone().try_acquire_owned() {
                let max = config.max_connections;
                tokio::spawn(async move {
                    let _refusing = refusing;
                    refuse(stream, max).await
                });
            }
            continue;
        };
        let service =
            app.clone()
                .map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let header_timeout = config.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            if let Err(e) = connection.await {
                log_connection_error(peer, header_timeout, &e);
            }
        });
    }
}

/// Logs why a connection ended in error: a header read timeout (a slow or
/// idle client) at `info`, anything else (a reset, a malformed request) at
/// `debug`.
fn log_connection_error(peer: SocketAddr, header_timeout: Duration, error: &hyper::Error) {
    if error.is_timeout() {
        tracing::info!(
            %peer,
            timeout_s = header_timeout.as_secs_f64(),
            "connection closed: no complete request headers within the header timeout (slow or idle client)"
        );
    } else {
        tracing::debug!(%peer, error = %error, "connection ended");
    }
}

/// Answers a connection over the cap with a 503 once its request's headers
/// are in, or when they do not come within [`REFUSAL_HEADER_WAIT`], and
/// closes it. Reading the headers first keeps the close from resetting the
/// answer (unread bytes turn a close into a reset).
async fn refuse(mut stream: TcpStream, max_connections: usize) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    let headers_in = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_HEADER_WAIT, headers_in).await;
    let body = serde_json::json!({
        "error": format!(
            "server busy: all {max_connections} connections are open; retry in {CONNECTION_RETRY_SECONDS} s"
        )
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {CONNECTION_RETRY_SECONDS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE, answer).await;
}
