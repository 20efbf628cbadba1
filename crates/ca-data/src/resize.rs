//! Resizing decoded images and label maps to the square training size.
//!
//! Images are stretched (aspect ratio not kept) to `size x size` with a
//! triangle (bilinear) filter whose support widens with the scale factor, so
//! a large downscale averages over the covered area instead of aliasing:
//! the filter of `image`'s `imageops::resize` with `FilterType::Triangle`,
//! to within one level of 255. Unlike that function, the resize here runs
//! its two separable passes in the order whose intermediate image is the
//! smaller one, so its memory is bounded by the output and the shorter
//! side, never by `width x target height`: a 16777216x1 photo resized to
//! 48x48 holds 48 intermediate pixels, not 805 million (issue 24).
//! Label maps use nearest neighbour at pixel centres, so no new class values
//! appear. Pixels are scaled to [0, 1] by dividing by 255; no mean or
//! standard deviation is subtracted.

use image::{GrayImage, RgbImage};

/// Resizes an RGB image to `size x size` and returns it as `[3, size, size]`
/// (channel-major, row-major) f32 values in [0, 1].
pub fn image_to_chw(image: &RgbImage, size: usize) -> Vec<f32> {
    let side = size as u32;
    let resized;
    let src = if image.dimensions() == (side, side) {
        image
    } else {
        resized = resize_rgb(image, side, side);
        &resized
    };
    ca_core::rgb_to_chw(src)
}

/// Resizes an RGB image to `width x height` with the triangle filter (see
/// the module doc), in memory bounded by the output: the intermediate of
/// the two separable passes is `min(width x source height, source width x
/// height)` pixels. An empty source gives a black image.
pub fn resize_rgb(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (src_w, src_h) = image.dimensions();
    if (src_w, src_h) == (width, height) {
        return image.clone();
    }
    if src_w == 0 || src_h == 0 || width == 0 || height == 0 {
        return RgbImage::new(width, height);
    }
    let src = image.as_raw().as_slice();
    let (w, h) = (src_w as usize, src_h as usize);
    let (nw, nh) = (width as usize, height as usize);
    let out = if nw * h <= w * nh {
        let rows = resample_rows(src, w, h, nw);
        resample_columns(&rows, nw, h, nh)
    } else {
        let columns = resample_columns(src, w, h, nh);
        resample_rows(&columns, w, nh, nw)
    };
    let bytes = out
        .iter()
        .map(|&v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    RgbImage::from_raw(width, height, bytes)
        .expect("resize_rgb: the output holds width x height pixels")
}

/// The span of source pixels that output pixel `out` of `dst` reads along
/// an axis of `src` pixels: its first index, with `weights` refilled with
/// the normalised weights (the triangle filter of support 1 widened by
/// the downscale factor, sampled at pixel centres).
fn triangle_span(src: usize, dst: usize, out: usize, weights: &mut Vec<f32>) -> usize {
    let ratio = src as f32 / dst as f32;
    let scale = ratio.max(1.0);
    let centre = (out as f32 + 0.5) * ratio;
    let left = ((centre - scale).floor() as i64).clamp(0, src as i64 - 1);
    let right = ((centre + scale).ceil() as i64).clamp(left + 1, src as i64);
    let centre = centre - 0.5;
    weights.clear();
    weights.reserve_exact((right - left) as usize);
    weights.extend((left..right).map(|i| (1.0 - ((i as f32 - centre) / scale).abs()).max(0.0)));
    let sum: f32 = weights.iter().sum();
    if sum > 0.0 {
        weights.iter_mut().for_each(|w| *w /= sum);
    }
    left as usize
}

/// Resamples each row of the interleaved RGB `src` (`w x h` pixels) to
/// `nw` pixels; the output is `nw x h`, f32.
fn resample_rows<T: Copy + Into<f32>>(src: &[T], w: usize, h: usize, nw: usize) -> Vec<f32> {
    let mut out = vec![0f32; nw * h * 3];
    let mut weights = Vec::new();
    for ox in 0..nw {
        let left = triangle_span(w, nw, ox, &mut weights);
        for y in 0..h {
            let row = &src[(y * w + left) * 3..];
            let px = &mut out[(y * nw + ox) * 3..(y * nw + ox) * 3 + 3];
            for (&wt, source) in weights.iter().zip(row.chunks_exact(3)) {
                for (p, &v) in px.iter_mut().zip(source) {
                    *p += wt * v.into();
                }
            }
        }
    }
    out
}

/// Resamples each column of the interleaved RGB `src` (`w x h` pixels) to
/// `nh` pixels; the output is `w x nh`, f32.
fn resample_columns<T: Copy + Into<f32>>(src: &[T], w: usize, h: usize, nh: usize) -> Vec<f32> {
    let stride = w * 3;
    let mut out = vec![0f32; nh * stride];
    let mut weights = Vec::new();
    for (oy, dst) in out.chunks_exact_mut(stride).enumerate() {
        let top = triangle_span(h, nh, oy, &mut weights);
        for (k, &wt) in weights.iter().enumerate() {
            let row = &src[(top + k) * stride..(top + k + 1) * stride];
            dst.iter_mut()
                .zip(row)
                .for_each(|(d, &v)| *d += wt * v.into());
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

    /// A deterministic pseudo-random photo.
    fn noise(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v =
                (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729) ^ seed).wrapping_mul(2_654_435_761);
            image::Rgb([(v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8])
        })
    }

    #[test]
    fn resize_matches_the_image_crates_triangle_filter() {
        for (w, h, nw, nh) in [
            (160, 120, 48, 48),
            (37, 23, 16, 16),
            (5, 9, 48, 48),
            (300, 7, 12, 30),
        ] {
            let img = noise(w, h, w ^ h);
            let ours = resize_rgb(&img, nw, nh);
            let theirs =
                image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
            for (a, b) in ours.as_raw().iter().zip(theirs.as_raw()) {
                assert!(a.abs_diff(*b) <= 1, "{w}x{h} -> {nw}x{nh}: {a} against {b}");
            }
        }
    }

    #[test]
    fn resize_of_an_empty_source_is_black() {
        let out = resize_rgb(&RgbImage::new(0, 5), 3, 2);
        assert_eq!(out.dimensions(), (3, 2));
        assert!(out.as_raw().iter().all(|&v| v == 0));
    }

    #[test]
    fn an_extreme_strip_keeps_its_colours() {
        // A 1,000,000 x 1 strip, red on the left half and blue on the right,
        // resized to 4x4: each column is the colour of its quarter.
        let photo = RgbImage::from_fn(1_000_000, 1, |x, _| {
            if x < 500_000 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let out = resize_rgb(&photo, 4, 4);
        for y in 0..4 {
            assert_eq!(out.get_pixel(0, y).0, [255, 0, 0]);
            assert_eq!(out.get_pixel(3, y).0, [0, 0, 255]);
        }
    }

    #[test]
    fn nearest_keeps_blocks() {
        let labels = GrayImage::from_fn(4, 2, |x, _| image::Luma([(x / 2) as u8]));
        assert_eq!(labels_nearest(&labels, 2), vec![0, 1, 0, 1]);
        assert_eq!(labels_nearest(&labels, 4)[..4], [0, 0, 1, 1]);
    }
}
