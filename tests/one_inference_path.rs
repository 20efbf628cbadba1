//! One seeding rule (issue 36 item 2): the same model, image, seed and
//! steps give the same class map through `segment` (`ca_viz::segment`),
//! the evaluator (`ca_sched::iou_over_time`, first chunk, batch 1) and the
//! server's `POST /api/segment` (seed 0, `DEFAULT_STEPS`).

use std::io::{Read, Write};
use std::path::Path;

use candle_core::{Device, Tensor};
use cellseg::ca_core::DEFAULT_STEPS;
use cellseg::ca_data::{self, ImageLimits};
use cellseg::ca_model::load_model;
use cellseg::ca_serve::{ServeConfig, Server};
use cellseg::ca_viz::segment::{segment, SegmentOptions};

const PHOTO: &str = "fixtures/pets-synthetic/images/synth-cat-001.jpg";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The class map of `POST /api/segment` (the default model and steps) of
/// `photo`, from a server on a free loopback port.
fn api_classes(photo: &[u8]) -> Vec<u32> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(Server::bind(ServeConfig {
            port: 0,
            models_dir: root().join("models"),
            default_model: "pets48".into(),
            ..ServeConfig::default()
        }))
        .expect("the server starts");
    let addr = server.local_addr().unwrap();
    runtime.spawn(server.run());
    let boundary = "one-path";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(photo);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /api/segment HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply[..split])
    );
    let map = image::load_from_memory(&reply[split..])
        .unwrap()
        .into_rgb8();
    map.pixels()
        .map(|p| {
            cellseg::ca_viz::render::PALETTE
                .iter()
                .position(|c| *c == p.0)
                .expect("a palette colour") as u32
        })
        .collect()
}

#[test]
fn segment_evaluate_and_the_api_give_one_map() {
    let (model, size) = load_model(root().join("models/pets48.safetensors"), &Device::Cpu).unwrap();
    let photo_bytes = std::fs::read(root().join(PHOTO)).unwrap();
    let photo =
        ca_data::decode_photo(&photo_bytes, Path::new(PHOTO), &ImageLimits::default()).unwrap();
    let options = SegmentOptions {
        size,
        native: false,
        steps: DEFAULT_STEPS,
        seed: 0,
        frame_every: None,
        frame_scale: 1,
        ensemble: 1,
        until_stable: None,
    };
    let by_segment = segment(&model, &photo, &options).unwrap().classes;
    assert_eq!(by_segment.len(), size * size);

    // The evaluator, scored against segment's own map: every class it
    // shows has IoU 1 exactly when the two maps are the same.
    let image = Tensor::from_vec(
        ca_data::resize::image_to_chw(&photo, size),
        (1, 3, size, size),
        &Device::Cpu,
    )
    .unwrap();
    let table = cellseg::ca_sched::iou_over_time(&model, 1, 1, 0, &[DEFAULT_STEPS], |_, t| {
        Ok((t == 1).then(|| (image.clone(), by_segment.clone())))
    })
    .unwrap();
    let shown: Vec<f64> = table.iou[0]
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    assert!(shown.len() >= 2, "{:?}", table.iou);
    assert!(
        shown.iter().all(|&v| v == 1.0),
        "segment and evaluate differ: {:?}",
        table.iou
    );

    assert_eq!(
        api_classes(&photo_bytes),
        by_segment,
        "segment and the API differ"
    );
}
