//! Photos as `segment` and the server read them (issue 35): the EXIF
//! orientation is applied, and a PNG whose compressed ICC profile inflates
//! to hundreds of MB is decoded within the metadata budget (the profile
//! dropped), with the
//! allocations of this test binary counted to show it.

use std::path::Path;
use std::sync::Mutex;

use ca_data::hostile::{
    iccp_bomb_png, jpeg_with_orientation, peak_of, red_left_blue_right, CountingAllocator,
};
use ca_data::{decode_photo, load_rgb, ImageLimits};
use image::Rgb;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// One test at a time: the peak is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn an_iccp_bomb_is_decoded_within_the_metadata_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bomb = iccp_bomb_png(256 << 20);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let limits = ImageLimits::default();
    // The PNG decoder stops inflating the profile at the budget and drops
    // it (colour profiles are not used); the pixels decode.
    let (result, peak) = peak_of(|| decode_photo(&bomb, Path::new("bomb.png"), &limits));
    let photo = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(photo.dimensions(), (64, 64));
    assert_eq!(photo.get_pixel(5, 5).0, [120, 80, 40]);
    // The budget (16 MiB) and the file, with room for the decoder's own
    // buffers; without the budget the header read alone inflated the
    // whole profile (256 MiB here).
    assert!(peak < 48 << 20, "peak {peak} bytes");

    // The dataset loader's header read is held to the same budget.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.jpg");
    std::fs::write(&path, &bomb).unwrap();
    let (result, peak) = peak_of(|| load_rgb(&path).map(|p| p.dimensions()));
    assert_eq!(result.unwrap_or_else(|e| panic!("{e}")), (64, 64));
    assert!(peak < 48 << 20, "peak {peak} bytes");
}

#[test]
fn exif_orientation_gives_the_photo_as_it_is_shown() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Stored 160 wide, 107 tall: the left half red, the right half blue.
    let stored = red_left_blue_right();
    let limits = ImageLimits::default();
    let upright = decode_photo(
        &jpeg_with_orientation(&stored, 1),
        Path::new("o1.jpg"),
        &limits,
    )
    .unwrap();
    assert_eq!(upright.dimensions(), (160, 107));
    // Orientation 6: shown turned 90 degrees clockwise, so 107 wide and
    // 160 tall, the stored left (red) on top.
    let turned = decode_photo(
        &jpeg_with_orientation(&stored, 6),
        Path::new("o6.jpg"),
        &limits,
    )
    .unwrap();
    assert_eq!(turned.dimensions(), (107, 160));
    let red = |p: &Rgb<u8>| p.0[0] > 150 && p.0[2] < 100;
    assert!(
        red(turned.get_pixel(53, 20)),
        "{:?}",
        turned.get_pixel(53, 20)
    );
    assert!(
        !red(turned.get_pixel(53, 140)),
        "{:?}",
        turned.get_pixel(53, 140)
    );
}
