//! The server's second hostile round (issue 35), against a running server
//! on loopback: a page that stops reading, slow and idle connections, more
//! connections than the cap, other origins, a phone photo's orientation,
//! the page refusal's `Retry-After`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ca_data::hostile::{jpeg_with_orientation, red_left_blue_right};
use ca_serve::ServeConfig;
use futures_util::SinkExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};

const PHOTO: &str = "synth-cat-001";

/// Waits until `done` holds, at most `within`; the time it took.
async fn eventually(within: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// A WebSocket to `/ws` over a socket with a small receive buffer, so that
/// a client that stops reading fills its window within a few frames.
async fn socket_that_will_stop_reading(
    addr: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(addr).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .expect("a live colony");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_stop_reading_free_their_slots_at_the_send_timeout() {
    // Four pages that send a photo and never read again held every slot
    // past every timeout, their colonies stepping at full speed.
    let send_timeout = Duration::from_secs(2);
    let (addr, state) = start(ServeConfig {
        models_dir: models_dir(),
        max_colonies: 4,
        send_timeout,
        photo_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
        max_fps: 60,
        ..ServeConfig::default()
    })
    .await;
    let photo = fixture_bytes(PHOTO);
    let mut silent = Vec::new();
    for _ in 0..4 {
        let mut socket = socket_that_will_stop_reading(addr).await;
        let mut message = vec![b'P'];
        message.extend_from_slice(&photo);
        socket.send(Message::Binary(message.into())).await.unwrap();
        silent.push(socket);
    }
    assert_eq!(state.live_colonies(), 4);
    // The idle timeout is 10 minutes: only the send timeout can free them.
    let took = eventually(Duration::from_secs(60), "every slot freed", || {
        state.live_colonies() == 0
    })
    .await;
    eprintln!("four silent pages freed in {took:?}");
    // A new page gets a colony.
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("a slot for a new page");
    drop((socket, silent));
}

/// Reads until the server closes `stream` (read returns 0 or fails), at
/// most `within`; how long that took.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let header_timeout = Duration::from_secs(1);
    let (addr, _) = start(ServeConfig {
        models_dir: models_dir(),
        header_timeout,
        ..ServeConfig::default()
    })
    .await;
    // Slowloris: one header byte every 200 ms, never the end of the headers.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let trickle = async {
        for byte in b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let start = Instant::now();
    trickle.await;
    let took = start.elapsed() + closed_within(&mut slow, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(8), "slowloris held {took:?}");
    // An idle connection that never sends a byte.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let took = closed_within(&mut idle, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(5), "idle held {took:?}");
    // A keep-alive connection after one answered request.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let took = closed_within(&mut kept, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(5), "keep-alive held {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_503_and_idle_ones_give_way() {
    let (addr, _) = start(ServeConfig {
        models_dir: models_dir(),
        max_connections: 3,
        header_timeout: Duration::from_secs(2),
        ..ServeConfig::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = get(addr, "/api/status").await;
    assert!(
        refused.error(503).contains("all 3 connections are open"),
        "{refused:?}"
    );
    assert_eq!(refused.retry_after.as_deref(), Some("5"));
    // The idle ones are closed at the header timeout; then there is room.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(addr, "/api/status").await.status, 200);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_get_403_on_the_socket_and_the_api() {
    let (addr, state) = start(ServeConfig {
        models_dir: models_dir(),
        allow_origins: vec!["https://friend.example".into()],
        ..ServeConfig::default()
    })
    .await;
    let photo = fixture_bytes(PHOTO);
    let (content_type, body) = multipart(&[("image", Some("cat.jpg"), &photo)]);
    let own = format!("http://{addr}");
    for (origin, status) in [
        (Some("http://evil.example"), 403),
        (Some("null"), 403),
        (Some(own.as_str()), 200),
        (Some("https://friend.example"), 200),
        (None, 200),
    ] {
        let mut headers = vec![("content-type", content_type.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        let answer = request_with(addr, "POST", "/api/segment", &headers, body.clone()).await;
        assert_eq!(answer.status, status, "{origin:?}");
        if status == 403 {
            let message = answer.error(403);
            assert!(message.contains("may not use this server"), "{message}");
        }
    }
    // The WebSocket handshake of a foreign page: 403, no colony.
    let mut handshake =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/ws"))
            .unwrap();
    handshake
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(handshake).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    assert_eq!(state.live_colonies(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_photo_is_segmented_as_it_is_shown() {
    let (addr, _) = start_default().await;
    // Stored 160 x 107 with orientation 6: shown 107 wide, 160 tall.
    let jpeg = jpeg_with_orientation(&red_left_blue_right(), 6);
    let json = post_form(
        addr,
        "/api/segment?format=json&size=native&steps=5",
        &[("image", Some("phone.jpg"), &jpeg)],
    )
    .await;
    let v = json.json();
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(107), Some(160))
    );
    assert_eq!(v["labels"].as_array().unwrap().len(), 160);
    let png = post_form(
        addr,
        "/api/segment?size=native&steps=5",
        &[("image", Some("phone.jpg"), &jpeg)],
    )
    .await;
    let map = image::load_from_memory(&png.body).expect("a PNG");
    assert_eq!((map.width(), map.height()), (107, 160));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_refused_for_want_of_a_slot_is_told_when_to_retry() {
    let (addr, _) = start(ServeConfig {
        models_dir: models_dir(),
        max_colonies: 1,
        ..ServeConfig::default()
    })
    .await;
    let (first, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let retry = response.headers().get("retry-after").expect("Retry-After");
            assert_eq!(retry.to_str().unwrap(), "10");
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    drop(first);
}
