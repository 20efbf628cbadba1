//! Pictures of a colony: class maps in a fixed palette, overlays on the
//! photo, the hidden state projected to RGB, heat maps, and animated GIFs of
//! an evolution (paper Figs 2, 3 and 9).

use ca_core::ErrorShapes;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage, RgbaImage};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Result, VizError};

/// Colours of the classes, by class id: background dark blue, object
/// orange, boundary light yellow.
pub const PALETTE: [[u8; 3]; 3] = [[30, 40, 90], [240, 130, 30], [250, 240, 160]];

/// Colour of a class id outside the palette (never produced by a
/// three-class model).
const UNKNOWN_CLASS: [u8; 3] = [255, 0, 255];

/// Seed of the random matrix of [`StateProjection`]: fixed, so every picture
/// of a model with the same state size uses the same projection.
pub const PROJECTION_SEED: u64 = 0x5EED_C010;

/// The palette colour of class `class`.
pub fn class_colour(class: u32) -> [u8; 3] {
    PALETTE
        .get(class as usize)
        .copied()
        .unwrap_or(UNKNOWN_CLASS)
}

/// A class map (`width * height` class ids, row-major) as a palette image.
pub fn class_image(classes: &[u32], width: usize, height: usize) -> RgbImage {
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        Rgb(class_colour(classes[y as usize * width + x as usize]))
    })
}

/// Nearest-neighbour resampling of a `width x height` map (row-major) to
/// `out_w x out_h`, sampling at pixel centres.
pub fn resample_nearest<T: Copy>(
    values: &[T],
    (width, height): (usize, usize),
    (out_w, out_h): (usize, usize),
) -> Vec<T> {
    let index = |i: usize, src: usize, dst: usize| {
        (((i as f64 + 0.5) * src as f64 / dst as f64) as usize).min(src - 1)
    };
    let xs: Vec<usize> = (0..out_w).map(|x| index(x, width, out_w)).collect();
    let mut out = Vec::with_capacity(out_w * out_h);
    for y in 0..out_h {
        let row = index(y, height, out_h) * width;
        out.extend(xs.iter().map(|&x| values[row + x]));
    }
    out
}

