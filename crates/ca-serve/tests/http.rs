//! The HTTP API and the WebSocket against a running server on loopback:
//! the answers, every bad input, the limits, the colony bound, the models
//! folder as the only source of models.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ca_serve::{guarded, ServeConfig};
use futures_util::{SinkExt, StreamExt};
use image::{Rgb, RgbImage};
use support::*;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PHOTO: &str = "synth-cat-001";

/// A multipart field: name, file name, bytes.
type FormField = (&'static str, Option<&'static str>, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_answers_a_png_class_map_or_json_counts() {
    let (addr, _) = start_default().await;
    let photo = fixture_bytes(PHOTO);
    let png = post_form(addr, "/api/segment", &[("image", Some("cat.jpg"), &photo)]).await;
    assert_eq!(png.status, 200, "{}", String::from_utf8_lossy(&png.body));
    assert_eq!(png.content_type, "image/png");
    let map = image::load_from_memory(&png.body)
        .expect("a PNG")
        .into_rgb8();
    assert_eq!(map.dimensions(), (48, 48), "the pets48 grid");
    assert!(
        map.pixels().all(|p| ca_viz::render::PALETTE.contains(&p.0)),
        "only class colours"
    );

    let json = post_form(
        addr,
        "/api/segment?format=json",
        &[("image", Some("cat.jpg"), &photo), ("steps", None, b"40")],
    )
    .await;
    assert_eq!(json.status, 200, "{}", String::from_utf8_lossy(&json.body));
    let v = json.json();
    assert_eq!(v["steps"], 40);
    assert_eq!(v["model"], "pets48");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(48), Some(48))
    );
    let labels = v["labels"].as_array().expect("label rows");
    assert_eq!(labels.len(), 48);
    let mut total = 0;
    for row in labels {
        let row = row.as_array().expect("a row");
        assert_eq!(row.len(), 48);
        assert!(row.iter().all(|c| c.as_u64().is_some_and(|c| c < 3)));
        total += row.len();
    }
    let counts = v["counts"].as_object().expect("counts");
    let names: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in ["background", "object", "boundary"] {
        assert!(counts.contains_key(name), "{name}");
    }
    let counted: u64 = counts.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(counted as usize, total);

    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("<canvas id=\"view-classes\""));
    for (path, kind) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let asset = get(addr, path).await;
        assert_eq!(
            (asset.status, asset.content_type.starts_with(kind)),
            (200, true),
            "{path}"
        );
    }
}

