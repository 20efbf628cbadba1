//! Headless Chromium through chromedriver (WebDriver, the `fantoccini`
//! client) for the page tests: the browser's presence (skip, or fail under
//! `CI=true`), a session with extra flags closed even when the test fails,
//! and polling.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use futures_util::FutureExt;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The browser tests run one at a time (two Chromiums and two colonies on a
/// 2-core machine would only slow each other down).
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest wait for anything the page should show.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// `Some(())` when Chromium and chromedriver are installed; otherwise
/// prints that the test skipped (panics under `CI=true`, where they must
/// be: `.ci/run` installs them).
pub fn browser_installed() -> Option<()> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).is_file())
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    let note = format!(
        "{} not found: install them with `apt-get install -y chromium chromium-driver`",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{note}");
    }
    eprintln!("skipped: {note}");
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// chromedriver on a free loopback port, killed on drop.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium session with `extra` command-line flags.
pub async fn open_browser(extra: &[String]) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=900,760",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        // WebGL2 for the browser colony through SwiftShader (the CPU): with
        // --disable-gpu newer Chromiums offer it only when told to.
        "--enable-unsafe-swiftshader",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": CHROMIUM, "args": args }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
        match connected {
            Ok(client) => return (driver, client),
            Err(e) if Instant::now() > deadline => {
                panic!("no WebDriver session from chromedriver on port {port} in 30 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs `test` with a browser and closes the session (and Chromium) even
/// when the test fails.
pub async fn with_browser<F, Fut>(extra: &[String], test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (driver, client) = open_browser(extra).await;
    let outcome = std::panic::AssertUnwindSafe(test(client.clone()))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Polls `probe` every 200 ms until it gives `Some`, at most
/// [`PAGE_TIMEOUT`]; the panic names `what`.
pub async fn wait_for<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show {what} within {PAGE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
