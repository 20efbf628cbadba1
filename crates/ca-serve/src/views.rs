//! What a page sees of a colony: four square views side by side in one
//! PNG (the photo with the class map blended over it, the class map, the
//! state projected to RGB, the uncertainty heat map), each the colony's
//! grid enlarged by nearest neighbour, and the binary WebSocket message
//! that carries them with a JSON header.

use candle_core::Tensor;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use ca_viz::render;

use crate::error::ApiError;

/// The views of a frame, in the order they appear in the strip.
pub const VIEWS: [&str; 4] = ["overlay", "classes", "state", "uncertainty"];

/// Weight of the class colours over the photo in the overlay view.
pub const OVERLAY_ALPHA: f32 = 0.5;

/// Softmax variance (summed over classes) shown white in the uncertainty
/// view: half of the largest possible value for two classes.
pub const UNCERTAINTY_WHITE: f32 = 0.25;

/// Colour of the uncertainty view while it is off.
const OFF_VIEW: [u8; 3] = [40, 40, 40];

/// The photo as the overlay's background: resized (stretched) to the
/// square `view x view`, as the colony sees it resized to its grid.
/// The resize's memory is bounded by the view ([`ca_data::resize::resize_rgb`]),
/// whatever the photo's shape.
pub fn photo_view(photo: &RgbImage, view: u32) -> RgbImage {
    ca_data::resize::resize_rgb(photo, view, view)
}

fn enlarge(image: &RgbImage, view: u32) -> RgbImage {
    imageops::resize(image, view, view, FilterType::Nearest)
}

/// The strip of the four views, each `view x view`: `photo` (already
/// `view x view`, from [`photo_view`]) with `classes` blended over it,
/// `classes` (a `grid x grid` class map) in the palette, `state` (the
/// projected state, any size) and `variance` (per pixel of the grid, or
/// `None` while the view is off) as a heat map.
pub fn strip(
    photo: &RgbImage,
    classes: &[u32],
    grid: usize,
    state: &RgbImage,
    variance: Option<&[f32]>,
    view: u32,
) -> RgbImage {
    let overlay = render::overlay(photo, classes, (grid, grid), OVERLAY_ALPHA);
    let class_map = enlarge(&render::class_image(classes, grid, grid), view);
    let uncertainty = match variance {
        Some(v) => enlarge(&render::heat_image(v, grid, grid, UNCERTAINTY_WHITE), view),
        None => RgbImage::from_pixel(view, view, Rgb(OFF_VIEW)),
    };
    render::hstack(&[overlay, class_map, enlarge(state, view), uncertainty])
}

/// The per-pixel variance of the softmax probabilities over the runs of
/// `logits` `[R, C, H, W]` (R stochastic runs of one image), summed over
/// the classes, `H * W` values row-major: 0 where all runs agree.
pub fn prob_variance(logits: &Tensor) -> candle_core::Result<Vec<f32>> {
    let probs = candle_nn::ops::softmax(logits, 1)?;
    let mean = probs.mean_keepdim(0)?;
    probs
        .broadcast_sub(&mean)?
        .sqr()?
        .mean(0)?
        .sum(0)?
        .flatten_all()?
        .to_vec1()
}

/// Pixels of each class id `0..classes` in `map`.
pub fn class_counts(map: impl IntoIterator<Item = usize>, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for c in map {
        if let Some(n) = counts.get_mut(c) {
            *n += 1;
        }
    }
    counts
}

/// `image` as a PNG, fast compression (frames are encoded many times a
/// second).
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, ApiError> {
    use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
    use image::ImageEncoder;
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, PngFilter::Sub)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ApiError::internal(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

/// A class map (one class id a cell, row-major, `width x height`) as an
/// 8-bit palette PNG in the render palette: one byte a cell before
/// compression, where an RGB image took three.
pub fn encode_class_png(classes: &[u8], width: usize, height: usize) -> Result<Vec<u8>, ApiError> {
    let failed = |e: png::EncodingError| ApiError::internal(format!("PNG encoding failed: {e}"));
    let size = |n: usize| u32::try_from(n).map_err(|_| ApiError::internal("class map too large"));
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size(width)?, size(height)?);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(render::PALETTE.concat());
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(classes).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// A frame message: the header's length as 4 bytes big-endian, the header
/// (JSON, UTF-8), then the PNG of the strip.
pub fn frame_message(header: &serde_json::Value, png: &[u8]) -> Vec<u8> {
    let header = header.to_string();
    let len = u32::try_from(header.len()).expect("a frame header is a few hundred bytes");
    let mut out = Vec::with_capacity(4 + header.len() + png.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(png);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_strip_has_four_views_and_the_palette() {
        let photo = photo_view(&RgbImage::from_pixel(10, 7, Rgb([0, 0, 0])), 8);
        let classes = [0, 1, 2, 1];
        let state = RgbImage::from_pixel(2, 2, Rgb([9, 9, 9]));
        let s = strip(&photo, &classes, 2, &state, Some(&[0.0, 0.0, 0.0, 1.0]), 8);
        assert_eq!(s.dimensions(), (32, 8));
        assert_eq!(s.get_pixel(8, 0).0, render::PALETTE[0]);
        assert_eq!(s.get_pixel(15, 0).0, render::PALETTE[1]);
        assert_eq!(s.get_pixel(16, 0).0, [9, 9, 9]);
        assert_eq!(s.get_pixel(24, 0).0, [0, 0, 0], "no variance is black");
        assert_eq!(s.get_pixel(31, 7).0, [255, 255, 255]);
        let off = strip(&photo, &classes, 2, &state, None, 8);
        assert_eq!(off.get_pixel(31, 7).0, OFF_VIEW);
    }

    #[test]
    fn variance_is_zero_where_runs_agree() {
        // Two runs, two classes, two pixels: they agree on pixel 0 only.
        let logits = Tensor::new(
            &[[[[5f32, 5.]], [[0., 0.]]], [[[5., 0.]], [[0., 5.]]]],
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(logits.dims(), [2, 2, 1, 2]);
        let v = prob_variance(&logits).unwrap();
        assert!(v[0].abs() < 1e-6, "{v:?}");
        assert!(v[1] > 0.4, "{v:?}");
    }

    #[test]
    fn a_frame_message_starts_with_its_header() {
        let msg = frame_message(&serde_json::json!({"step": 3}), b"PNG");
        assert_eq!(&msg[..4], &[0, 0, 0, 10]);
        assert_eq!(&msg[4..14], br#"{"step":3}"#);
        assert_eq!(&msg[14..], b"PNG");
        assert_eq!(class_counts([0, 2, 2, 7], 3), vec![1, 0, 2]);
    }
}
