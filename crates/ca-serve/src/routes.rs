//! The router: the page, the WebSocket of a live colony and the HTTP API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::Arc;

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;

use ca_core::Settling;
use ca_viz::render;
use ca_viz::segment::{segment as run_segment, SegmentOptions};

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::models::{LoadedModel, ModelRegistry};
use crate::session::{self, ClientCommand, Command, Outgoing, SessionLimits};
use crate::upload::{decode_image, UploadLimits};
use crate::views;
use crate::web;

/// The page's icon, also answered at `/favicon.ico`.
const FAVICON_SVG: &str = include_str!("../static/favicon.svg");

/// Bytes a multipart body may hold beyond the image (boundaries, headers,
/// the small fields).
const MULTIPART_OVERHEAD: usize = 64 << 10;

/// Commands and images of a page waiting for its colony; a damage stroke
/// beyond this is dropped, any other command waits for room (and the
/// socket is not read meanwhile).
pub const COMMAND_QUEUE: usize = 16;

/// Frames and notices waiting for a slow page; the colony drops frames
/// beyond this.
const OUTGOING_QUEUE: usize = 4;

/// First byte of a WebSocket image message: a photo (restart from noise).
pub const PHOTO_MESSAGE: u8 = b'P';
/// First byte of a WebSocket image message: a video frame (keep the state).
pub const VIDEO_MESSAGE: u8 = b'V';

/// What the handlers share: the settings, the models and the two pools of
/// colony slots (live pages, API calls).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The settings.
    pub config: Arc<ServeConfig>,
    /// The models folder.
    pub models: Arc<ModelRegistry>,
    colonies: Arc<Semaphore>,
    api: Arc<Semaphore>,
    api_waiting: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

/// Decrements the count of queued API calls when the wait ends, however it
/// ends (slot, timeout, or the client gone and the future dropped).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppState {
    /// The state of a server with `config` and `models`.
    pub fn new(config: ServeConfig, models: Arc<ModelRegistry>) -> Self {
        let colonies = Arc::new(Semaphore::new(config.max_colonies));
        let api = Arc::new(Semaphore::new(config.max_api_colonies));
        AppState {
            config: Arc::new(config),
            models,
            colonies,
            api,
            api_waiting: Arc::new(AtomicUsize::new(0)),
            started: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Live pages' colonies alive now.
    pub fn live_colonies(&self) -> usize {
        self.config.max_colonies - self.colonies.available_permits()
    }

    /// Live pages' colonies started since the server started (a page
    /// that runs its colony in the browser starts none).
    pub fn colonies_started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// API calls segmenting now.
    pub fn api_running(&self) -> usize {
        self.config.max_api_colonies - self.api.available_permits()
    }

    /// API calls waiting for a slot now.
    pub fn api_waiting(&self) -> usize {
        self.api_waiting.load(Ordering::SeqCst)
    }

    /// A live page's colony slot, held until dropped; 503 when all are
    /// taken.
    fn take_colony(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let permit = self.colonies.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(
                max_colonies = self.config.max_colonies,
                "page refused: every colony slot is taken"
            );
            ApiError::busy(self.config.max_colonies)
        })?;
        self.started.fetch_add(1, Ordering::SeqCst);
        Ok(permit)
    }

    /// An API slot, held until dropped: at once when one is free, else
    /// after a wait in the queue of at most [`ServeConfig::api_wait`]; 503
    /// with `Retry-After` when the queue ([`ServeConfig::api_queue`]) is
    /// full or the wait runs out.
    pub async fn take_api_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.api.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let c = &self.config;
        let retry = c.api_wait.as_secs().clamp(1, 60);
        if self.api_waiting.fetch_add(1, Ordering::SeqCst) >= c.api_queue {
            self.api_waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::api_busy(
                format!(
                    "server busy: all {} API slots are in use and {} calls are queued; retry later",
                    c.max_api_colonies, c.api_queue
                ),
                retry,
            ));
        }
        let _waiting = Waiting(self.api_waiting.clone());
        match tokio::time::timeout(c.api_wait, self.api.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::internal("the API slots are closed")),
            Err(_) => Err(ApiError::api_busy(
                format!(
                    "server busy: no API slot came free in {:.1} s; retry later",
                    c.api_wait.as_secs_f64()
                ),
                retry,
            )),
        }
    }

    fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            max_bytes: self.config.max_upload_bytes,
            image: ca_data::ImageLimits {
                max_pixels: self.config.max_pixels,
                ..ca_data::ImageLimits::default()
            },
        }
    }

    fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            upload: self.upload_limits(),
            max_steps: self.config.max_steps,
            max_fps: self.config.max_fps,
            view_size: self.config.view_size,
            uncertainty_runs: self.config.uncertainty_runs,
        }
    }

    /// The model `name`, or the default, loaded off the async runtime.
    async fn model(&self, name: Option<String>) -> Result<Arc<LoadedModel>, ApiError> {
        let name = name.unwrap_or_else(|| self.config.default_model.clone());
        let models = self.models.clone();
        tokio::task::spawn_blocking(move || models.get(&name))
            .await
            .map_err(|_| ApiError::internal("loading the model failed (panic)"))?
    }
}

