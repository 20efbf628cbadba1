//! The page in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver, the `fantoccini` client).
//!
//! With the colony on the server (`?run=server`): photo mode uploads a
//! fixture, waits for frames, checks that the class map shows more than one
//! class, damages the colony with the brush and watches it heal; webcam
//! mode plays Chromium's fake camera clip, written from two fixture photos,
//! and the class map follows the switch (nearer the API's map of the first
//! photo at one time, of the second at another).
//!
//! With the colony in the browser (the default, WebGL2 through SwiftShader
//! here): a photo and the fake camera each give a class map of more than
//! one class while the server starts no colony, and the static export
//! (`ca_serve::web::export`) does the same from a plain file server.
//!
//! Without /usr/bin/chromium or /usr/bin/chromedriver the tests print that
//! they skipped, and fail under `CI=true`. With
//! `CELLSEG_WRITE_SCREENSHOTS=1` the screenshots go to `docs/img/serve-*.png`
//! (the pictures of `docs/PICTURES.md`), else to a temporary folder.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ca_serve::ServeConfig;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, Locator};
use image::{imageops, RgbImage};
use support::browser::*;
use support::*;

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .text()
        .await
        .unwrap_or_default()
}

/// Clicks the element `css` of the page.
async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn number(client: &Client, css: &str) -> u64 {
    text(client, css).await.trim().parse().unwrap_or(0)
}

async fn screenshot(client: &Client, css: &str) -> RgbImage {
    let png = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .screenshot()
        .await
        .unwrap_or_else(|e| panic!("no screenshot of {css}: {e}"));
    image::load_from_memory(&png)
        .expect("a PNG screenshot")
        .into_rgb8()
}

/// The class of every pixel of a class map screenshot: the nearest palette
/// colour, or `None` when no palette colour is near.
fn classes_of(map: &RgbImage) -> Vec<Option<usize>> {
    map.pixels()
        .map(|p| {
            ca_viz::render::PALETTE.iter().position(|c| {
                c.iter()
                    .zip(p.0)
                    .all(|(&a, b)| (i16::from(a) - i16::from(b)).abs() <= 12)
            })
        })
        .collect()
}

/// The classes that cover more than 1% of a class map screenshot.
fn classes_shown(map: &RgbImage) -> Vec<usize> {
    let classes = classes_of(map);
    (0..ca_viz::render::PALETTE.len())
        .filter(|&c| classes.iter().filter(|&&k| k == Some(c)).count() * 100 > classes.len())
        .collect()
}

/// Fraction of pixels whose class differs between two class maps.
fn map_change(a: &RgbImage, b: &RgbImage) -> f64 {
    let (a, b) = (classes_of(a), classes_of(b));
    a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len().max(1) as f64
}

/// Fraction of the cells of `grid` (a label grid, rows of class ids)
/// whose class differs in the class map screenshot `map`, sampled at the
/// cells' centres.
fn grid_change(map: &RgbImage, grid: &[Vec<usize>]) -> f64 {
    let classes = classes_of(map);
    let (w, h) = (map.width() as usize, map.height() as usize);
    let (rows, cols) = (grid.len(), grid.first().map_or(0, Vec::len));
    let mut differ = 0;
    for (y, row) in grid.iter().enumerate() {
        for (x, &c) in row.iter().enumerate() {
            let px = ((2 * x + 1) * w) / (2 * cols);
            let py = ((2 * y + 1) * h) / (2 * rows);
            if classes[py * w + px] != Some(c) {
                differ += 1;
            }
        }
    }
    differ as f64 / (rows * cols).max(1) as f64
}

/// Mean absolute difference of two images of the same size, per channel.
fn mean_difference(a: &RgbImage, b: &RgbImage) -> f64 {
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.as_raw().len().max(1) as f64
}

