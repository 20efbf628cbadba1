//! The `serve` command's flags and main (`cellseg serve`, and `cargo run
//! --release -p ca-serve --example serve -- [--port 8080] [--model
//! models/pets48.safetensors]`), then open the URL it prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::{ServeConfig, Server};
use clap::Parser;

/// Serves the page where the cellular automaton segments a photo or a
/// webcam stream live, and the HTTP API (`POST /api/segment`), on
/// 127.0.0.1 unless `--bind` says otherwise.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// The address to listen on; anything but loopback serves the network
    /// (a warning says so).
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// TCP port (0: any free port).
    #[arg(long, default_value_t = ServeConfig::default().port)]
    port: u16,
    /// The default model: a `.safetensors` file (its folder becomes the
    /// models folder unless --models-dir is given) or a model name.
    #[arg(long, default_value = "models/pets48.safetensors")]
    model: String,
    /// The models folder: the page chooses among its `*.safetensors` files.
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Live pages at once; more get 503.
    #[arg(long, default_value_t = ServeConfig::default().max_colonies)]
    max_colonies: usize,
    /// API calls segmenting at once; more wait in the queue.
    #[arg(long, default_value_t = ServeConfig::default().max_api_colonies)]
    max_api_colonies: usize,
    /// API calls that may wait for a slot; more get 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().api_queue)]
    api_queue: usize,
    /// Seconds an API call may wait for a slot before a 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().api_wait.as_secs_f64())]
    api_wait_secs: f64,
    /// Seconds a page may stay connected without sending a photo.
    #[arg(long, default_value_t = ServeConfig::default().photo_timeout.as_secs_f64())]
    photo_timeout_secs: f64,
    /// Seconds a page may stay connected without sending any message.
    #[arg(long, default_value_t = ServeConfig::default().idle_timeout.as_secs_f64())]
    idle_timeout_secs: f64,
    /// Largest upload in bytes; larger get 413.
    #[arg(long, default_value_t = ServeConfig::default().max_upload_bytes)]
    max_upload_bytes: usize,
    /// Largest image in pixels (width times height); larger get 413.
    #[arg(long, default_value_t = ServeConfig::default().max_pixels)]
    max_pixels: u64,
    /// Seconds a client may take to send a request's headers, and an idle
    /// keep-alive connection may wait for its next request.
    #[arg(long, default_value_t = ServeConfig::default().header_timeout.as_secs_f64())]
    header_timeout_secs: f64,
    /// Seconds a frame may wait for a page that stopped reading before its
    /// socket is closed and its colony freed.
    #[arg(long, default_value_t = ServeConfig::default().send_timeout.as_secs_f64())]
    send_timeout_secs: f64,
    /// Open connections at once; one more gets 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().max_connections)]
    max_connections: usize,
    /// An origin (scheme://host[:port]) whose pages may use /ws and /api
    /// besides the server's own; repeat for more. Others get 403.
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Log level of the request, slot and connection lines on stderr:
    /// off, error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log: tracing_subscriber::filter::LevelFilter,
}

/// The models folder and the default model's name from `--model` and
/// `--models-dir`.
fn models_of(args: &Args) -> Result<(PathBuf, String), String> {
    let path = Path::new(&args.model);
    let is_file = path.extension().is_some_and(|e| e == "safetensors");
    let name = if is_file {
        path.file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
    } else {
        Some(args.model.clone())
    }
    .ok_or_else(|| format!("--model {}: not a model file name", args.model))?;
    let dir = match (&args.models_dir, is_file) {
        (Some(dir), _) => dir.clone(),
        (None, true) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        (None, false) => ServeConfig::default().models_dir,
    };
    Ok((dir, name))
}

/// Runs the server on the process's own arguments (the example's `main`).
pub fn main() -> ExitCode {
    main_args(Args::parse())
}

/// Runs the server with parsed flags until the process ends; the exit code
/// says why it could not start.
pub fn main_args(args: Args) -> ExitCode {
    block_on(serve(args))
}

/// Runs `work` on a new multi-threaded runtime; its exit code, or a failure
/// when the runtime cannot start.
pub(crate) fn block_on(work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> ExitCode {
    // Reuse the freed step buffers instead of faulting them in every step.
    ca_core::alloc::retain_freed_memory();
    tracing_subscriber::fmt()
        .with_max_level(args.log)
        .with_writer(std::io::stderr)
        .init();
    let (models_dir, default_model) = match models_of(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let seconds = |flag: &str, value: f64| {
        Duration::try_from_secs_f64(value)
            .map_err(|_| format!("--{flag} {value}: must be a number of seconds from 0 up"))
    };
    let timeouts = (|| {
        Ok::<_, String>((
            seconds("api-wait-secs", args.api_wait_secs)?,
            seconds("photo-timeout-secs", args.photo_timeout_secs)?,
            seconds("idle-timeout-secs", args.idle_timeout_secs)?,
            seconds("header-timeout-secs", args.header_timeout_secs)?,
            seconds("send-timeout-secs", args.send_timeout_secs)?,
        ))
    })();
    let (api_wait, photo_timeout, idle_timeout, header_timeout, send_timeout) = match timeouts {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.bind.is_loopback() {
        eprintln!(
            "warning: --bind {}: the page and the API are open to every machine that can reach this address (no authentication)",
            args.bind
        );
    }
    let config = ServeConfig {
        bind: args.bind,
        max_api_colonies: args.max_api_colonies,
        api_queue: args.api_queue,
        api_wait,
        photo_timeout,
        idle_timeout,
        port: args.port,
        models_dir,
        default_model,
        max_colonies: args.max_colonies,
        max_upload_bytes: args.max_upload_bytes,
        max_pixels: args.max_pixels,
        header_timeout,
        send_timeout,
        max_connections: args.max_connections,
        allow_origins: args.allow_origins,
        ..ServeConfig::default()
    };
    let server = match Server::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(addr) => println!("serving on http://{addr}/ (Ctrl-C stops)"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    server.run().await;
    ExitCode::SUCCESS
}
