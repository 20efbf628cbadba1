//! What one API request may cost in memory (issue 35), measured with the
//! allocations of this test binary counted (server and client run in it,
//! one request at a time): a PNG whose ICC profile inflates to 256 MiB, and
//! `size=native` replies of a 4096 x 4096 photo (a 254 KB upload).

mod support;

use ca_data::hostile::{iccp_bomb_png, peak_of_async, CountingAllocator};
use image::{Rgb, RgbImage};
use support::*;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_costs_a_bounded_amount_of_memory() {
    let (addr, _) = start_default().await;
    let photo = fixture_bytes("synth-cat-001");
    // Warm up: the model is loaded, the step's buffers pooled.
    let warm = post_form(addr, "/api/segment", &[("image", Some("cat.jpg"), &photo)]).await;
    assert_eq!(warm.status, 200);

    let bomb = iccp_bomb_png(256 << 20);
    let (answer, peak) = peak_of_async(post_form(
        addr,
        "/api/segment",
        &[("image", Some("bomb.png"), &bomb)],
    ))
    .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    eprintln!(
        "iCCP bomb (256 MiB inflated, {} bytes): peak {:.1} MiB",
        bomb.len(),
        peak as f64 / MIB as f64
    );
    assert!(peak < 64 * MIB, "iCCP bomb: peak {peak} bytes");

    let big = png_bytes(&RgbImage::from_pixel(4096, 4096, Rgb([90, 120, 30])));
    assert!(big.len() < 1 << 20, "{} bytes", big.len());
    let (answer, peak) = peak_of_async(post_form(
        addr,
        "/api/segment?format=json&size=native&steps=5",
        &[("image", Some("big.png"), &big)],
    ))
    .await;
    let message = answer.error(413);
    assert!(
        message.contains("16777216 labels") && message.contains("format=png"),
        "{message}"
    );
    eprintln!(
        "4096x4096 native JSON, refused: peak {:.1} MiB",
        peak as f64 / MIB as f64
    );
    assert!(peak < 96 * MIB, "refused native JSON: peak {peak} bytes");

    let (answer, peak) = peak_of_async(post_form(
        addr,
        "/api/segment?size=native&steps=5",
        &[("image", Some("big.png"), &big)],
    ))
    .await;
    assert_eq!(answer.status, 200);
    let map = image::load_from_memory(&answer.body).expect("a PNG");
    assert_eq!((map.width(), map.height()), (4096, 4096));
    eprintln!(
        "4096x4096 native PNG: peak {:.1} MiB, reply {} bytes",
        peak as f64 / MIB as f64,
        answer.body.len()
    );
    assert!(peak < 96 * MIB, "native PNG: peak {peak} bytes");

    // The largest native JSON map allowed (1024 x 1024 labels).
    let side = png_bytes(&RgbImage::from_pixel(1024, 1024, Rgb([90, 120, 30])));
    let (answer, peak) = peak_of_async(post_form(
        addr,
        "/api/segment?format=json&size=native&steps=5",
        &[("image", Some("side.png"), &side)],
    ))
    .await;
    let v = answer.json();
    assert_eq!(v["labels"].as_array().map(Vec::len), Some(1024));
    eprintln!(
        "1024x1024 native JSON: peak {:.1} MiB, reply {} bytes",
        peak as f64 / MIB as f64,
        answer.body.len()
    );
    assert!(peak < 32 * MIB, "native JSON at the cap: peak {peak} bytes");
}
