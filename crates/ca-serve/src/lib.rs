//! The live web demo and HTTP API of the segmentation cellular automaton.
//!
//! [`Server::bind`] listens on [`ServeConfig::bind`] (127.0.0.1 by default) and serves:
//!
//! - `GET /`: one page (HTML, JS and CSS embedded in the binary, the files
//!   of [`web::FILES`]) where a photo or a webcam stream is segmented live:
//!   by default in the visitor's browser (WebGL2, `static/colony/`), from
//!   the model files at `GET /models/NAME.safetensors` (listed at
//!   `GET /models/index.json`), with no colony on the server; or, by the
//!   page's switch or where the browser has no WebGL2, on the server:
//!   frames of the colony are pushed over a WebSocket
//!   (`GET /ws?model=NAME`), the page sends its commands and images back
//!   ([`session`]);
//! - `POST /api/segment`: a multipart field `image` (JPEG or PNG, decoded
//!   by [`ca_data::decode_photo`]: EXIF orientation applied), optional
//!   `steps` and `model` in the form or the query; answers the class map as
//!   an 8-bit palette PNG, or with `?format=json` the counts per class and
//!   the label grid, at the model's square grid or with `?size=native` at
//!   the photo's displayed size (JSON up to
//!   [`ServeConfig::max_json_cells`] labels, 413 past it);
//! - `GET /api/models`: the models folder listed again, with each model's
//!   size and validation IoU; `GET /api/status`: both slot pools (pages,
//!   API calls) and the limits.
//!
//! Errors are JSON `{"error": "..."}` with a status ([`ApiError`]): 400 for
//! a bad request or a non-image or truncated upload, 403 for a page of
//! another origin on `/ws` or `/api/...` ([`origin`]), 404 for an unknown
//! model or route, 405 (with `Allow`) for a wrong method, 413 over the byte
//! or image limits, 503 with `Retry-After` when all
//! [`ServeConfig::max_colonies`] page slots are in use, an API call found
//! no slot within [`ServeConfig::api_wait`], or all
//! [`ServeConfig::max_connections`] connections are open ([`listen`]), 500
//! for a server failure (panics included). Slow, idle and non-reading
//! clients are closed at [`ServeConfig::header_timeout`] and
//! [`ServeConfig::send_timeout`]; every request and slot event is logged
//! ([`log`]). The server writes no files; it reads models only
//! from its models folder, by a name the folder listed ([`models`]).
#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod error;
pub mod listen;
#[cfg(feature = "cli")]
pub mod load;
pub mod log;
pub mod models;
pub mod origin;
pub mod routes;
pub mod session;
pub mod upload;
pub mod views;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ConfigError, ServeConfig};
pub use error::{ApiError, ServeError};
pub use models::{LoadedModel, ModelRegistry};
pub use routes::{guarded, router, AppState};

/// A bound server, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Server {
    /// Validates `config`, lists its models folder (which must hold the
    /// default model) and binds its address and port.
    pub async fn bind(config: ServeConfig) -> Result<Self, ServeError> {
        config.validate()?;
        let models = ModelRegistry::open(&config.models_dir)?;
        if !models.names().contains(&config.default_model) {
            return Err(ServeError::NoDefaultModel {
                name: config.default_model.clone(),
                dir: config.models_dir.clone(),
                found: models.names().join(", "),
            });
        }
        let addr = SocketAddr::from((config.bind, config.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Server {
            listener,
            state: AppState::new(config, Arc::new(models)),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.listener.local_addr()?)
    }

    /// The shared state (models, colony slots), e.g. to watch the colonies.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the process ends ([`listen::serve`]: header timeout,
    /// connection cap, request log).
    pub async fn run(self) {
        let config = self.state.config.clone();
        listen::serve(self.listener, router(self.state), config).await
    }
}
