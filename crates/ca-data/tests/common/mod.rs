//! Helpers shared by the integration tests: temporary dataset layouts and
//! small hand-made files.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{GrayImage, Luma, Rgb, RgbImage};

/// A temporary Oxford-IIIT Pet layout, removed on drop.
pub struct Layout {
    pub dir: tempfile::TempDir,
}

impl Layout {
    /// Creates `images/` and `annotations/trimaps/` in a fresh temp dir.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ca-data-test-")
            .tempdir()
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("images")).expect("mkdir");
        fs::create_dir_all(dir.path().join("annotations/trimaps")).expect("mkdir");
        Layout { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn image(&self, name: &str) -> PathBuf {
        ca_data::image_path(self.root(), name)
    }

    pub fn trimap(&self, name: &str) -> PathBuf {
        ca_data::trimap_path(self.root(), name)
    }

    /// Writes `annotations/trainval.txt` with exactly `text`.
    pub fn split(&self, text: &str) {
        fs::write(self.root().join("annotations/trainval.txt"), text).expect("write split");
    }

    /// Writes a good `w x h` JPEG image and 8-bit trimap for `name`.
    pub fn good_pair(&self, name: &str, w: u32, h: u32) {
        fs::write(self.image(name), jpeg_bytes(&test_image(w, h))).expect("write image");
        test_trimap(w, h)
            .save(self.trimap(name))
            .expect("write trimap");
    }
}

/// A smooth colourful test image.
pub fn test_image(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / w.max(2)) as u8, (y * 255 / h.max(2)) as u8, 128])
    })
}

/// A trimap: pet (1) in the middle, boundary ring (3), background (2).
pub fn trimap_value(x: u32, y: u32, w: u32, h: u32) -> u8 {
    let dx = x as f32 - w as f32 / 2.0;
    let dy = y as f32 - h as f32 / 2.0;
    let r = (dx * dx + dy * dy).sqrt() / (w.min(h) as f32 / 2.0);
    if r < 0.5 {
        1
    } else if r < 0.7 {
        3
    } else {
        2
    }
}

/// The 8-bit grayscale trimap of [`trimap_value`].
pub fn test_trimap(w: u32, h: u32) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| Luma([trimap_value(x, y, w, h)]))
}

/// Baseline JPEG bytes of an RGB image, quality 90.
pub fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .expect("encode jpeg");
    out
}