/// The server's routes on `state`, [`guarded`].
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_upload_bytes + MULTIPART_OVERHEAD;
    let mut routes = Router::new();
    for f in web::FILES {
        routes = routes.route(&format!("/{}", f.path), get(|| async { page_file(f.path) }));
    }
    let routes = routes
        .route("/", get(|| async { page_file("index.html") }))
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route("/models/index.json", get(models_index))
        .route("/models/{file}", get(model_file))
        .merge(
            Router::new()
                .route("/api/models", get(list_models))
                .route("/api/status", get(status))
                .route("/api/segment", post(segment))
                .route("/ws", get(live_socket))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::origin::same_origin,
                )),
        )
        .fallback(|| async { ApiError::not_found("no such page or API route") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    guarded(routes, body_limit).layer(axum::middleware::from_fn(crate::log::log_request))
}

/// 405 as every error: a JSON body, and the `Allow` header.
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let allow = if uri.path() == "/api/segment" {
        "POST"
    } else {
        "GET, HEAD"
    };
    let message = format!(
        "method {method} is not allowed on {}: use {allow}",
        uri.path().escape_default()
    );
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// `router` with the guards every route has: request bodies limited to
/// `body_limit` bytes, and a panic in a handler answered as a JSON 500
/// instead of a dropped connection.
pub fn guarded(router: Router, body_limit: usize) -> Router {
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("internal error: the request handler panicked").into_response()
        }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The file of [`web::FILES`] at `path`.
fn page_file(path: &str) -> Response {
    match web::file(path) {
        Some(f) => asset(f.content_type, f.body),
        None => ApiError::not_found("no such page or API route").into_response(),
    }
}

/// `GET /models/index.json`: the models the page may load
/// ([`web::models_index`]), a server behind them.
async fn models_index(State(app): State<AppState>) -> Response {
    let index = web::models_index(&app.models.names(), &app.config.default_model, true);
    ([(header::CACHE_CONTROL, "no-cache")], Json(index)).into_response()
}

/// `GET /models/NAME.safetensors`: the file of a listed model, for the
/// colony in the browser; 404 for another name (the path read is the
/// registry's, never the request's). Revalidated on every use (`no-cache`)
/// against an `ETag` of the file's size and modification time, 304 when it
/// matches `If-None-Match`.
async fn model_file(
    State(app): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let name = file.strip_suffix(".safetensors").ok_or_else(|| {
        ApiError::not_found(format!(
            "no model file '{}': model files are NAME.safetensors",
            file.escape_default()
        ))
    })?;
    let path = app.models.path_of(name)?;
    let seen = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The tag, and the bytes unless the client's copy has that tag.
    let read = tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path)?;
        let modified = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let tag = format!("\"{:x}-{:x}\"", meta.len(), modified.as_nanos());
        let fresh = seen.is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
        let bytes = if fresh {
            None
        } else {
            Some(std::fs::read(&path)?)
        };
        Ok::<_, std::io::Error>((tag, bytes))
    })
    .await
    .map_err(|_| ApiError::internal("reading the model failed (panic)"))?;
    let (tag, bytes) =
        read.map_err(|e| ApiError::internal(format!("model '{name}' cannot be read: {e}")))?;
    let cache = [
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, tag),
    ];
    let Some(bytes) = bytes else {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    };
    Ok((
        cache,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}

/// `GET /api/models`: the folder listed again.
async fn list_models(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let models = app.models.clone();
    let names = tokio::task::spawn_blocking(move || models.refresh())
        .await
        .map_err(|_| ApiError::internal("listing the models failed (panic)"))?
        .map_err(|e| ApiError::internal(format!("cannot list the models folder: {e}")))?;
    let models = app.models.clone();
    let listed = names.clone();
    // A model that does not load is listed without a summary, not an error.
    let summaries: Vec<serde_json::Value> = tokio::task::spawn_blocking(move || {
        listed
            .iter()
            .map(|n| match models.summary(n) {
                Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                Err(e) => serde_json::json!({ "name": n, "error": e.message }),
            })
            .collect()
    })
    .await
    .map_err(|_| ApiError::internal("summarising the models failed (panic)"))?;
    Ok(Json(serde_json::json!({
        "models": names,
        "default": app.config.default_model,
        "details": summaries,
    })))
}

/// `GET /api/status`: both pools (live pages, API calls) and the limits.
async fn status(State(app): State<AppState>) -> Json<serde_json::Value> {
    let c = &app.config;
    Json(serde_json::json!({
        "live_colonies": app.live_colonies(),
        "colonies_started": app.colonies_started(),
        "max_colonies": c.max_colonies,
        "api_running": app.api_running(),
        "api_waiting": app.api_waiting(),
        "max_api_colonies": c.max_api_colonies,
        "api_queue": c.api_queue,
        "photo_timeout_s": c.photo_timeout.as_secs_f64(),
        "idle_timeout_s": c.idle_timeout.as_secs_f64(),
        "max_upload_bytes": c.max_upload_bytes,
        "max_pixels": c.max_pixels,
        "max_side": ca_data::ImageLimits::default().max_side,
        "max_aspect": ca_data::ImageLimits::default().max_aspect,
        "max_steps": c.max_steps,
        "models": app.models.names(),
        "default_model": c.default_model,
    }))
}

/// Query of `POST /api/segment`.
#[derive(Debug, Deserialize)]
struct SegmentQuery {
    /// `png` (the default) or `json`.
    format: Option<String>,
    /// The model; 400 when the form names one too.
    model: Option<String>,
    /// CA steps; 400 when the form gives them too.
    steps: Option<String>,
    /// `grid` (the default: the model's square map) or `native` (the map
    /// resized by nearest neighbour to the photo's own size).
    size: Option<String>,
    /// Colonies per photo, their class probabilities averaged: 1 (the
    /// default) to [`MAX_API_ENSEMBLE`].
    ensemble: Option<String>,
    /// `true`: run until the class map settles ([`Settling::default`],
    /// at most its `max_steps`) instead of `steps`; `false` (the default).
    until_stable: Option<String>,
}

/// The largest `ensemble` of `POST /api/segment`: 8 colonies of the
/// model's grid (48x48 cells for the committed models) per request.
pub const MAX_API_ENSEMBLE: usize = 8;

/// The `ensemble` query value: a whole number from 1 to
/// [`MAX_API_ENSEMBLE`], else 400.
fn parse_ensemble(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else { return Ok(1) };
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_API_ENSEMBLE).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query 'ensemble' = '{}': must be a whole number from 1 to {MAX_API_ENSEMBLE}",
                text.escape_default(),
            ))
        })
}

