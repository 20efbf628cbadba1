//! A load figure for a running `serve` (issue 24): `--clients` parallel
//! clients each send `--requests` `POST /api/segment` calls of one photo,
//! one after another; prints the statuses, the median and 95th-percentile
//! latency and, with `--pid`, the server's resident memory before and after.
//!
//! `cellseg bench load --addr 127.0.0.1:8080 --photo
//! fixtures/pets-synthetic/images/synth-cat-001.jpg --pid $(pgrep -f serve)`
//! (or `cargo run --release -p ca-serve --example load -- ...`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Parallel API clients against a running server.
#[derive(Debug, Parser)]
pub struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// The photo every call sends (JPEG or PNG).
    #[arg(long)]
    photo: PathBuf,
    /// Parallel clients.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Calls per client, one after another.
    #[arg(long, default_value_t = 5)]
    requests: usize,
    /// The server's process id, to read its resident memory (Linux).
    #[arg(long)]
    pid: Option<u32>,
}

const BOUNDARY: &str = "cellseg-load-boundary";

fn body(photo: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo\"\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(photo);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

/// Resident memory of `pid` in MiB, from `/proc/PID/status`.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One client's `requests` calls in a row: the status of each (0 when no
/// answer came) and its latency.
async fn client_calls(
    url: String,
    body: Arc<bytes::Bytes>,
    requests: usize,
) -> Vec<(u16, Duration)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let mut out = Vec::new();
    for _ in 0..requests {
        let request = hyper::Request::post(&url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Full::new((*body).clone()))
            .expect("a request");
        let t = Instant::now();
        let status = match client.request(request).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let _ = res.into_body().collect().await;
                status
            }
            Err(_) => 0,
        };
        out.push((status, t.elapsed()));
    }
    out
}

/// Runs the load on the process's own arguments (the example's `main`).
pub fn main() -> ExitCode {
    main_args(Args::parse())
}

/// Runs the load with parsed flags; the exit code says whether every call
/// could be made.
pub fn main_args(args: Args) -> ExitCode {
    crate::cli::block_on(load(args))
}

async fn load(args: Args) -> ExitCode {
    let photo = match std::fs::read(&args.photo) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}: {e}", args.photo.display());
            return ExitCode::from(2);
        }
    };
    if args.clients == 0 || args.requests == 0 {
        eprintln!("error: --clients and --requests must be at least 1");
        return ExitCode::from(2);
    }
    let body = Arc::new(bytes::Bytes::from(body(&photo)));
    let url = format!("http://{}/api/segment", args.addr);
    let before = args.pid.and_then(rss_mib);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(client_calls(url.clone(), body.clone(), args.requests)))
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => results.extend(r),
            Err(e) => eprintln!("a client failed: {e}"),
        }
    }
    let wall = started.elapsed();
    let after = args.pid.and_then(rss_mib);
    let mut statuses = BTreeMap::new();
    for (s, _) in &results {
        *statuses.entry(*s).or_insert(0usize) += 1;
    }
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    println!(
        "{} clients x {} calls in {:.2} s: statuses {:?} (0 = no answer)",
        args.clients,
        args.requests,
        wall.as_secs_f64(),
        statuses
    );
    println!(
        "latency median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!("server RSS {b:.0} MiB before, {a:.0} MiB after");
    }
    if statuses.keys().all(|&s| s == 200) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
