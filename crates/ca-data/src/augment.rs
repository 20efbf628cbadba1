//! Training-time augmentation of cached square samples: random horizontal
//! flip and random square crop resized back to the training size.

use rand::Rng;

use crate::error::DataError;

/// Which random augmentations [`crate::PetsDataset::batch`] applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Flip each sample left-right with probability 1/2.
    pub flip: bool,
    /// Smallest side of the random square crop, as a fraction of the sample
    /// side, in (0, 1]. `1.0` disables cropping. The crop side is drawn
    /// uniformly in `[min_crop, 1]`, its position uniformly, and it is
    /// resized back (bilinear for images, nearest for labels).
    pub min_crop: f32,
}

impl Default for Augment {
    /// The training default: random flip on, no crop.
    fn default() -> Self {
        Augment {
            flip: true,
            min_crop: 1.0,
        }
    }
}

impl Augment {
    /// No augmentation at all (evaluation).
    pub fn none() -> Self {
        Augment {
            flip: false,
            min_crop: 1.0,
        }
    }

    /// Checks that `min_crop` is in (0, 1].
    pub fn validate(&self) -> Result<(), DataError> {
        if self.min_crop > 0.0 && self.min_crop <= 1.0 {
            Ok(())
        } else {
            Err(DataError::InvalidOption {
                name: "min_crop",
                value: self.min_crop.to_string(),
                reason: "must be in (0, 1]".to_string(),
            })
        }
    }

    /// Draws this augmentation's random choices for one sample. The draws
    /// happen in a fixed order, so a seeded `rng` gives the same result.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Drawn {
        let flip = self.flip && rng.random_bool(0.5);
        let crop = if self.min_crop < 1.0 {
            let side = rng.random_range(self.min_crop..=1.0);
            let x0 = rng.random_range(0.0..=1.0 - side);
            let y0 = rng.random_range(0.0..=1.0 - side);
            Some(CropBox { x0, y0, side })
        } else {
            None
        };
        Drawn { flip, crop }
    }
}

/// The random choices made for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawn {
    /// Whether to flip left-right.
    pub flip: bool,
    /// The crop, if any.
    pub crop: Option<CropBox>,
}

/// A square window in unit coordinates: `(x0, y0)` is its top-left corner and
/// `side` its side, all as fractions of the sample side; it lies inside
/// `[0, 1]^2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Left edge, in [0, 1 - side].
    pub x0: f32,
    /// Top edge, in [0, 1 - side].
    pub y0: f32,
    /// Side, in (0, 1].
    pub side: f32,
}

/// Flips `planes` row-major planes of `height x width` values left-right in
/// place (`[C, H, W]` images with `planes = C`, `[H, W]` labels with
/// `planes = 1`). Applying it twice restores the input.
///
/// # Panics
/// If `data.len() != planes * height * width`.
pub fn flip_horizontal<T>(data: &mut [T], planes: usize, height: usize, width: usize) {
    assert_eq!(
        data.len(),
        planes * height * width,
        "flip_horizontal: buffer size"
    );
    if width == 0 {
        return;
    }
    for row in data.chunks_exact_mut(width) {
        row.reverse();
    }
}