/// CA steps from a query or form value: a whole number from 1 to
/// `max_steps`, else 400 naming `source`.
fn parse_steps(text: &str, max_steps: usize, source: &str) -> Result<usize, ApiError> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max_steps).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{source} 'steps' = '{}': must be a whole number from 1 to {max_steps}",
                text.escape_default(),
            ))
        })
}

fn multipart_error(e: MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("request body over the limit of {limit} bytes"))
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The bytes of `field`, 413 as soon as they pass `max_bytes`.
async fn read_field(
    mut field: Field<'_>,
    max_bytes: usize,
    body_limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, body_limit))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > max_bytes {
            return Err(ApiError::too_large(format!(
                "upload over the limit of {max_bytes} bytes"
            )));
        }
    }
    Ok(bytes)
}

/// What `POST /api/segment` answers with, from its query.
struct SegmentReply {
    /// JSON instead of a PNG.
    json: bool,
    /// The map at the photo's own size instead of the model's grid.
    native: bool,
}

/// How one `POST /api/segment` runs its colonies.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// CA steps.
    steps: usize,
    /// Colonies per photo, their probabilities averaged.
    ensemble: usize,
    /// Run until the map settles instead of `steps` (`until_stable=true`).
    until_stable: Option<Settling>,
}

/// The photo, steps and model of a `POST /api/segment` form.
struct SegmentForm {
    image: Vec<u8>,
    steps: Option<usize>,
    model: Option<String>,
}

