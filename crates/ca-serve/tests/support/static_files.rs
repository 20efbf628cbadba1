//! A plain static file server for the exported page (no `ca-serve`): GET
//! of a file under a folder, with a content type by extension, as any
//! static host would serve it.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// The content type of a file, by its extension.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

async fn serve_file(root: PathBuf, uri: Uri) -> Response {
    let relative = uri.path().trim_start_matches('/');
    let relative = if relative.is_empty() || relative.ends_with('/') {
        format!("{relative}index.html")
    } else {
        relative.to_string()
    };
    let path = Path::new(&relative);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match std::fs::read(root.join(path)) {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(path))], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves the files of `root` on a free loopback port, on the test's
/// runtime; returns the address.
pub async fn serve_folder(root: &Path) -> SocketAddr {
    let root = root.to_path_buf();
    let app = axum::Router::new().fallback(move |uri: Uri| serve_file(root.clone(), uri));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
