//! Cross-site requests: `/ws` and `/api/...` answer only pages of the
//! server's own origin, or of [`crate::ServeConfig::allow_origins`].
//! Browsers send `Origin` with every WebSocket handshake and every
//! cross-site POST, so a page on another site that a visitor opens cannot
//! take the colonies of a server on their machine or network
//! (cross-site WebSocket hijacking); a request without `Origin` (curl, a
//! script) is not a browser's cross-site request and passes.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::routes::AppState;

/// The middleware: 403 for a request whose `Origin` is neither the
/// server's own (the scheme's host and port equal to the request's
/// `Host`) nor listed.
pub async fn same_origin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match check(origin.to_str().ok(), host, &app.config.allow_origins) {
        Ok(()) => next.run(request).await,
        Err(message) => {
            tracing::warn!(
                origin = %String::from_utf8_lossy(origin.as_bytes()).escape_default(),
                path = %request.uri().path().escape_default(),
                "refused a request from another origin"
            );
            ApiError::new(StatusCode::FORBIDDEN, message).into_response()
        }
    }
}

/// Whether a request with `Origin: origin` and `Host: host` may go on;
/// the error is the 403's message.
pub fn check(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> Result<(), String> {
    let origin = origin.ok_or("the Origin header is not text")?;
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if let (Some(authority), Some(host)) = (authority, host) {
        if authority.eq_ignore_ascii_case(host) {
            return Ok(());
        }
    }
    let shown: String = origin
        .escape_default()
        .to_string()
        .chars()
        .take(200)
        .collect();
    Err(format!(
        "origin '{shown}' may not use this server: only its own pages ({}) and the origins given with --allow-origin",
        host.map(|h| format!("http://{}", h.escape_default()))
            .unwrap_or_else(|| "no Host header".into())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_and_listed_origins_pass_others_do_not() {
        let listed = vec!["https://app.example.org".to_string()];
        let host = Some("127.0.0.1:8080");
        for origin in [
            "http://127.0.0.1:8080",
            "https://127.0.0.1:8080",
            "https://APP.example.org",
        ] {
            assert_eq!(check(Some(origin), host, &listed), Ok(()), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8081",
            "http://127.0.0.1",
            "null",
            "https://app.example.org.evil.example",
        ] {
            let err = check(Some(origin), host, &listed).unwrap_err();
            assert!(
                err.contains(origin) && err.contains("--allow-origin"),
                "{err}"
            );
        }
        assert!(check(None, host, &listed).is_err());
        assert!(check(Some("http://127.0.0.1:8080"), None, &[]).is_err());
    }
}