/// `POST /api/segment`.
async fn segment(
    State(app): State<AppState>,
    query: Result<Query<SegmentQuery>, QueryRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let reply = segment_reply(&query)?;
    let ensemble = parse_ensemble(query.ensemble.as_deref())?;
    let until_stable = match query.until_stable.as_deref() {
        None | Some("false") => None,
        Some("true") => Some(Settling::default()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query 'until_stable' = '{}': expected true or false",
                other.escape_default()
            )))
        }
    };
    let multipart = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let config = &app.config;
    let form = read_segment_form(multipart, query, config).await?;
    let steps = form.steps.unwrap_or(config.default_steps);
    if let Some(name) = &form.model {
        crate::models::check_model_name(name)?;
    }
    let model = app.model(form.model).await?;
    let permit = app.take_api_slot().await?;
    let limits = app.upload_limits();
    let max_json_cells = config.max_json_cells;
    // The reply is built while the slot is held, so that the slots bound
    // its memory too.
    let work = move || {
        let _slot = permit;
        let run = Run {
            steps,
            ensemble,
            until_stable,
        };
        let map = segment_upload(&model, &form.image, limits, run, &reply, max_json_cells)?;
        if reply.json {
            Ok(json_reply(&model.name, run, &map))
        } else {
            let png = views::encode_class_png(&map.classes, map.width, map.height)?;
            Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::internal("internal error: the segmentation panicked"))?
}

/// A class map: one class id a cell, row-major.
struct ClassMap {
    classes: Vec<u8>,
    width: usize,
    height: usize,
    /// The CA steps run and whether the map settled (`until_stable`).
    steps: (usize, bool),
}

/// The JSON reply of `POST /api/segment?format=json`: the model, steps,
/// ensemble, size, class names, counts and the label rows, written straight into
/// its bytes (a `serde_json::Value` of the rows took 32 bytes a cell).
fn json_reply(model: &str, run: Run, map: &ClassMap) -> Response {
    use std::fmt::Write;
    let counts = views::class_counts(
        map.classes.iter().map(|&c| usize::from(c)),
        ca_data::CLASS_NAMES.len(),
    );
    let counts: serde_json::Map<String, serde_json::Value> = counts
        .into_iter()
        .zip(ca_data::CLASS_NAMES)
        .map(|(n, name)| (name.to_string(), n.into()))
        .collect();
    let head = serde_json::json!({
        "model": model,
        "steps": map.steps.0,
        "settled": map.steps.1,
        "until_stable": run.until_stable.is_some(),
        "ensemble": run.ensemble,
        "width": map.width,
        "height": map.height,
        "classes": ca_data::CLASS_NAMES,
        "counts": counts,
    })
    .to_string();
    let mut body = String::with_capacity(head.len() + 2 * map.classes.len() + 3 * map.height + 16);
    body.push_str(head.strip_suffix('}').unwrap_or(&head));
    body.push_str(",\"labels\":[");
    for (r, row) in map.classes.chunks(map.width.max(1)).enumerate() {
        body.push_str(if r == 0 { "[" } else { ",[" });
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let _ = write!(body, "{c}");
        }
        body.push(']');
    }
    body.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The reply's format and size from the query; 400 for other values.
fn segment_reply(query: &SegmentQuery) -> Result<SegmentReply, ApiError> {
    let json = match query.format.as_deref() {
        None | Some("png") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format '{}': expected png or json",
                other.escape_default()
            )))
        }
    };
    let native = match query.size.as_deref() {
        None | Some("grid") => false,
        Some("native") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "size '{}': expected grid or native",
                other.escape_default()
            )))
        }
    };
    Ok(SegmentReply { json, native })
}

