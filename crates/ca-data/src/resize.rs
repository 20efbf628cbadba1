//! Resizing decoded images and label maps to the square training size.
//!
//! Images are stretched (aspect ratio not kept) to `size x size` with a
//! triangle (bilinear) filter whose support widens with the scale factor, so
//! a large downscale averages over the covered area instead of aliasing.
//! Label maps use nearest neighbour at pixel centres, so no new class values
//! appear. Pixels are scaled to [0, 1] by dividing by 255; no mean or
//! standard deviation is subtracted.

use image::imageops::{self, FilterType};
use image::{GrayImage, RgbImage};

/// Resizes an RGB image to `size x size` and returns it as `[3, size, size]`
/// (channel-major, row-major) f32 values in [0, 1].
pub fn image_to_chw(image: &RgbImage, size: usize) -> Vec<f32> {
    let side = size as u32;
    let resized;
    let src = if image.dimensions() == (side, side) {
        image
    } else {
        resized = imageops::resize(image, side, side, FilterType::Triangle);
        &resized
    };
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in src.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(p.0[c]) / 255.0;
        }
    }
    out
}

/// Resizes a label map (class ids) to `size x size` by nearest neighbour at
/// pixel centres and returns it as `[size, size]` row-major values.
pub fn labels_nearest(labels: &GrayImage, size: usize) -> Vec<u8> {
    let (w, h) = (labels.width() as usize, labels.height() as usize);
    let raw = labels.as_raw();
    let xs = nearest_indices(w, size);
    let ys = nearest_indices(h, size);
    let mut out = Vec::with_capacity(size * size);
    for &y in &ys {
        let row = &raw[y * w..(y + 1) * w];
        out.extend(xs.iter().map(|&x| row[x]));
    }
    out
}

/// Source index of each of `dst` output pixels when `src` pixels are
/// stretched over them, sampling at pixel centres.
fn nearest_indices(src: usize, dst: usize) -> Vec<usize> {
    (0..dst)
        .map(|i| (((i as f64 + 0.5) * src as f64 / dst as f64) as usize).min(src - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_layout_and_scaling() {
        let img = RgbImage::from_fn(2, 2, |x, y| {
            image::Rgb([255, (x * 255) as u8, (y * 255) as u8])
        });
        let chw = image_to_chw(&img, 2);
        assert_eq!(chw.len(), 12);
        assert_eq!(&chw[0..4], &[1.0; 4]);
        assert_eq!(&chw[4..8], &[0.0, 1.0, 0.0, 1.0]);
        assert_eq!(&chw[8..12], &[0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([10, 20, 30]));
        let chw = image_to_chw(&img, 16);
        assert!(chw[..256].iter().all(|&v| (v - 10.0 / 255.0).abs() < 1e-6));
        assert!(chw[512..].iter().all(|&v| (v - 30.0 / 255.0).abs() < 1e-6));
    }

    #[test]
    fn nearest_keeps_blocks() {
        let labels = GrayImage::from_fn(4, 2, |x, _| image::Luma([(x / 2) as u8]));
        assert_eq!(labels_nearest(&labels, 2), vec![0, 1, 0, 1]);
        assert_eq!(labels_nearest(&labels, 4)[..4], [0, 0, 1, 1]);
    }
}