/// The photo with the class map (of any grid size, upsampled by nearest
/// neighbour to the photo's size) blended on top: `(1 - alpha) * photo +
/// alpha * palette colour`.
pub fn overlay(photo: &RgbImage, classes: &[u32], grid: (usize, usize), alpha: f32) -> RgbImage {
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    let up = resample_nearest(classes, grid, (w, h));
    let mut out = photo.clone();
    for (i, p) in out.pixels_mut().enumerate() {
        let c = class_colour(up[i]);
        for (v, &k) in p.0.iter_mut().zip(&c) {
            let mixed = (1.0 - alpha) * f32::from(*v) + alpha * f32::from(k);
            *v = mixed.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// An RGB image as `[3, H, W]` f32 values in [0, 1] at its own size (the
/// `--native` path; [`ca_data::resize::image_to_chw`] resizes to a square).
pub use ca_core::rgb_to_chw;

/// `[3, H, W]` values in [0, 1] as an RGB image.
pub fn chw_to_rgb(chw: &[f32], width: usize, height: usize) -> RgbImage {
    let plane = width * height;
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let i = y as usize * width + x as usize;
        Rgb(std::array::from_fn(|c| unit_to_byte(chw[c * plane + i])))
    })
}

fn unit_to_byte(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// The hidden state `[S, H, W]` projected to RGB by a fixed linear map.
///
/// The projection is a `3 x S` matrix of independent `N(0, 1/S)` entries
/// drawn from a generator seeded with [`PROJECTION_SEED`]; a cell's colour
/// channel is `clamp(0.5 + v / 4, 0, 1)` with `v` the projected value. For a
/// normalized state (unit variance per channel) `v` is roughly `N(0, 1)`,
/// so two standard deviations span the full range. The map is the same for
/// every frame and every image, so colours are comparable along an
/// evolution and across images (unlike a per-frame principal-component
/// projection, which would flicker); an unnormalized state that grows
/// saturates to black and white.
#[derive(Debug, Clone, PartialEq)]
pub struct StateProjection {
    matrix: Vec<[f32; 3]>,
}

impl StateProjection {
    /// The projection for states of `channels` channels.
    pub fn new(channels: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(PROJECTION_SEED);
        let scale = 1.0 / (channels.max(1) as f32).sqrt();
        let matrix = (0..channels)
            .map(|_| {
                std::array::from_fn(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    z * scale
                })
            })
            .collect();
        StateProjection { matrix }
    }

    /// The number of state channels this projection takes.
    pub fn channels(&self) -> usize {
        self.matrix.len()
    }

    /// Projects `state` (`[S, H, W]`, row-major, `S = channels()`) to an
    /// RGB image of `width x height`.
    pub fn project(&self, state: &[f32], width: usize, height: usize) -> RgbImage {
        let plane = width * height;
        let mut acc = vec![[0f32; 3]; plane];
        for (c, row) in self.matrix.iter().enumerate() {
            let channel = &state[c * plane..(c + 1) * plane];
            for (a, &v) in acc.iter_mut().zip(channel) {
                for k in 0..3 {
                    a[k] += row[k] * v;
                }
            }
        }
        RgbImage::from_fn(width as u32, height as u32, |x, y| {
            let a = acc[y as usize * width + x as usize];
            Rgb(std::array::from_fn(|k| unit_to_byte(0.5 + a[k] / 4.0)))
        })
    }
}

/// A colour for `t` in [0, 1] on a black-red-yellow-white ramp (heat maps).
pub fn heat_colour(t: f32) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let r = (3.0 * t).min(1.0);
    let g = (3.0 * t - 1.0).clamp(0.0, 1.0);
    let b = (3.0 * t - 2.0).clamp(0.0, 1.0);
    [unit_to_byte(r), unit_to_byte(g), unit_to_byte(b)]
}

/// A `width x height` map of values as a heat map, `max` (or more) white.
pub fn heat_image(values: &[f32], width: usize, height: usize, max: f32) -> RgbImage {
    let max = if max > 0.0 { max } else { 1.0 };
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        Rgb(heat_colour(values[y as usize * width + x as usize] / max))
    })
}

/// The spread of stochastic runs of one `size x size` image as one picture,
/// enlarged `scale` times: the image (`[3, size, size]` in [0, 1]), the
/// majority vote (class ids) and the per-pixel variance as a heat map
/// (black 0, white at `vmax`), side by side.
pub fn spread_panel(
    image: &[f32],
    majority: &[u32],
    variance: &[f32],
    size: usize,
    vmax: f32,
    scale: u32,
) -> RgbImage {
    let panels = [
        chw_to_rgb(image, size, size),
        class_image(majority, size, size),
        heat_image(variance, size, size, vmax),
    ]
    .map(|p| upscale(&p, scale));
    hstack(&panels)
}

/// The image enlarged `factor` times by pixel repetition.
pub fn upscale(image: &RgbImage, factor: u32) -> RgbImage {
    let factor = factor.max(1);
    RgbImage::from_fn(image.width() * factor, image.height() * factor, |x, y| {
        *image.get_pixel(x / factor, y / factor)
    })
}

/// Images side by side (left to right), top-aligned, on black.
pub fn hstack(images: &[RgbImage]) -> RgbImage {
    let w = images.iter().map(RgbImage::width).sum();
    let h = images.iter().map(RgbImage::height).max().unwrap_or(0);
    let mut out = RgbImage::new(w, h);
    let mut x = 0;
    for im in images {
        image::imageops::replace(&mut out, im, i64::from(x), 0);
        x += im.width();
    }
    out
}

/// Images one above the other (top to bottom), left-aligned, on black.
pub fn vstack(images: &[RgbImage]) -> RgbImage {
    let w = images.iter().map(RgbImage::width).max().unwrap_or(0);
    let h = images.iter().map(RgbImage::height).sum();
    let mut out = RgbImage::new(w, h);
    let mut y = 0;
    for im in images {
        image::imageops::replace(&mut out, im, 0, i64::from(y));
        y += im.height();
    }
    out
}