/// Reads the form's fields (`image`, `steps`, `model`), the steps and model
/// of the query beside them: 400 for a field given twice, in both places or
/// unknown, 413 for an image over the upload limit.
async fn read_segment_form(
    mut multipart: Multipart,
    query: SegmentQuery,
    config: &ServeConfig,
) -> Result<SegmentForm, ApiError> {
    let body_limit = config.max_upload_bytes + MULTIPART_OVERHEAD;
    let query_steps = match &query.steps {
        Some(text) => Some(parse_steps(text, config.max_steps, "query")?),
        None => None,
    };
    let in_query = [
        ("steps", query_steps.is_some()),
        ("model", query.model.is_some()),
    ];
    let (mut image, mut steps, mut model) = (None, query_steps, query.model);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, body_limit))?
    {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" if image.is_none() => {
                image = Some(read_field(field, config.max_upload_bytes, body_limit).await?);
            }
            field_name if in_query.contains(&(field_name, true)) => {
                return Err(ApiError::bad_request(format!(
                    "'{name}' given both in the query and in the form: give it once"
                )))
            }
            "steps" if steps.is_none() => {
                let text = read_field(field, 32, body_limit)
                    .await
                    .map_err(|_| ApiError::bad_request("field 'steps': too long for a number"))?;
                steps = Some(parse_steps(
                    &String::from_utf8_lossy(&text),
                    config.max_steps,
                    "field",
                )?);
            }
            "model" => {
                let text = read_field(field, crate::models::MAX_MODEL_NAME, body_limit)
                    .await
                    .map_err(|_| ApiError::bad_request("field 'model': name too long"))?;
                model = Some(String::from_utf8_lossy(&text).into_owned());
            }
            "image" | "steps" => {
                return Err(ApiError::bad_request(format!("field '{name}' given twice")))
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field '{}' (expected image, steps, model)",
                    other.escape_default()
                )))
            }
        }
    }
    let image = image
        .ok_or_else(|| ApiError::bad_request("missing multipart field 'image' (a JPEG or PNG)"))?;
    Ok(SegmentForm {
        image,
        steps,
        model,
    })
}

/// Decodes an uploaded photo and segments it with `model` (blocking): the
/// class map at the model's square grid, or at the photo's displayed size
/// with `size=native`; 413 for a native JSON map of more than
/// `max_json_cells` cells (checked before the colony runs).
fn segment_upload(
    model: &LoadedModel,
    image: &[u8],
    limits: UploadLimits,
    run: Run,
    reply: &SegmentReply,
    max_json_cells: u64,
) -> Result<ClassMap, ApiError> {
    let photo = decode_image(image, limits)?;
    let (pw, ph) = (photo.width() as usize, photo.height() as usize);
    let cells = (pw * ph) as u64;
    if reply.json && reply.native && cells > max_json_cells {
        return Err(ApiError::too_large(format!(
            "format=json&size=native: the {pw}x{ph} photo gives {cells} labels, over the limit of {max_json_cells} (about 2 bytes each in JSON); ask for format=png (1 byte a cell before compression) or size=grid"
        )));
    }
    let size = model.image_size;
    let options = SegmentOptions {
        size,
        native: false,
        steps: run.steps,
        seed: 0,
        frame_every: None,
        frame_scale: 1,
        ensemble: run.ensemble,
        until_stable: run.until_stable,
    };
    let result = run_segment(&model.model, &photo, &options)
        .map_err(|e| ApiError::internal(format!("segmentation failed: {e}")))?;
    drop(photo);
    let grid: Vec<u8> = result
        .classes
        .iter()
        .map(|&c| u8::try_from(c).unwrap_or(u8::MAX))
        .collect();
    Ok(if reply.native {
        ClassMap {
            classes: render::resample_nearest(&grid, (size, size), (pw, ph)),
            width: pw,
            height: ph,
            steps: result.steps,
        }
    } else {
        ClassMap {
            classes: grid,
            width: size,
            height: size,
            steps: result.steps,
        }
    })
}

/// Query of `GET /ws`.
#[derive(Debug, Deserialize)]
struct SocketQuery {
    /// The first model; the default when absent.
    model: Option<String>,
}

/// `GET /ws`: a live colony for one page, its slot taken before the
/// upgrade (503 when none is free, 404 for an unknown model).
async fn live_socket(
    State(app): State<AppState>,
    query: Result<Query<SocketQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!("expected a WebSocket upgrade: {}", e.body_text()))
    })?;
    let model = app.model(query.model).await?;
    let slot = app.take_colony()?;
    let max_message = app.config.max_upload_bytes + 1;
    Ok(upgrade
        .max_message_size(max_message)
        .on_upgrade(move |socket| live(socket, app, model, slot)))
}

fn notice_message(outgoing: Outgoing) -> Message {
    match outgoing {
        Outgoing::Frame(bytes) => Message::Binary(bytes.into()),
        Outgoing::Notice(value) => Message::Text(value.to_string().into()),
    }
}