/// Where screenshots go: `docs/img` with `CELLSEG_WRITE_SCREENSHOTS=1`,
/// else a temporary folder.
fn screenshot_dir() -> PathBuf {
    if std::env::var("CELLSEG_WRITE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        repo_root().join("docs/img")
    } else {
        let dir = std::env::temp_dir().join(format!("ca-serve-screenshots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a screenshot folder");
        dir
    }
}

/// Saves a screenshot of the page element `css` (`#app` the whole page,
/// `#live` the counters and views) as `serve-NAME.png`, strongly
/// compressed.
async fn save_page(client: &Client, css: &str, name: &str) {
    let shot = screenshot(client, css).await;
    let path = screenshot_dir().join(format!("serve-{name}.png"));
    ca_viz::render::save_png(&shot, &path).expect("write the screenshot");
    eprintln!("screenshot {}", path.display());
}

/// The page with its colony on the server (the existing tests' path; the
/// browser colony is the default where WebGL2 is, as in this Chromium).
fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/?run=server")
}

async fn wait_connected(client: &Client) {
    wait_for("'connected'", || async {
        text(client, "#message")
            .await
            .contains("connected")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_mode_shows_classes_and_heals_after_damage() {
    if browser_installed().is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let (addr, _) = start_default().await;
    with_browser(&[], |client| async move {
        client.goto(&url(addr)).await.expect("open the page");
        wait_connected(&client).await;
        let photo = fixture("synth-cat-001")
            .canonicalize()
            .expect("the fixture");
        client
            .find(Locator::Css("#file"))
            .await
            .expect("the file input")
            .send_keys(&photo.to_string_lossy())
            .await
            .expect("pick the photo");
        wait_for("step 100", || async {
            (number(&client, "#step").await >= 100).then_some(())
        })
        .await;
        // Issue 24: the colony lives on past the old 200-step halt, the
        // button tells the truth, and "segmenting ..." clears itself.
        wait_for("step 300", || async {
            (number(&client, "#step").await >= 300).then_some(())
        })
        .await;
        assert_eq!(text(&client, "#play").await, "Pause");
        let rate = text(&client, "#sps").await;
        assert!(
            rate.trim().parse::<f64>().is_ok_and(|r| r > 0.0),
            "steps/s {rate}"
        );
        wait_for("the status message cleared", || async {
            text(&client, "#message").await.is_empty().then_some(())
        })
        .await;
        let map = screenshot(&client, "#view-classes").await;
        let shown = classes_shown(&map);
        assert!(
            shown.len() >= 2,
            "the class map shows only classes {shown:?}"
        );
        save_page(&client, "#live", "photo").await;

        // Pause, then damage with the brush: a stroke across the overlay.
        click(&client, "#play").await;
        wait_for("the paused colony", || async {
            (text(&client, "#play").await == "Play").then_some(())
        })
        .await;
        let state_before = screenshot(&client, "#view-state").await;
        let overlay = client.find(Locator::Css("#view-overlay")).await.unwrap();
        let mut stroke = MouseActions::new("brush".into())
            .then(PointerAction::MoveToElement {
                element: overlay,
                duration: None,
                x: -60.0,
                y: -20.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            });
        for _ in 0..8 {
            stroke = stroke
                .then(PointerAction::MoveBy {
                    duration: Some(Duration::from_millis(60)),
                    x: 15.0,
                    y: 5.0,
                })
                .pause(Duration::from_millis(40));
        }
        let stroke = stroke.then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
        client
            .perform_actions(stroke)
            .await
            .expect("the brush stroke");
        let damaged = wait_for("the damage in the state view", || async {
            let now = screenshot(&client, "#view-state").await;
            (mean_difference(&now, &state_before) > 2.0).then_some(now)
        })
        .await;
        eprintln!(
            "damage changed the state view by {:.1} per channel",
            mean_difference(&damaged, &state_before)
        );
        save_page(&client, "#live", "damage").await;

        // Heal: play on for 100 steps.
        let at = number(&client, "#step").await;
        click(&client, "#play").await;
        wait_for("100 healing steps", || async {
            (number(&client, "#step").await >= at + 100).then_some(())
        })
        .await;
        let healed = screenshot(&client, "#view-classes").await;
        let shown = classes_shown(&healed);
        assert!(
            shown.len() >= 2,
            "after healing the class map shows only classes {shown:?}"
        );
        eprintln!(
            "healed: {:.1}% of the class map differs from before the damage",
            100.0 * map_change(&healed, &map)
        );
    })
    .await;
    eprintln!("photo mode test: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_what_the_colony_and_the_socket_do() {
    // Issue 35 item 7 and 8: "Pause" before any photo, a refused step
    // limit left in its box, "segmenting NAME" after the socket closed.
    if browser_installed().is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (addr, _) = start(ServeConfig {
        models_dir: models_dir(),
        photo_timeout: Duration::from_secs(4),
        ..ServeConfig::default()
    })
    .await;
    with_browser(&[], |client| async move {
        client.goto(&url(addr)).await.expect("open the page");
        wait_connected(&client).await;
        let play = client.find(Locator::Css("#play")).await.unwrap();
        assert_eq!(play.text().await.unwrap(), "Play");
        assert!(!play.is_enabled().await.unwrap(), "nothing to pause yet");
        let steps = client.find(Locator::Css("#steps")).await.unwrap();
        steps.send_keys("999999\n").await.unwrap();
        wait_for("the refusal of 999999 steps", || async {
            text(&client, "#message")
                .await
                .contains("steps 999999")
                .then_some(())
        })
        .await;
        let shown = steps.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(shown, "", "the box shows the limit in force (none)");
        // No photo within 4 s: the server closes the socket with a reason
        // that stays on screen when a photo is picked afterwards.
        wait_for("the close reason", || async {
            text(&client, "#message")
                .await
                .contains("no photo in the first 4 s")
                .then_some(())
        })
        .await;
        let photo = fixture("synth-cat-001").canonicalize().unwrap();
        client
            .find(Locator::Css("#file"))
            .await
            .unwrap()
            .send_keys(&photo.to_string_lossy())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let message = text(&client, "#message").await;
        assert!(
            message.contains("no photo in the first 4 s") && !message.contains("segmenting"),
            "{message}"
        );
    })
    .await;
}

/// A 4:2:0 YUV4MPEG2 clip of `frames_each` frames of each photo in turn, at
/// 10 frames per second, `side x side` pixels (full-range BT.601, as
/// `C420jpeg` says).
fn write_y4m(path: &Path, photos: &[RgbImage], frames_each: usize, side: u32) {
    let mut out = format!("YUV4MPEG2 W{side} H{side} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for photo in photos {
        let rgb = imageops::resize(photo, side, side, imageops::FilterType::Triangle);
        let s = side as usize;
        let px = |x: usize, y: usize| rgb.get_pixel(x as u32, y as u32).0.map(f32::from);
        let mut plane_y = Vec::with_capacity(s * s);
        for y in 0..s {
            for x in 0..s {
                let [r, g, b] = px(x, y);
                plane_y.push(
                    (0.299 * r + 0.587 * g + 0.114 * b)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
            }
        }
        let (mut plane_u, mut plane_v) = (Vec::new(), Vec::new());
        for y in (0..s).step_by(2) {
            for x in (0..s).step_by(2) {
                let mut sum = [0f32; 3];
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let p = px(x + dx, y + dy);
                    for k in 0..3 {
                        sum[k] += p[k] / 4.0;
                    }
                }
                let [r, g, b] = sum;
                plane_u.push(
                    (128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
                plane_v.push(
                    (128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
            }
        }
        for _ in 0..frames_each {
            out.extend_from_slice(b"FRAME\n");
            out.extend_from_slice(&plane_y);
            out.extend_from_slice(&plane_u);
            out.extend_from_slice(&plane_v);
        }
    }
    std::fs::write(path, out).expect("write the clip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webcam_mode_follows_a_fake_camera_clip() {
    if browser_installed().is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let dir = temp_dir("webcam");
    let clip = dir.path().join("clip.y4m");
    let names = ["synth-cat-001", "synth-cat-005"];
    let photos: Vec<RgbImage> = names
        .iter()
        .map(|n| image::open(fixture(n)).expect("a fixture").into_rgb8())
        .collect();
    // 3 s of each photo, looped by Chromium.
    write_y4m(&clip, &photos, 30, 160);
    let flags = fake_camera(&clip);
    let (addr, _) = start_default().await;
    let mut references = Vec::new();
    for name in names {
        let answer = post_form(
            addr,
            "/api/segment?format=json",
            &[("image", Some("photo.jpg"), &fixture_bytes(name))],
        )
        .await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let labels: Vec<Vec<usize>> =
            serde_json::from_value(answer.json()["labels"].clone()).expect("a label grid");
        references.push(labels);
    }
    with_browser(&flags, |client| async move {
        client.goto(&url(addr)).await.expect("open the page");
        wait_connected(&client).await;
        click(&client, "#mode-webcam").await;
        click(&client, "#webcam-start").await;
        wait_for("video frames", || async {
            (number(&client, "#video-frames").await >= 3).then_some(())
        })
        .await;
        let first_count = number(&client, "#video-frames").await;
        // Class maps over more than one loop of the clip (6 s).
        let mut maps = Vec::new();
        let until = Instant::now() + Duration::from_secs(9);
        while Instant::now() < until {
            maps.push(screenshot(&client, "#view-classes").await);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let last_count = number(&client, "#video-frames").await;
        assert!(
            last_count >= first_count + 5,
            "video frames rose only from {first_count} to {last_count} in 9 s"
        );
        let fps: f64 = text(&client, "#video-fps")
            .await
            .trim()
            .parse()
            .unwrap_or(0.0);
        // Each map against the API's maps of the two photos: the page's
        // map must be nearer the first photo's at some time and nearer the
        // second's at another.
        let (mut nearer_first, mut nearer_second) = (0, 0);
        for map in &maps {
            let [to_first, to_second] = [&references[0], &references[1]].map(|r| grid_change(map, r));
            if to_first + 0.05 < to_second {
                nearer_first += 1;
            } else if to_second + 0.05 < to_first {
                nearer_second += 1;
            }
        }
        eprintln!(
            "webcam: {last_count} video frames, {fps} per second shown; of {} class maps {nearer_first} nearer the first photo's, {nearer_second} nearer the second's",
            maps.len()
        );
        assert!(
            nearer_first > 0 && nearer_second > 0,
            "the class map did not follow the clip's switch: of {} maps, {nearer_first} nearer the first photo's map, {nearer_second} nearer the second's",
            maps.len()
        );
        save_page(&client, "#live", "webcam").await;
    })
    .await;
    eprintln!("webcam mode test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Picks the fixture photo `name` in the page's file input.
async fn pick_photo(client: &Client, name: &str) {
    let photo = fixture(name).canonicalize().expect("the fixture");
    client
        .find(Locator::Css("#file"))
        .await
        .expect("the file input")
        .send_keys(&photo.to_string_lossy())
        .await
        .expect("pick the photo");
}

/// Chromium's flags for a fake camera playing `clip` (a Y4M file).
fn fake_camera(clip: &Path) -> [String; 3] {
    [
        "--use-fake-device-for-media-stream".to_string(),
        "--use-fake-ui-for-media-stream".to_string(),
        format!("--use-file-for-fake-video-capture={}", clip.display()),
    ]
}

/// Opens `page` and waits until its model runs in the browser.
async fn open_in_browser_mode(client: &Client, page: &str) {
    client.goto(page).await.expect("open the page");
    wait_for("the model loaded in the browser", || async {
        text(client, "#message")
            .await
            .contains("runs in this browser")
            .then_some(())
    })
    .await;
}

/// The server started no live colony (`what` did not need one): its state
/// and `/api/status` both count none.
async fn assert_no_server_colony(addr: SocketAddr, state: &ca_serve::AppState, what: &str) {
    assert_eq!(
        state.colonies_started(),
        0,
        "{what} started a colony on the server"
    );
    let status = get(addr, "/api/status").await.json();
    assert_eq!(status["colonies_started"], 0, "{what}: {status}");
}

/// The page in browser mode (the default where WebGL2 is): a photo to a
/// class map of more than one class, drawn by the colony in the page; the
/// server starts no colony (its status counts none) and answers the model
/// file the page loads.
pub async fn photo_in_the_browser(client: &Client, page: &str) {
    open_in_browser_mode(client, page).await;
    let run_on = client
        .execute("return document.body.dataset.runOn", vec![])
        .await
        .expect("the page's mode");
    assert_eq!(run_on, "browser");
    pick_photo(client, "synth-cat-001").await;
    wait_for("step 40 in the browser", || async {
        (number(client, "#step").await >= 40).then_some(())
    })
    .await;
    let rate: f64 = text(client, "#sps").await.trim().parse().unwrap_or(0.0);
    assert!(rate > 0.0, "steps/s {rate}");
    // The colony in the page says when its map settled, by the server's
    // rule (within 8 to 80 steps of the photo).
    let settled = wait_for("settled after N steps in the browser", || async {
        let said = text(client, "#settled").await;
        said.split_whitespace().find_map(|w| w.parse::<u32>().ok())
    })
    .await;
    assert!((8..=80).contains(&settled), "settled after {settled}");
    let map = screenshot(client, "#view-classes").await;
    let shown = classes_shown(&map);
    assert!(
        shown.len() >= 2,
        "the browser's class map shows only classes {shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_mode_segments_a_photo_with_no_colony_on_the_server() {
    if browser_installed().is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let (addr, state) = start_default().await;
    let page = format!("http://{addr}/");
    with_browser(&[], |client| async move {
        photo_in_the_browser(&client, &page).await;
        save_page(&client, "#app", "browser").await;
    })
    .await;
    assert_no_server_colony(addr, &state, "the page in browser mode").await;
    eprintln!(
        "browser mode test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_export_runs_from_a_plain_file_server() {
    if browser_installed().is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let dir = temp_dir("export");
    let site = dir.path().join("site");
    let models: Vec<PathBuf> = ["pets48-cascade", "pets48-small"]
        .iter()
        .map(|m| models_dir().join(format!("{m}.safetensors")))
        .collect();
    ca_serve::web::export(&site, &models).expect("export the page");
    let addr = support::static_files::serve_folder(&site).await;
    let page = format!("http://{addr}/");
    with_browser(&[], |client| async move {
        photo_in_the_browser(&client, &page).await;
        let server = client
            .find(Locator::Css("#run-server"))
            .await
            .expect("the switch");
        assert!(
            !server.is_enabled().await.unwrap(),
            "a static page offers no server"
        );
    })
    .await;
    eprintln!(
        "static export test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_mode_segments_the_fake_camera_with_no_colony_on_the_server() {
    if browser_installed().is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let dir = temp_dir("webcam-browser");
    let clip = dir.path().join("clip.y4m");
    let photo = image::open(fixture("synth-cat-001"))
        .expect("a fixture")
        .into_rgb8();
    write_y4m(&clip, &[photo], 20, 160);
    let flags = fake_camera(&clip);
    let (addr, state) = start_default().await;
    with_browser(&flags, |client| async move {
        open_in_browser_mode(&client, &format!("http://{addr}/")).await;
        click(&client, "#mode-webcam").await;
        click(&client, "#webcam-start").await;
        wait_for("the camera's frames kept in the page", || async {
            text(&client, "#message")
                .await
                .contains("never over the network")
                .then_some(())
        })
        .await;
        wait_for("step 40 on camera frames", || async {
            (number(&client, "#step").await >= 40 && number(&client, "#video-frames").await >= 3)
                .then_some(())
        })
        .await;
        let map = screenshot(&client, "#view-classes").await;
        let shown = classes_shown(&map);
        assert!(
            shown.len() >= 2,
            "the camera's class map shows only classes {shown:?}"
        );
    })
    .await;
    assert_no_server_colony(addr, &state, "the camera in browser mode").await;
    eprintln!(
        "browser webcam test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
