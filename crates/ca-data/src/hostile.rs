//! Hostile photos, made on the fly rather than stored: the inputs the
//! tests of every tool that reads photos (`segment`, the server) throw at
//! [`crate::decode_photo`] and its callers; and [`CountingAllocator`], to
//! measure the memory they cost.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Cursor, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{ImageFormat, Rgb, RgbImage};

/// `image` as PNG bytes.
pub fn png_bytes(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("encoding a PNG in memory cannot fail");
    bytes
}

/// A PNG chunk: length, type, data, CRC of type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// A flat 64 x 64 PNG (colour `[120, 80, 40]`) with an iCCP chunk whose
/// compressed profile inflates to `inflated` zero bytes (rounded down to
/// whole MiB): about a thousandth of that in the file.
pub fn iccp_bomb_png(inflated: usize) -> Vec<u8> {
    let plain = png_bytes(&RgbImage::from_pixel(64, 64, Rgb([120, 80, 40])));
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..inflated >> 20 {
        zlib.write_all(&zeros).expect("writing to memory");
    }
    // Profile name, its NUL, compression method 0, the zlib stream.
    let mut profile = b"bomb\0\0".to_vec();
    profile.extend_from_slice(&zlib.finish().expect("writing to memory"));
    // The signature (8 bytes) and IHDR (25 bytes) come first; iCCP must
    // come before IDAT.
    let mut bytes = plain[..33].to_vec();
    bytes.extend_from_slice(&png_chunk(b"iCCP", &profile));
    bytes.extend_from_slice(&plain[33..]);
    bytes
}

/// `image` as a JPEG with an EXIF APP1 segment giving `orientation` (1:
/// upright, 6: shown turned 90 degrees clockwise, as phones store portrait
/// photos).
pub fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .expect("encoding a JPEG in memory cannot fail");
    // "Exif\0\0", a big-endian TIFF header, one IFD entry (0x0112
    // Orientation, SHORT, count 1, the value), no next IFD.
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

/// A photo stored 160 wide and 107 tall, its left half red and its right
/// half blue: with orientation 6 it shows 107 wide and 160 tall, red on
/// top.
pub fn red_left_blue_right() -> RgbImage {
    RgbImage::from_fn(160, 107, |x, _| {
        if x < 80 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    })
}

/// A global allocator over the system's that counts the bytes live now and
/// the most live since the last [`peak_of`]: a test binary installs it
/// with `#[global_allocator]` and measures what a request or a decode
/// allocates at most.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only read.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
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
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

/// The most bytes live at once while `work` ran, above what was live when
/// it started (meaningful only with [`CountingAllocator`] installed, and
/// process-wide: run one measured test at a time).
pub fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = work();
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

/// [`peak_of`] for a future.
pub async fn peak_of_async<T>(work: impl std::future::Future<Output = T>) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = work.await;
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}