/// A page's command or image as a [`Command`]; the error is a notice.
fn page_command(message: Message, max_steps: usize) -> Option<Result<Command, ApiError>> {
    match message {
        Message::Text(text) => Some(
            serde_json::from_str::<ClientCommand>(text.as_str())
                .map_err(|e| ApiError::bad_request(format!("bad command: {e}")))
                .and_then(|c| {
                    c.validate(max_steps).map_err(ApiError::bad_request)?;
                    Ok(Command::Client(c))
                }),
        ),
        Message::Binary(bytes) => Some(match bytes.first() {
            Some(&kind @ (PHOTO_MESSAGE | VIDEO_MESSAGE)) => Ok(Command::Image {
                bytes: bytes[1..].to_vec(),
                keep_state: kind == VIDEO_MESSAGE,
            }),
            _ => Err(ApiError::bad_request(
                "binary messages start with 'P' (photo) or 'V' (video frame), then the JPEG or PNG",
            )),
        }),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
    }
}

/// Relays between the socket and the colony thread until either ends.
async fn live(
    mut socket: WebSocket,
    app: AppState,
    model: Arc<LoadedModel>,
    slot: OwnedSemaphorePermit,
) {
    let (commands, colony_commands) = std::sync::mpsc::sync_channel(COMMAND_QUEUE);
    let (colony_out, out) = tokio::sync::mpsc::channel(OUTGOING_QUEUE);
    let hello = hello_message(&app, &model);
    let (models, limits) = (app.models.clone(), app.session_limits());
    let slots = app.clone();
    tracing::info!(
        model = %model.name,
        live_colonies = app.live_colonies(),
        "colony slot taken by a page"
    );
    let colony = move || {
        let _slot = SlotLog {
            _slot: slot,
            app: slots,
        };
        session::run_session(model, models, limits, colony_commands, colony_out);
    };
    if let Err(e) = std::thread::Builder::new()
        .name("colony".into())
        .spawn(colony)
    {
        let error = ApiError::internal(format!("cannot start a colony thread: {e}"));
        let _ = socket
            .send(notice_message(session::error_notice(&error)))
            .await;
        return;
    }
    let send_timeout = app.config.send_timeout;
    if !send_within(
        &mut socket,
        Message::Text(hello.to_string().into()),
        send_timeout,
    )
    .await
    {
        return;
    }
    relay(socket, &app.config, commands, out).await;
}

/// A page's colony slot, logged when it is freed (the colony thread ends).
struct SlotLog {
    _slot: OwnedSemaphorePermit,
    app: AppState,
}

impl Drop for SlotLog {
    fn drop(&mut self) {
        // The permit goes back right after this.
        let live = self.app.live_colonies().saturating_sub(1);
        tracing::info!(live_colonies = live, "colony slot freed");
    }
}

/// Sends `message` unless the page takes longer than `timeout` to take it
/// (its receive window full: a page that stopped reading); false when the
/// socket is gone or the time ran out.
async fn send_within(
    socket: &mut WebSocket,
    message: Message,
    timeout: std::time::Duration,
) -> bool {
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!(
                send_timeout_s = timeout.as_secs_f64(),
                "socket closed: the page took no frame within the send timeout (it stopped reading)"
            );
            false
        }
    }
}