/// One frame of an evolution GIF, as in the paper's Figs 2 and 3: the
/// prediction (palette) on top, the state projected to RGB below, each
/// `width x height` cells enlarged `scale` times. `state` is `[S, H, W]`.
pub fn evolution_frame(
    classes: &[u32],
    state: &[f32],
    (width, height): (usize, usize),
    projection: &StateProjection,
    scale: u32,
) -> RgbImage {
    vstack(&[
        upscale(&class_image(classes, width, height), scale),
        upscale(&projection.project(state, width, height), scale),
    ])
}

/// Writes `image` to `path` as a PNG (whatever the extension), with the
/// strongest compression: the pictures are small and go into the docs.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let image_err = |source| VizError::Image {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|e| VizError::io(path, e))?;
    let encoder = PngEncoder::new_with_quality(
        BufWriter::new(file),
        CompressionType::Best,
        FilterType::Adaptive,
    );
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(image_err)
}

/// Writes `frames` (all the same size) as an endlessly looping animated GIF,
/// `delay_ms` milliseconds per frame, the last frame held four times as long.
pub fn write_gif(frames: &[RgbImage], delay_ms: u32, path: &Path) -> Result<()> {
    if frames.is_empty() {
        return Err(VizError::invalid(
            "GIF frames",
            0,
            format!("{} needs at least one frame", path.display()),
        ));
    }
    let file = File::create(path).map_err(|e| VizError::io(path, e))?;
    let image_err = |source| VizError::Image {
        path: path.to_path_buf(),
        source,
    };
    // Speed 10 of 30: quantizing the state rows is the slow part.
    let mut encoder = GifEncoder::new_with_speed(BufWriter::new(file), 10);
    encoder.set_repeat(Repeat::Infinite).map_err(image_err)?;
    let last = frames.len() - 1;
    for (i, f) in frames.iter().enumerate() {
        let delay = if i == last { 4 * delay_ms } else { delay_ms };
        let rgba: RgbaImage = image::DynamicImage::ImageRgb8(f.clone()).into_rgba8();
        let frame = Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(delay, 1));
        encoder.encode_frame(frame).map_err(image_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_resampling_keeps_blocks() {
        let v = [0u32, 1, 2, 3];
        assert_eq!(
            resample_nearest(&v, (2, 2), (4, 2)),
            vec![0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(resample_nearest(&v, (2, 2), (1, 1)), vec![3]);
    }

    #[test]
    fn overlay_blends_half_way() {
        let photo = RgbImage::from_pixel(4, 2, Rgb([0, 0, 0]));
        let out = overlay(&photo, &[1, 0], (2, 1), 0.5);
        assert_eq!(out.dimensions(), (4, 2));
        assert_eq!(out.get_pixel(0, 0).0, [120, 65, 15]);
        assert_eq!(out.get_pixel(3, 1).0, [15, 20, 45]);
    }

    #[test]
    fn projection_is_fixed_and_centred() {
        let p = StateProjection::new(8);
        assert_eq!(p, StateProjection::new(8));
        let img = p.project(&[0.0; 8 * 6], 3, 2);
        assert!(img.pixels().all(|px| px.0 == [128, 128, 128]));
    }

    #[test]
    fn chw_round_trip() {
        let img = RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8 * 80, y as u8 * 200, 7]));
        assert_eq!(chw_to_rgb(&rgb_to_chw(&img), 3, 2), img);
    }

    #[test]
    fn frame_has_two_rows() {
        let p = StateProjection::new(2);
        let f = evolution_frame(&[0, 1, 2, 0, 1, 2], &[0.5; 12], (3, 2), &p, 4);
        assert_eq!(f.dimensions(), (12, 16));
        assert_eq!(f.get_pixel(4, 0).0, PALETTE[1]);
    }
}
