//! Errors: [`ApiError`], what a client gets (a status and a JSON body
//! `{"error": "..."}`), and [`ServeError`], why the server could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Seconds a page refused for want of a colony slot is told to wait.
pub const BUSY_RETRY_SECONDS: u64 = 10;

/// An error answered to a client: an HTTP status and a message, sent as
/// `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// Seconds after which a retry may succeed, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error of `status` with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed or its content is not acceptable.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such model or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413: the upload or the image is over a limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 503 with `Retry-After` ([`BUSY_RETRY_SECONDS`]): every colony slot
    /// is taken.
    pub fn busy(max_colonies: usize) -> Self {
        Self::api_busy(
            format!(
                "server busy: all {max_colonies} colonies are in use; close another page or retry in {BUSY_RETRY_SECONDS} s"
            ),
            BUSY_RETRY_SECONDS,
        )
    }

    /// 503 with `Retry-After: seconds`: every API slot is taken and the
    /// queue is full, or the wait in it ran out.
    pub fn api_busy(message: impl Into<String>, seconds: u64) -> Self {
        ApiError {
            retry_after: Some(seconds),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// 500: a failure of the server, not of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The JSON body `{"error": message}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is out of range.
    #[error("bad setting: {0}")]
    Config(#[from] ca_core::InvalidValue),
    /// The models folder cannot be listed.
    #[error("cannot list the models folder {}: {source}", dir.display())]
    ModelsDir {
        /// The folder.
        dir: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The default model is not in the models folder.
    #[error("the default model '{name}' is not in {} (found: {found})", dir.display())]
    NoDefaultModel {
        /// The model name.
        name: String,
        /// The folder.
        dir: PathBuf,
        /// The names found, comma-separated.
        found: String,
    },
    /// The port cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}
