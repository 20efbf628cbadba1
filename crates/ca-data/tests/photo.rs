//! Photos as `segment` and the server read them (issue 35): the EXIF
//! orientation is applied, and a PNG whose compressed ICC profile inflates
//! to hundreds of MB is refused within the metadata budget, with the
//! allocations of this test binary counted to show it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ca_data::{decode_photo, load_rgb, ImageLimits};
use image::{ImageFormat, Rgb, RgbImage};

/// The global allocator, counting the bytes live now and the most live
/// since [`reset_peak`].
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::SeqCst) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::SeqCst);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time: the peak is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// The most bytes allocated at once while `work` runs, above what was live
/// when it started.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = work();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

fn png_of(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

/// A PNG chunk: length, type, data, CRC of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// A 64 x 64 PNG with an iCCP chunk holding `inflated` zero bytes,
/// compressed (about a thousandth of that in the file).
fn iccp_bomb(inflated: usize) -> Vec<u8> {
    let plain = png_of(&RgbImage::from_pixel(64, 64, Rgb([120, 80, 40])));
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..inflated >> 20 {
        zlib.write_all(&zeros).unwrap();
    }
    let mut profile = b"bomb\0\0".to_vec();
    profile.extend_from_slice(&zlib.finish().unwrap());
    // The signature (8 bytes) and IHDR (25 bytes) come first; iCCP must
    // come before IDAT.
    let mut bytes = plain[..33].to_vec();
    bytes.extend_from_slice(&chunk(b"iCCP", &profile));
    bytes.extend_from_slice(&plain[33..]);
    bytes
}

#[test]
fn an_iccp_bomb_is_decoded_within_the_metadata_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bomb = iccp_bomb(256 << 20);
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

/// A JPEG of `image` with an EXIF APP1 segment giving `orientation`.
fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    // "Exif\0\0", a big-endian TIFF header, one IFD entry (0x0112
    // Orientation, SHORT, count 1), no next IFD.
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_gives_the_photo_as_it_is_shown() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Stored 160 wide, 107 tall: the left half red, the right half blue.
    let stored = RgbImage::from_fn(160, 107, |x, _| {
        if x < 80 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    });
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