/// The browser colony's files: every page file with its type, the model
/// list, and the model files the server listed (an `ETag` to revalidate
/// against, 304 when it matches), nothing else of the folder or the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_files_and_the_model_files_are_served() {
    let (addr, _) = start_default().await;
    for f in ca_serve::web::FILES {
        let answer = get(addr, &format!("/{}", f.path)).await;
        assert_eq!(answer.status, 200, "{}", f.path);
        assert_eq!(answer.content_type, f.content_type, "{}", f.path);
        assert_eq!(answer.body, f.body.as_bytes(), "{}", f.path);
    }
    let index = get(addr, "/models/index.json").await.json();
    assert_eq!(index["server"], true, "{index}");
    assert_eq!(index["default"], "pets48", "{index}");
    // The rule of "settled after N steps" the browser colony follows is
    // the server's.
    let rule = ca_core::Settling::default();
    assert_eq!(index["settling"]["max_change"], rule.max_change, "{index}");
    assert_eq!(index["settling"]["window"], rule.window, "{index}");
    assert_eq!(index["settling"]["smoothing"], rule.smoothing, "{index}");
    assert!(
        index["models"]
            .as_array()
            .unwrap()
            .contains(&"pets48".into()),
        "{index}"
    );

    let model = get(addr, "/models/pets48.safetensors").await;
    assert_eq!(model.status, 200);
    assert_eq!(model.content_type, "application/octet-stream");
    assert_eq!(
        model.body,
        std::fs::read(models_dir().join("pets48.safetensors")).unwrap()
    );
    let tag = {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let res = client
            .get(
                format!("http://{addr}/models/pets48.safetensors")
                    .parse()
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.headers()["cache-control"], "no-cache");
        res.headers()["etag"].to_str().unwrap().to_string()
    };
    let again = request_with(
        addr,
        "GET",
        "/models/pets48.safetensors",
        &[("if-none-match", &tag)],
        vec![],
    )
    .await;
    assert_eq!((again.status, again.body.len()), (304, 0));
    for path in [
        "/models/nope.safetensors",
        "/models/pets48.metrics.jsonl",
        "/models/..%2FCargo.toml",
        "/models/pets48",
    ] {
        let answer = get(addr, path).await;
        assert!(
            matches!(answer.status, 400 | 404),
            "{path}: {}",
            answer.status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_400_with_the_reason() {
    let (addr, _) = start_default().await;
    let jpeg = fixture_bytes(PHOTO);
    let png = png_bytes(&RgbImage::from_pixel(30, 20, Rgb([10, 200, 30])));
    let cases: Vec<(&str, Vec<FormField>, &str)> = vec![
        (
            "/api/segment",
            vec![("image", Some("a.txt"), b"hello, not an image".to_vec())],
            "not an image",
        ),
        (
            "/api/segment",
            vec![("image", Some("a.jpg"), jpeg[..jpeg.len() / 2].to_vec())],
            "truncated JPEG",
        ),
        (
            "/api/segment",
            vec![("image", Some("a.png"), png[..png.len() - 20].to_vec())],
            "truncated PNG",
        ),
        (
            "/api/segment",
            vec![("image", Some("a.png"), png[..40].to_vec())],
            "PNG",
        ),
        (
            "/api/segment",
            vec![("image", Some("a.jpg"), vec![])],
            "empty (0 bytes)",
        ),
        (
            "/api/segment",
            vec![(
                "image",
                Some("a.gif"),
                b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            )],
            "unsupported image format",
        ),
        (
            "/api/segment",
            vec![("steps", None, b"10".to_vec())],
            "missing multipart field 'image'",
        ),
        (
            "/api/segment",
            vec![
                ("image", Some("a.jpg"), jpeg.clone()),
                ("steps", None, b"0".to_vec()),
            ],
            "field 'steps' = '0'",
        ),
        (
            "/api/segment",
            vec![
                ("image", Some("a.jpg"), jpeg.clone()),
                ("steps", None, b"ten".to_vec()),
            ],
            "field 'steps' = 'ten'",
        ),
        (
            "/api/segment",
            vec![
                ("image", Some("a.jpg"), jpeg.clone()),
                ("steps", None, b"999999".to_vec()),
            ],
            "must be a whole number from 1 to 5000",
        ),
        (
            "/api/segment",
            vec![
                ("image", Some("a.jpg"), jpeg.clone()),
                ("colour", None, b"red".to_vec()),
            ],
            "unknown field 'colour'",
        ),
        (
            "/api/segment",
            vec![
                ("image", Some("a.jpg"), jpeg.clone()),
                ("image", Some("b.jpg"), jpeg.clone()),
            ],
            "given twice",
        ),
        (
            "/api/segment?format=gif",
            vec![("image", Some("a.jpg"), jpeg.clone())],
            "format 'gif'",
        ),
    ];
    for (path, fields, want) in &cases {
        let fields: Vec<(&str, Option<&str>, &[u8])> = fields
            .iter()
            .map(|(n, f, b)| (*n, *f, b.as_slice()))
            .collect();
        let answer = post_form(addr, path, &fields).await;
        let message = answer.error(400);
        assert!(message.contains(want), "{path} {want}: {message}");
    }
    let not_multipart = request(
        addr,
        "POST",
        "/api/segment",
        Some("image/jpeg"),
        jpeg.clone(),
    )
    .await;
    assert!(not_multipart.error(400).contains("multipart/form-data"));
    let broken = request(
        addr,
        "POST",
        "/api/segment",
        Some("multipart/form-data; boundary=xyz"),
        b"--xyz\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc".to_vec(),
    )
    .await;
    assert!(broken.error(400).contains("malformed multipart body"));
    let nowhere = get(addr, "/api/nothing").await;
    assert!(nowhere.error(404).contains("no such page"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limits_get_413() {
    let (addr, _) = start(ServeConfig {
        models_dir: models_dir(),
        max_upload_bytes: 20_000,
        max_pixels: 100 * 100,
        ..ServeConfig::default()
    })
    .await;
    // A flat 200 x 200 PNG: a few hundred bytes, 40,000 pixels.
    let wide = png_bytes(&RgbImage::from_pixel(200, 200, Rgb([90, 90, 90])));
    assert!(wide.len() < 20_000);
    let answer = post_form(addr, "/api/segment", &[("image", Some("a.png"), &wide)]).await;
    let message = answer.error(413);
    assert!(
        message.contains("200x200 = 40000 pixels") && message.contains("limit of 10000 pixels"),
        "{message}"
    );
    let mut heavy = fixture_bytes(PHOTO);
    heavy.resize(30_000, 0);
    let answer = post_form(addr, "/api/segment", &[("image", Some("a.jpg"), &heavy)]).await;
    assert!(answer.error(413).contains("limit of 20000 bytes"));
    let huge = vec![7u8; 400_000];
    let answer = post_form(addr, "/api/segment", &[("image", Some("a.jpg"), &huge)]).await;
    assert!(answer.error(413).contains("limit of"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_pixel_high_strip_gets_413_not_a_crash() {
    // Issue 24: a 49 KB PNG of 16777216 x 1 pixels is inside the pixel
    // limit; its resize asked for 12.9 GB and killed the server.
    let (addr, _) = start(ServeConfig {
        models_dir: models_dir(),
        ..ServeConfig::default()
    })
    .await;
    let strip = png_bytes(&RgbImage::from_pixel(16_777_216, 1, Rgb([90, 120, 30])));
    assert!(
        strip.len() < ServeConfig::default().max_upload_bytes,
        "{}",
        strip.len()
    );
    let answer = post_form(
        addr,
        "/api/segment",
        &[("image", Some("strip.png"), &strip)],
    )
    .await;
    let message = answer.error(413);
    assert!(
        message.contains("16777216x1") && message.contains("limit of 16384"),
        "{message}"
    );
    // Within the limits, a strip of aspect ratio 32 is segmented.
    let thin = png_bytes(&RgbImage::from_pixel(4096, 128, Rgb([90, 120, 30])));
    let answer = post_form(addr, "/api/segment", &[("image", Some("thin.png"), &thin)]).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    // The server is still there.
    assert_eq!(get(addr, "/api/status").await.status, 200);
}

fn listing(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    entries.sort();
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_come_only_from_names_the_folder_lists() {
    let root = temp_dir("models");
    let dir = root.path().join("models");
    std::fs::create_dir_all(&dir).unwrap();
    let model = models_dir().join("pets48.safetensors");
    std::fs::copy(&model, dir.join("a.safetensors")).unwrap();
    std::fs::copy(&model, root.path().join("secret.safetensors")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a model").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        root.path().join("secret.safetensors"),
        dir.join("link.safetensors"),
    )
    .unwrap();
    let (addr, _) = start(ServeConfig {
        models_dir: dir.clone(),
        default_model: "a".into(),
        ..ServeConfig::default()
    })
    .await;
    let before = (listing(root.path()), listing(&dir));

    let models = get(addr, "/api/models").await;
    assert_eq!(models.status, 200);
    assert_eq!(
        models.json()["models"],
        serde_json::json!(["a"]),
        "no link, no other file"
    );

    let photo = fixture_bytes(PHOTO);
    let segment = |query: String| {
        let photo = photo.clone();
        async move {
            post_form(
                addr,
                &format!("/api/segment?format=json{query}"),
                &[("image", Some("a.jpg"), &photo)],
            )
            .await
        }
    };
    assert_eq!(segment(String::new()).await.status, 200);
    assert_eq!(segment("&model=a".into()).await.status, 200);
    assert!(segment("&model=nope".into())
        .await
        .error(404)
        .contains("unknown model 'nope' (available: a)"));
    assert!(segment("&model=link".into())
        .await
        .error(404)
        .contains("unknown model 'link'"));
    assert!(segment("&model=notes".into())
        .await
        .error(404)
        .contains("unknown model"));
    for bad in [
        "..%2Fsecret",
        "..",
        "a%2F..%2F..%2Fsecret",
        "%2Fetc%2Fpasswd",
        "a%5Cb",
        ".a",
        "a.safetensors%00",
    ] {
        let message = segment(format!("&model={bad}")).await.error(400);
        assert!(
            message.starts_with("invalid model name"),
            "{bad}: {message}"
        );
    }
    let field = post_form(
        addr,
        "/api/segment",
        &[
            ("model", None, b"../secret"),
            ("image", Some("a.jpg"), &photo),
        ],
    )
    .await;
    assert!(field.error(400).starts_with("invalid model name"));

    // A model added later is served after a listing, not before.
    std::fs::copy(&model, dir.join("b.safetensors")).unwrap();
    assert_eq!(segment("&model=b".into()).await.status, 404);
    let models = get(addr, "/api/models").await;
    assert_eq!(models.json()["models"], serde_json::json!(["a", "b"]));
    assert_eq!(segment("&model=b".into()).await.status, 200);
    std::fs::remove_file(dir.join("b.safetensors")).unwrap();

    // The WebSocket refuses the same names before it upgrades.
    for (query, status) in [("?model=nope", 404), ("?model=..%2Fsecret", 400)] {
        match tokio_tungstenite::connect_async(format!("ws://{addr}/ws{query}")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status().as_u16(), status, "{query}");
            }
            other => panic!("{query}: expected a refused upgrade, got {other:?}"),
        }
    }
    let after = (listing(root.path()), listing(&dir));
    assert_eq!(before, after, "the server wrote nothing");
}

async fn connect(addr: std::net::SocketAddr) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("a live colony");
    let hello = next_text(&mut socket).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    socket
}

/// The next text message (skipping frames) as JSON, within 30 s.
async fn next_text(socket: &mut Socket) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .expect("a notice within 30 s")
            .expect("the socket is open")
            .expect("a message");
        if let Message::Text(t) = message {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}

/// The header of the next frame for which `pred` holds, within 60 s.
async fn frame_where(
    socket: &mut Socket,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no frame with {what} within 60 s"))
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Binary(b) => {
                let n = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
                let header: serde_json::Value = serde_json::from_slice(&b[4..4 + n]).unwrap();
                let strip = image::load_from_memory(&b[4 + n..]).expect("a PNG strip");
                assert_eq!(strip.width(), 4 * strip.height(), "four square views");
                if pred(&header) {
                    return header;
                }
            }
            Message::Text(t) => panic!("unexpected notice while waiting for {what}: {t}"),
            _ => {}
        }
    }
}

fn image_message(kind: u8, bytes: &[u8]) -> Message {
    let mut m = vec![kind];
    m.extend_from_slice(bytes);
    Message::Binary(m.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_colony_streams_frames_and_answers_bad_commands() {
    let (addr, _) = start_default().await;
    let mut socket = connect(addr).await;
    let photo = fixture_bytes(PHOTO);
    socket.send(image_message(b'P', &photo)).await.unwrap();
    let first = frame_where(&mut socket, "a step", |h| h["step"].as_u64() > Some(0)).await;
    assert_eq!(first["model"], "pets48");
    socket
        .send(Message::text(r#"{"cmd":"speed","steps_per_second":1000}"#))
        .await
        .unwrap();
    let later = frame_where(&mut socket, "a measured speed", |h| {
        h["step"].as_u64() >= Some(150) && h["steps_per_second"].as_f64() > Some(0.0)
    })
    .await;
    assert_eq!(later["target_speed"], 1000);
    eprintln!(
        "48x48 colony at full speed: {} steps per second",
        later["steps_per_second"]
    );

    let bad: [(Message, u16, &str); 7] = [
        (Message::text("{\"cmd\":\"fly\"}"), 400, "bad command"),
        (Message::text("not json"), 400, "bad command"),
        (
            Message::text(r#"{"cmd":"steps","steps":0}"#),
            400,
            "steps 0",
        ),
        (
            Message::text(r#"{"cmd":"damage","x":2,"y":0.5,"radius":0.1}"#),
            400,
            "damage at (2, 0.5)",
        ),
        (Message::binary(b"Xjunk".to_vec()), 400, "start with 'P'"),
        (
            image_message(b'P', &photo[..photo.len() / 3]),
            400,
            "truncated JPEG",
        ),
        (
            Message::text(r#"{"cmd":"model","name":"nope"}"#),
            404,
            "unknown model 'nope'",
        ),
    ];
    for (message, status, want) in bad {
        socket.send(message).await.unwrap();
        let notice = next_text(&mut socket).await;
        assert_eq!(notice["type"], "error", "{notice}");
        assert_eq!(notice["status"], status, "{notice}");
        assert!(
            notice["error"].as_str().unwrap().contains(want),
            "{want}: {notice}"
        );
    }

    // Damage, then the uncertainty view with its runs.
    socket
        .send(Message::text(
            r#"{"cmd":"damage","x":0.5,"y":0.5,"radius":0.3}"#,
        ))
        .await
        .unwrap();
    frame_where(&mut socket, "a frame after damage", |h| h["damages"] == 1).await;
    socket
        .send(Message::text(r#"{"cmd":"uncertainty","on":true}"#))
        .await
        .unwrap();
    let spread = frame_where(&mut socket, "uncertainty", |h| {
        h["uncertainty"] == true && h["step"].as_u64() >= Some(5)
    })
    .await;
    // Four stochastic runs from their own random states disagree somewhere:
    // a zero spread would mean one run shown four times.
    assert_eq!(spread["runs"], 4);
    assert!(
        spread["mean_variance"].as_f64().is_some_and(|v| v > 0.0),
        "{spread}"
    );
    // A video frame keeps the colony (the step counter goes on).
    let before = spread["step"].as_u64().unwrap();
    socket
        .send(image_message(b'V', &fixture_bytes("synth-dog-002")))
        .await
        .unwrap();
    let video = frame_where(&mut socket, "a video frame", |h| h["video_frames"] == 1).await;
    assert!(video["step"].as_u64().unwrap() >= before, "{video}");
    socket.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colonies_are_bounded_and_a_closed_socket_frees_its_own() {
    let (addr, state) = start(ServeConfig {
        models_dir: models_dir(),
        max_colonies: 2,
        ..ServeConfig::default()
    })
    .await;
    let mut first = connect(addr).await;
    let second = connect(addr).await;
    assert_eq!(state.live_colonies(), 2);
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 503);
            let body =
                String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.contains("server busy: all 2 colonies are in use"),
                "{body}"
            );
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // API calls have their own pool: two open pages do not lock them out.
    let photo = fixture_bytes(PHOTO);
    let api = post_form(addr, "/api/segment", &[("image", Some("a.jpg"), &photo)]).await;
    assert_eq!(api.status, 200, "{}", String::from_utf8_lossy(&api.body));

    // A running colony on the first socket, then the tab closes.
    first.send(image_message(b'P', &photo)).await.unwrap();
    frame_where(&mut first, "a step", |h| h["step"].as_u64() > Some(0)).await;
    first.close(None).await.unwrap();
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.live_colonies() > 1 {
        assert!(
            Instant::now() < deadline,
            "the closed socket's colony was not freed in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = get(addr, "/api/status").await.json();
    assert_eq!(
        (
            status["live_colonies"].as_u64(),
            status["max_colonies"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let third = connect(addr).await;
    assert_eq!(state.live_colonies(), 2);
    drop((second, third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_colony_runs_until_paused_and_a_flood_of_strokes_is_bounded() {
    // Issue 24: the colony halted after 200 steps while the page still
    // read "Pause"; 1000 damage commands were queued without bound.
    let (addr, _) = start_default().await;
    let mut socket = connect(addr).await;
    socket
        .send(image_message(b'P', &fixture_bytes(PHOTO)))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"cmd":"speed","steps_per_second":1000}"#))
        .await
        .unwrap();
    let past = frame_where(&mut socket, "step 300", |h| h["step"].as_u64() >= Some(300)).await;
    assert_eq!(
        (past["running"].as_bool(), past["max_steps"].is_null()),
        (Some(true), true),
        "{past}"
    );
    // Issue 39: the page hears when the class map settled
    // (`Settling::default`, within 8 to 80 steps of the photo).
    let settled = past["settled_after"].as_u64();
    assert!(settled.is_some_and(|n| (8..=80).contains(&n)), "{past}");

    // A limit halts it: the frame says so and the rate reads 0.
    socket
        .send(Message::text(r#"{"cmd":"steps","steps":5}"#))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"cmd":"restart"}"#))
        .await
        .unwrap();
    let halted = frame_where(&mut socket, "the halt at 5 steps", |h| {
        h["since_event"].as_u64() == Some(5) && h["running"] == false
    })
    .await;
    assert_eq!(halted["playing"], true);
    assert_eq!(halted["steps_per_second"], 0.0);
    assert!(
        halted["settled_after"].is_null(),
        "not before 8 steps: {halted}"
    );
    // No limit again: it runs on.
    socket
        .send(Message::text(r#"{"cmd":"steps","steps":null}"#))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"cmd":"play","on":true}"#))
        .await
        .unwrap();
    frame_where(&mut socket, "steps past the old limit", |h| {
        h["since_event"].as_u64() > Some(50) && h["running"] == true
    })
    .await;

    // 1000 strokes at once: the socket stays, a later command is obeyed.
    let stroke = Message::text(r#"{"cmd":"damage","x":0.5,"y":0.5,"radius":0.2}"#);
    for _ in 0..1000 {
        socket.send(stroke.clone()).await.unwrap();
    }
    socket
        .send(Message::text(r#"{"cmd":"play","on":false}"#))
        .await
        .unwrap();
    let paused = frame_where(&mut socket, "the pause after the flood", |h| {
        h["playing"] == false
    })
    .await;
    assert!(paused["damages"].as_u64().unwrap() >= 1, "{paused}");
    assert!(paused["damages"].as_u64().unwrap() <= 1000, "{paused}");
    assert_eq!(paused["steps_per_second"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_socket_message_gets_a_close_code_and_reason() {
    // Issue 24: a 9 MB message dropped the socket without a close frame.
    let (addr, state) = start_default().await;
    let mut socket = connect(addr).await;
    let mut big = vec![b'P'];
    big.resize(9 << 20, 0);
    // The server may close while the message is still being written.
    let _ = socket.send(Message::binary(big)).await;
    let (frame, _) = close_frame(&mut socket).await;
    let (code, reason) = frame.expect("a close frame with a reason");
    assert_eq!(code, ca_serve::routes::TOO_BIG_CLOSE_CODE);
    // Whole (it was cut at the close frame's 123 bytes, mid-sentence).
    assert!(
        reason.contains("over 8388609 bytes") && reason.ends_with("reload the page"),
        "{reason}"
    );
    all_freed(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_list_says_what_each_model_is() {
    let (addr, _) = start_default().await;
    let body = get(addr, "/api/models").await.json();
    let details = body["details"].as_array().expect("details");
    let small = details
        .iter()
        .find(|d| d["name"] == "pets48-small")
        .expect("pets48-small listed");
    let params = small["params"].as_u64().unwrap();
    assert!((8_000..10_000).contains(&params), "{small}");
    let object = small["val_object"]
        .as_f64()
        .expect("its metrics file's validation IoU");
    assert!((0.0..=1.0).contains(&object), "{small}");
    assert_eq!(small["cascade"], serde_json::Value::Null, "{small}");
    let cascade = details
        .iter()
        .find(|d| d["name"] == "pets48-cascade")
        .expect("pets48-cascade listed");
    assert_eq!(cascade["cascade"], "1/4 x 20, 1/2 x 10", "{cascade}");
    assert_eq!(body["default"], "pets48");
    assert_eq!(details.len(), body["models"].as_array().unwrap().len());
}

/// The close frame that ends `socket` within 30 s, after any frames and
/// notices (collected).
async fn close_frame(socket: &mut Socket) -> (Option<(u16, String)>, Vec<serde_json::Value>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut notices = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .expect("the socket closed within 30 s");
        match message {
            Some(Ok(Message::Close(frame))) => {
                return (
                    frame.map(|f| (f.code.into(), f.reason.to_string())),
                    notices,
                )
            }
            Some(Ok(Message::Text(t))) => notices.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (None, notices),
        }
    }
}

/// Waits until `state` holds no live colony, at most 20 s.
async fn all_freed(state: &ca_serve::AppState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.live_colonies() > 0 {
        assert!(Instant::now() < deadline, "a slot was not freed in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pages_are_closed_with_a_reason_and_free_their_slots() {
    // Issue 24: a page that never sends a photo held its slot forever.
    let (addr, state) = start(ServeConfig {
        models_dir: models_dir(),
        max_colonies: 1,
        photo_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..ServeConfig::default()
    })
    .await;
    let mut silent = connect(addr).await;
    let (frame, notices) = close_frame(&mut silent).await;
    let (code, reason) = frame.expect("a close frame with a reason");
    assert_eq!(code, ca_serve::routes::IDLE_CLOSE_CODE);
    assert!(reason.contains("no photo in the first 1 s"), "{reason}");
    assert!(
        notices
            .iter()
            .any(|n| n["status"] == 408 && n["error"] == reason.as_str()),
        "{notices:?}"
    );
    all_freed(&state).await;

    // A page that sends a photo and then nothing is closed once idle.
    let mut quiet = connect(addr).await;
    let started = Instant::now();
    quiet
        .send(image_message(b'P', &fixture_bytes(PHOTO)))
        .await
        .unwrap();
    let (frame, _) = close_frame(&mut quiet).await;
    let (_, reason) = frame.expect("a close frame with a reason");
    assert!(
        reason.contains("no message from the page in 2 s"),
        "{reason}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    all_freed(&state).await;
    connect(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_api_clients_are_queued_not_refused() {
    // Issue 24: 20 clients x 5 POSTs got 80 answers of 503 under the
    // default settings.
    let (addr, state) = start_default().await;
    let photo = Arc::new(fixture_bytes(PHOTO));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let photo = photo.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..5 {
                    let fields: [(&str, Option<&str>, &[u8]); 2] =
                        [("image", Some("a.jpg"), &photo), ("steps", None, b"10")];
                    statuses.push(post_form(addr, "/api/segment", &fields).await.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in clients {
        statuses.extend(c.await.unwrap());
    }
    assert_eq!(statuses.len(), 100);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!((state.api_running(), state.api_waiting()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_api_queue_answers_503_with_retry_after() {
    let (addr, state) = start(ServeConfig {
        models_dir: models_dir(),
        max_api_colonies: 1,
        api_queue: 1,
        api_wait: Duration::from_secs(1),
        ..ServeConfig::default()
    })
    .await;
    let held = state.take_api_slot().await.unwrap();
    let photo = fixture_bytes(PHOTO);
    let started = Instant::now();
    let answer = post_form(addr, "/api/segment", &[("image", Some("a.jpg"), &photo)]).await;
    assert!(answer.error(503).contains("no API slot came free"));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    // With the queue full (one waiter), the next call is refused at once.
    let waiter = {
        let state = state.clone();
        tokio::spawn(async move { state.take_api_slot().await.map(drop) })
    };
    while state.api_waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answer = post_form(addr, "/api/segment", &[("image", Some("a.jpg"), &photo)]).await;
    assert!(answer.error(503).contains("calls are queued"));
    assert!(answer.retry_after.is_some());
    drop(held);
    waiter.await.unwrap().unwrap();
    let answer = post_form(addr, "/api/segment", &[("image", Some("a.jpg"), &photo)]).await;
    assert_eq!(answer.status, 200);
    let status = get(addr, "/api/status").await.json();
    assert_eq!(status["max_api_colonies"], 1);
    assert_eq!(status["api_waiting"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_count_and_wrong_methods_get_json_405() {
    // Issue 24: `?steps=` was silently ignored, 405 had an empty body.
    let (addr, _) = start_default().await;
    let photo = fixture_bytes(PHOTO);
    let form = [("image", Some("a.jpg"), photo.as_slice())];
    let answer = post_form(addr, "/api/segment?format=json&steps=3", &form).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["steps"], 3);
    let answer = post_form(addr, "/api/segment?format=json&model=pets48-small", &form).await;
    assert_eq!(answer.json()["model"], "pets48-small");
    let answer = post_form(addr, "/api/segment?steps=0", &form).await;
    assert!(answer.error(400).contains("query 'steps' = '0'"));
    let twice = [
        ("image", Some("a.jpg"), photo.as_slice()),
        ("steps", None, b"5".as_slice()),
    ];
    let answer = post_form(addr, "/api/segment?steps=3", &twice).await;
    assert!(answer
        .error(400)
        .contains("both in the query and in the form"));
    let answer = post_form(addr, "/api/segment?size=huge", &form).await;
    assert!(answer.error(400).contains("expected grid or native"));
    // An ensemble averages several colonies; its count is bounded.
    let answer = post_form(addr, "/api/segment?format=json&steps=3&ensemble=3", &form).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["ensemble"], 3);
    // Anytime: the reply says how many steps the colony took.
    let answer = post_form(addr, "/api/segment?format=json&until_stable=true", &form).await;
    assert_eq!(answer.status, 200);
    let json = answer.json();
    assert_eq!(json["until_stable"], true);
    let steps = json["steps"].as_u64().unwrap();
    assert!((8..=80).contains(&steps), "{steps}");
    assert!(
        json["settled"].as_bool() == Some(true) || steps == 80,
        "{json}"
    );
    let answer = post_form(addr, "/api/segment?until_stable=maybe", &form).await;
    assert!(answer.error(400).contains("query 'until_stable' = 'maybe'"));
    for bad in ["0", "9", "two"] {
        let answer = post_form(addr, &format!("/api/segment?ensemble={bad}"), &form).await;
        let message = answer.error(400);
        assert!(
            message.contains(&format!("query 'ensemble' = '{bad}'")) && message.contains("1 to 8"),
            "{message}"
        );
    }

    for method in ["GET", "PUT", "DELETE"] {
        let answer = request(addr, method, "/api/segment", None, vec![]).await;
        assert!(answer.error(405).contains(method), "{method}");
        assert_eq!(answer.allow.as_deref(), Some("POST"));
    }
    let answer = request(addr, "POST", "/api/status", None, vec![]).await;
    assert!(answer.error(405).contains("use GET"));
    assert_eq!(answer.allow.as_deref(), Some("GET, HEAD"));

    let icon = get(addr, "/favicon.ico").await;
    assert_eq!(
        (icon.status, icon.content_type.as_str()),
        (200, "image/svg+xml")
    );
    assert!(String::from_utf8_lossy(&icon.body).starts_with("<svg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_native_answers_the_map_at_the_photos_size() {
    let (addr, _) = start_default().await;
    let photo = png_bytes(&RgbImage::from_fn(75, 40, |x, y| {
        Rgb([(x * 3) as u8, (y * 5) as u8, 60])
    }));
    let form = [
        ("image", Some("a.png"), photo.as_slice()),
        ("steps", None, b"5".as_slice()),
    ];
    let answer = post_form(addr, "/api/segment?size=native", &form).await;
    assert_eq!(answer.status, 200);
    let map = image::load_from_memory(&answer.body).unwrap();
    assert_eq!((map.width(), map.height()), (75, 40));
    let answer = post_form(addr, "/api/segment?size=native&format=json", &form).await;
    let json = answer.json();
    assert_eq!(
        (json["width"].as_u64(), json["height"].as_u64()),
        (Some(75), Some(40))
    );
    let rows = json["labels"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    assert_eq!(rows[0].as_array().unwrap().len(), 75);
    // Counts cover every pixel of the native map.
    let total: u64 = json["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 75 * 40);
    // The default stays the model's square grid.
    let answer = post_form(addr, "/api/segment", &form).await;
    let map = image::load_from_memory(&answer.body).unwrap();
    assert_eq!((map.width(), map.height()), (48, 48));
}

/// A handler that panics on purpose (the panic message in the test output is expected).
async fn boom() -> &'static str {
    panic!("deliberate panic: the catch-panic guard must answer a JSON 500")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_json_500() {
    let app = guarded(
        axum::Router::new().route("/boom", axum::routing::get(boom)),
        1024,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let answer = get(addr, "/boom").await;
    assert!(answer.error(500).contains("panicked"));
    // The server lives on.
    assert!(get(addr, "/boom").await.error(500).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_folders_stop_the_start_with_a_reason() {
    let bad = ca_serve::Server::bind(ServeConfig {
        max_fps: 0,
        ..ServeConfig::default()
    })
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("max_fps = 0"), "{bad}");
    let missing = ca_serve::Server::bind(ServeConfig {
        port: 0,
        models_dir: repo_root().join("no-such-models"),
        ..ServeConfig::default()
    })
    .await
    .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot list the models folder"),
        "{missing}"
    );
    let empty = temp_dir("empty-models");
    let none = ca_serve::Server::bind(ServeConfig {
        port: 0,
        models_dir: empty.path().to_path_buf(),
        ..ServeConfig::default()
    })
    .await
    .unwrap_err();
    assert!(
        none.to_string()
            .contains("the default model 'pets48' is not in"),
        "{none}"
    );
}
