//! One log line per request (`tracing`, target `ca_serve::log`): method,
//! path, status, milliseconds and the peer's address. Paths are escaped and
//! cut, so that a request cannot write lines of its own into the log.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Longest path written to the log, in characters.
const MAX_LOGGED_PATH: usize = 200;

/// The middleware: the request's line once its answer is ready (a
/// WebSocket's at its upgrade, 101), at `warn` for a 5xx, else at `info`.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path: String = request
        .uri()
        .path()
        .escape_default()
        .to_string()
        .chars()
        .take(MAX_LOGGED_PATH)
        .collect();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if response.status().is_server_error() {
        tracing::warn!(%method, %path, status, ms, %peer, "request");
    } else {
        tracing::info!(%method, %path, status, ms, %peer, "request");
    }
    response
}
