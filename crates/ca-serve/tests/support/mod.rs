//! Helpers of the HTTP and browser tests: a server on a free loopback port,
//! a small HTTP client, multipart bodies and the fixture photos.

#![allow(dead_code)] // each test binary uses its own subset

pub mod browser;
pub mod static_files;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ca_serve::{AppState, ServeConfig, Server};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Longest wait for one HTTP answer (a segmentation of 100 steps takes
/// well under a second; the machine may be busy).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed models folder.
pub fn models_dir() -> PathBuf {
    repo_root().join("models")
}

/// A fixture photo of `fixtures/pets-synthetic/images`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root()
        .join("fixtures/pets-synthetic/images")
        .join(format!("{name}.jpg"))
}

/// The bytes of a fixture photo.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("read a fixture photo")
}

/// `config` with a free port and the committed models folder unless it
/// names another.
pub fn test_config(config: ServeConfig) -> ServeConfig {
    ServeConfig { port: 0, ..config }
}

/// A server for `config` (port 0: a free one) running on the test's
/// runtime; its address and state.
pub async fn start(config: ServeConfig) -> (SocketAddr, AppState) {
    let server = Server::bind(test_config(config))
        .await
        .expect("the server starts");
    let addr = server.local_addr().expect("bound address");
    assert!(addr.ip().is_loopback(), "{addr}");
    let state = server.state().clone();
    tokio::spawn(server.run());
    (addr, state)
}

/// A server with the committed models and the default limits.
pub async fn start_default() -> (SocketAddr, AppState) {
    start(ServeConfig {
        models_dir: models_dir(),
        ..ServeConfig::default()
    })
    .await
}

/// An answer: status, content type, body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `content-type` header.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// The `retry-after` header, when there is one.
    pub retry_after: Option<String>,
    /// The `allow` header, when there is one.
    pub allow: Option<String>,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` message of a JSON error body, after checking the status.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        self.json()["error"]
            .as_str()
            .expect("an error message")
            .to_string()
    }
}

/// Sends a request to `http://addr{path}`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let headers: Vec<(&str, &str)> = content_type
        .map(|t| ("content-type", t))
        .into_iter()
        .collect();
    request_with(addr, method, path, &headers, body).await
}

/// Sends a request with `headers` to `http://addr{path}`.
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("a request");
    let work = async {
        let res = client.request(req).await.expect("an answer");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = res
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes()
            .to_vec();
        Answer {
            status,
            content_type,
            body,
            retry_after,
            allow,
        }
    };
    tokio::time::timeout(HTTP_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {HTTP_TIMEOUT:?}"))
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, None, vec![]).await
}

/// A multipart/form-data body of `(name, file name, bytes)` fields: its
/// content type and bytes.
pub fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "cellseg-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, file, bytes) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST path` with a multipart body of `fields`.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    fields: &[(&str, Option<&str>, &[u8])],
) -> Answer {
    let (content_type, body) = multipart(fields);
    request(addr, "POST", path, Some(&content_type), body).await
}

/// A PNG of `image`.
pub fn png_bytes(image: &image::RgbImage) -> Vec<u8> {
    ca_data::hostile::png_bytes(image)
}

/// A fresh, empty directory for one test, removed on drop.
pub use tempfile::TempDir;

/// A fresh, empty directory `$TMPDIR/ca-serve-NAME-XXXXXX` for one test.
pub fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ca-serve-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}