/// Crops `crop` out of a `[channels, size, size]` image and resizes it to
/// `[channels, out, out]` with bilinear interpolation (edges clamped).
///
/// # Panics
/// If `src.len() != channels * size * size`.
pub fn crop_resize_bilinear(
    src: &[f32],
    channels: usize,
    size: usize,
    crop: CropBox,
    out: usize,
) -> Vec<f32> {
    assert_eq!(
        src.len(),
        channels * size * size,
        "crop_resize_bilinear: buffer size"
    );
    let coords: Vec<(usize, usize, f32)> = (0..out)
        .map(|i| {
            let s = (crop.x0 + (i as f32 + 0.5) / out as f32 * crop.side) * size as f32 - 0.5;
            let s = s.clamp(0.0, (size - 1) as f32);
            let lo = s.floor() as usize;
            (lo, (lo + 1).min(size - 1), s - lo as f32)
        })
        .collect();
    let rows: Vec<(usize, usize, f32)> = (0..out)
        .map(|i| {
            let s = (crop.y0 + (i as f32 + 0.5) / out as f32 * crop.side) * size as f32 - 0.5;
            let s = s.clamp(0.0, (size - 1) as f32);
            let lo = s.floor() as usize;
            (lo, (lo + 1).min(size - 1), s - lo as f32)
        })
        .collect();
    let mut dst = Vec::with_capacity(channels * out * out);
    for plane in src.chunks_exact(size * size) {
        for &(y0, y1, fy) in &rows {
            let (r0, r1) = (&plane[y0 * size..][..size], &plane[y1 * size..][..size]);
            for &(x0, x1, fx) in &coords {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                dst.push(top + (bottom - top) * fy);
            }
        }
    }
    dst
}

/// Crops `crop` out of a `[size, size]` label map and resizes it to
/// `[out, out]` by nearest neighbour at pixel centres.
///
/// # Panics
/// If `src.len() != size * size`.
pub fn crop_resize_nearest(src: &[u8], size: usize, crop: CropBox, out: usize) -> Vec<u8> {
    assert_eq!(src.len(), size * size, "crop_resize_nearest: buffer size");
    let index = |i: usize, start: f32| -> usize {
        let s = (start + (i as f32 + 0.5) / out as f32 * crop.side) * size as f32;
        (s.max(0.0) as usize).min(size - 1)
    };
    let xs: Vec<usize> = (0..out).map(|i| index(i, crop.x0)).collect();
    let mut dst = Vec::with_capacity(out * out);
    for y in (0..out).map(|i| index(i, crop.y0)) {
        let row = &src[y * size..][..size];
        dst.extend(xs.iter().map(|&x| row[x]));
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const FULL: CropBox = CropBox {
        x0: 0.0,
        y0: 0.0,
        side: 1.0,
    };

    #[test]
    fn full_crop_is_identity() {
        let img: Vec<f32> = (0..2 * 5 * 5).map(|v| v as f32).collect();
        assert_eq!(crop_resize_bilinear(&img, 2, 5, FULL, 5), img);
        let lab: Vec<u8> = (0..25).map(|v| (v % 3) as u8).collect();
        assert_eq!(crop_resize_nearest(&lab, 5, FULL, 5), lab);
    }

    #[test]
    fn flip_reverses_rows() {
        let mut v = vec![1, 2, 3, 4, 5, 6];
        flip_horizontal(&mut v, 1, 2, 3);
        assert_eq!(v, vec![3, 2, 1, 6, 5, 4]);
    }

    #[test]
    fn draws_are_seeded_and_in_range() {
        let aug = Augment {
            flip: true,
            min_crop: 0.8,
        };
        let mut a = rand::rngs::StdRng::seed_from_u64(3);
        let mut b = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let d = aug.draw(&mut a);
            assert_eq!(d, aug.draw(&mut b));
            let c = d.crop.expect("crop on");
            assert!(c.side >= 0.8 && c.side <= 1.0);
            assert!(c.x0 >= 0.0 && c.x0 + c.side <= 1.0 + 1e-6);
            assert!(c.y0 >= 0.0 && c.y0 + c.side <= 1.0 + 1e-6);
        }
        assert_eq!(
            Augment::none().draw(&mut a),
            Drawn {
                flip: false,
                crop: None
            }
        );
    }

    #[test]
    fn validate_rejects_bad_crop() {
        assert!(Augment::default().validate().is_ok());
        for bad in [0.0, -1.0, 1.5, f32::NAN] {
            let err = Augment {
                flip: true,
                min_crop: bad,
            }
            .validate()
            .unwrap_err();
            assert!(err.to_string().contains("min_crop"), "{err}");
        }
    }
}