/// Passes the page's commands to the colony thread and its frames and
/// notices to the page, until either side ends, a message is over the
/// limit, the page misses its photo or idle deadline (counted from what
/// the page sends, never from what it is sent), or a frame waits longer
/// than the send timeout to be taken.
async fn relay(
    mut socket: WebSocket,
    config: &ServeConfig,
    commands: std::sync::mpsc::SyncSender<Command>,
    mut out: tokio::sync::mpsc::Receiver<Outgoing>,
) {
    let max_steps = config.max_steps;
    let max_message = config.max_upload_bytes + 1;
    let (photo_timeout, idle_timeout) = (config.photo_timeout, config.idle_timeout);
    let send_timeout = config.send_timeout;
    let connected = tokio::time::Instant::now();
    let (mut last_message, mut got_photo) = (connected, false);
    loop {
        let deadline = if got_photo {
            last_message + idle_timeout
        } else {
            (connected + photo_timeout).min(last_message + idle_timeout)
        };
        tokio::select! {
            received = socket.recv() => {
                let message = match received {
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        // Over the message size limit the socket cannot be
                        // read on, but it can still say why it closes.
                        tracing::info!(error = %e, "socket closed: a message over the limit or a broken frame");
                        let reason = too_big_reason(max_message);
                        close_with(&mut socket, StatusCode::PAYLOAD_TOO_LARGE, TOO_BIG_CLOSE_CODE, reason, send_timeout).await;
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                let Some(command) = page_command(message, max_steps) else { continue };
                last_message = tokio::time::Instant::now();
                let alive = match command {
                    Ok(command) => {
                        got_photo |= matches!(command, Command::Image { .. });
                        forward_command(&commands, command).await
                    }
                    Err(error) => {
                        let notice = notice_message(session::error_notice(&error));
                        send_within(&mut socket, notice, send_timeout).await
                    }
                };
                if !alive {
                    break;
                }
            }
            outgoing = out.recv() => {
                let Some(outgoing) = outgoing else { break };
                if !send_within(&mut socket, notice_message(outgoing), send_timeout).await {
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let reason = idle_reason(got_photo, photo_timeout, idle_timeout);
                tracing::info!(%reason, "socket closed at its deadline");
                close_with(&mut socket, StatusCode::REQUEST_TIMEOUT, IDLE_CLOSE_CODE, reason, send_timeout).await;
                break;
            }
        }
    }
}

/// The close reason of a message over the limit: whole, within the 123
/// bytes a close frame's reason may hold.
fn too_big_reason(max_message: usize) -> String {
    format!("closed: a message over {max_message} bytes, or a broken frame; reload the page")
}

/// Why a page is closed at its deadline: no message for `idle` once it
/// sent a photo, else no photo within `photo`.
fn idle_reason(got_photo: bool, photo: std::time::Duration, idle: std::time::Duration) -> String {
    if got_photo {
        format!(
            "closed: no message from the page in {} s; reload to start again",
            idle.as_secs()
        )
    } else {
        format!(
            "closed: no photo in the first {} s; reload to start again",
            photo.as_secs()
        )
    }
}

/// The first message of a live page: the model, the grid, the limits and
/// the initial settings.
fn hello_message(app: &AppState, model: &LoadedModel) -> serde_json::Value {
    serde_json::json!({
        "type": "hello",
        "model": model.name,
        "grid": model.image_size,
        "models": app.models.names(),
        "legend": session::legend(model.model.rule().config().num_classes),
        "views": views::VIEWS,
        "view": app.config.view_size,
        "steps": serde_json::Value::Null,
        "max_steps": app.config.max_steps,
        "speed": session::INITIAL_SPEED,
        "max_speed": session::MAX_STEPS_PER_SECOND,
        "max_upload_bytes": app.config.max_upload_bytes,
        "max_pixels": app.config.max_pixels,
        "uncertainty_runs": app.config.uncertainty_runs,
    })
}

/// Hands a page's command to its colony thread; false once the thread is
/// gone. Over a full queue a damage stroke is dropped (strokes come many a
/// second: one more or less does not show) and any other command waits
/// for room: the socket is not read meanwhile, so a flood slows its sender.
async fn forward_command(
    commands: &std::sync::mpsc::SyncSender<Command>,
    command: Command,
) -> bool {
    match commands.try_send(command) {
        Ok(()) => true,
        Err(TrySendError::Disconnected(_)) => false,
        Err(TrySendError::Full(Command::Client(ClientCommand::Damage { .. }))) => true,
        Err(TrySendError::Full(command)) => {
            let commands = commands.clone();
            tokio::task::spawn_blocking(move || commands.send(command).is_ok())
                .await
                .unwrap_or(false)
        }
    }
}

/// The WebSocket close code of a message over the size limit (RFC 6455
/// "message too big").
pub const TOO_BIG_CLOSE_CODE: u16 = 1009;

/// The WebSocket close code of a page closed for want of a photo or of any
/// message (application range 4000-4999).
pub const IDLE_CLOSE_CODE: u16 = 4408;

/// Sends an error notice with `reason`, then a close frame with `code`
/// and `reason`, so the page can say why it was closed; each within
/// `timeout`.
async fn close_with(
    socket: &mut WebSocket,
    status: StatusCode,
    code: u16,
    reason: String,
    timeout: std::time::Duration,
) {
    let notice = session::error_notice(&ApiError::new(status, reason.clone()));
    if send_within(socket, notice_message(notice), timeout).await {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        send_within(socket, Message::Close(Some(frame)), timeout).await;
    }
}
