//! Training-time augmentation of cached square samples: random square crop
//! resized back to the training size, horizontal flip, rotation by quarter
//! turns (image and label together) and colour jitter (image only).

use rand::Rng;

use crate::error::DataError;

/// Which random augmentations [`crate::PetsDataset::batch`] applies, in this
/// order: crop, flip, rotation, colour jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Flip each sample left-right with probability 1/2.
    pub flip: bool,
    /// Smallest side of the random square crop, as a fraction of the sample
    /// side, in (0, 1]. `1.0` disables cropping. The crop side is drawn
    /// uniformly in `[min_crop, 1]`, its position uniformly, and it is
    /// resized back (bilinear for images, nearest for labels).
    pub min_crop: f32,
    /// Rotate each sample counter-clockwise by `k` quarter turns, `k`
    /// uniform in `0..4`, image and label together (samples are square).
    pub rotate90: bool,
    /// Colour jitter strength `j`, in [0, 1]; `0` disables it. Three factors
    /// are drawn uniformly in `[1 - j, 1 + j]`: brightness (every value
    /// multiplied), contrast (values scaled around the mean of the gray
    /// image) and saturation (each pixel blended with its gray value),
    /// applied in that order, each result clamped to [0, 1]. Only the image
    /// changes, never the label.
    pub jitter: f32,
}

impl Default for Augment {
    /// The training default: random flip on, no crop, no rotation, no jitter.
    fn default() -> Self {
        Augment {
            flip: true,
            min_crop: 1.0,
            rotate90: false,
            jitter: 0.0,
        }
    }
}

impl Augment {
    /// No augmentation at all (evaluation).
    pub fn none() -> Self {
        Augment {
            flip: false,
            min_crop: 1.0,
            rotate90: false,
            jitter: 0.0,
        }
    }

    /// Checks that `min_crop` is in (0, 1] and `jitter` in [0, 1]; the error
    /// names the field and its value.
    pub fn validate(&self) -> Result<(), DataError> {
        if !(self.min_crop > 0.0 && self.min_crop <= 1.0) {
            return Err(DataError::InvalidOption(ca_core::InvalidValue {
                name: "min_crop",
                value: self.min_crop.to_string(),
                reason: "must be in (0, 1]".to_string(),
            }));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(DataError::InvalidOption(ca_core::InvalidValue {
                name: "jitter",
                value: self.jitter.to_string(),
                reason: "must be in [0, 1]".to_string(),
            }));
        }
        Ok(())
    }

    /// Draws this augmentation's random choices for one sample. The draws
    /// happen in a fixed order (flip, crop, then rotation and jitter, each
    /// only when enabled), so a seeded `rng` gives the same result, and a
    /// configuration without rotation and jitter draws exactly what it drew
    /// before those options existed.
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
        let quarter_turns = if self.rotate90 {
            rng.random_range(0..4u8)
        } else {
            0
        };
        let jitter = if self.jitter > 0.0 {
            let j = self.jitter;
            let mut factor = || rng.random_range(1.0 - j..=1.0 + j);
            Some(JitterFactors {
                brightness: factor(),
                contrast: factor(),
                saturation: factor(),
            })
        } else {
            None
        };
        Drawn {
            flip,
            crop,
            quarter_turns,
            jitter,
        }
    }
}

/// The random choices made for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawn {
    /// Whether to flip left-right.
    pub flip: bool,
    /// The crop, if any.
    pub crop: Option<CropBox>,
    /// Counter-clockwise quarter turns, in `0..4` (0 when rotation is off).
    pub quarter_turns: u8,
    /// The colour jitter factors, if jitter is on.
    pub jitter: Option<JitterFactors>,
}

impl Drawn {
    /// Applies these choices to one sample: `image` `[3, S, S]` f32 in
    /// [0, 1] with `S = image_size`, `label` `[L, L]` class ids with
    /// `L = label_size`. Crop (resized back to `S` and `L`), flip,
    /// rotation, then jitter (image only). Returns the new image and label.
    ///
    /// # Panics
    /// If the buffer lengths do not match the sizes.
    pub fn apply(
        &self,
        image: &[f32],
        image_size: usize,
        label: &[u8],
        label_size: usize,
    ) -> (Vec<f32>, Vec<u8>) {
        let (s, l) = (image_size, label_size);
        assert_eq!(image.len(), 3 * s * s, "Drawn::apply: image buffer size");
        assert_eq!(label.len(), l * l, "Drawn::apply: label buffer size");
        let (mut image, mut label) = match self.crop {
            Some(crop) => (
                crop_resize_bilinear(image, 3, s, crop, s),
                crop_resize_nearest(label, l, crop, l),
            ),
            None => (image.to_vec(), label.to_vec()),
        };
        if self.flip {
            flip_horizontal(&mut image, 3, s, s);
            flip_horizontal(&mut label, 1, l, l);
        }
        if !self.quarter_turns.is_multiple_of(4) {
            image = rotate_quarter_turns(&image, 3, s, self.quarter_turns);
            label = rotate_quarter_turns(&label, 1, l, self.quarter_turns);
        }
        if let Some(factors) = self.jitter {
            color_jitter(&mut image, s, factors);
        }
        (image, label)
    }
}

/// Colour jitter factors of one sample, each in `[1 - jitter, 1 + jitter]`;
/// see [`Augment::jitter`] and [`color_jitter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterFactors {
    /// Every value is multiplied by this.
    pub brightness: f32,
    /// Values are scaled by this around the mean of the gray image.
    pub contrast: f32,
    /// Each pixel moves away from (above 1) or towards (below 1) its gray
    /// value by this factor.
    pub saturation: f32,
}

/// Rotates `planes` square row-major planes of `size x size` values
/// counter-clockwise by `k` quarter turns (`k` taken modulo 4): with one turn
/// the value at column `x`, row `y` moves to column `y`, row `size - 1 - x`.
/// `[C, S, S]` images use `planes = C`, `[L, L]` labels `planes = 1`.
///
/// # Panics
/// If `data.len() != planes * size * size`.
pub fn rotate_quarter_turns<T: Copy>(data: &[T], planes: usize, size: usize, k: u8) -> Vec<T> {
    assert_eq!(
        data.len(),
        planes * size * size,
        "rotate_quarter_turns: buffer size"
    );
    let n = size;
    let mut out = Vec::with_capacity(data.len());
    for plane in data.chunks_exact(n * n) {
        for row in 0..n {
            for col in 0..n {
                // The source of output (col, row) for k counter-clockwise turns.
                let (x, y) = match k % 4 {
                    0 => (col, row),
                    1 => (n - 1 - row, col),
                    2 => (n - 1 - col, n - 1 - row),
                    _ => (row, n - 1 - col),
                };
                out.push(plane[y * n + x]);
            }
        }
    }
    out
}

/// The gray value of an RGB pixel (ITU-R BT.601 luma weights).
fn gray(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Applies `factors` to a `[3, size, size]` RGB image in [0, 1] in place:
/// brightness, then contrast around the mean gray value, then saturation
/// against each pixel's gray value, clamping to [0, 1] after each step.
///
/// # Panics
/// If `image.len() != 3 * size * size`.
pub fn color_jitter(image: &mut [f32], size: usize, factors: JitterFactors) {
    let n = size * size;
    assert_eq!(image.len(), 3 * n, "color_jitter: buffer size");
    if n == 0 {
        return;
    }
    for v in image.iter_mut() {
        *v = (*v * factors.brightness).clamp(0.0, 1.0);
    }
    let (r, rest) = image.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    let mean = (0..n).map(|i| gray(r[i], g[i], b[i])).sum::<f32>() / n as f32;
    for v in r.iter_mut().chain(g.iter_mut()).chain(b.iter_mut()) {
        *v = (mean + (*v - mean) * factors.contrast).clamp(0.0, 1.0);
    }
    for i in 0..n {
        let y = gray(r[i], g[i], b[i]);
        for c in [&mut r[i], &mut g[i], &mut b[i]] {
            *c = (y + (*c - y) * factors.saturation).clamp(0.0, 1.0);
        }
    }
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
            min_crop: 0.8,
            ..Augment::default()
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
                crop: None,
                quarter_turns: 0,
                jitter: None,
            }
        );
    }

    #[test]
    fn validate_rejects_bad_crop() {
        assert!(Augment::default().validate().is_ok());
        for bad in [0.0, -1.0, 1.5, f32::NAN] {
            let err = Augment {
                min_crop: bad,
                ..Augment::default()
            }
            .validate()
            .unwrap_err();
            assert!(err.to_string().contains("min_crop"), "{err}");
        }
    }

    #[test]
    fn validate_rejects_bad_jitter() {
        for good in [0.0, 0.4, 1.0] {
            let aug = Augment {
                jitter: good,
                ..Augment::default()
            };
            assert!(aug.validate().is_ok(), "{good}");
        }
        for bad in [1.5, -0.1, f32::NAN] {
            let err = Augment {
                jitter: bad,
                ..Augment::default()
            }
            .validate()
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("jitter = {bad}")), "{msg}");
        }
    }

    #[test]
    fn four_quarter_turns_are_the_identity() {
        let img: Vec<f32> = (0..3 * 5 * 5).map(|v| v as f32).collect();
        let mut turned = img.clone();
        for k in 1..4 {
            turned = rotate_quarter_turns(&turned, 3, 5, 1);
            assert_ne!(turned, img, "{k} turns");
            assert_eq!(turned, rotate_quarter_turns(&img, 3, 5, k), "{k} turns");
        }
        assert_eq!(rotate_quarter_turns(&turned, 3, 5, 1), img);
        assert_eq!(rotate_quarter_turns(&img, 3, 5, 4), img);
    }

    #[test]
    fn rotation_moves_a_pixel_on_image_and_label_alike() {
        // One marked pixel at column 1, row 0 of a 4x4 sample (all three
        // image planes and the label): one counter-clockwise turn moves it to
        // column 0, row 2; two to column 2, row 3; three to column 3, row 1.
        let n = 4;
        let mut image = vec![0.0f32; 3 * n * n];
        for c in 0..3 {
            image[c * n * n + 1] = 1.0;
        }
        let mut label = vec![0u8; n * n];
        label[1] = 1;
        for (k, (col, row)) in [(1u8, (0, 2)), (2, (2, 3)), (3, (3, 1))] {
            let drawn = Drawn {
                flip: false,
                crop: None,
                quarter_turns: k,
                jitter: None,
            };
            let (img, lab) = drawn.apply(&image, n, &label, n);
            let at = row * n + col;
            assert_eq!(lab.iter().position(|&v| v == 1), Some(at), "{k} turns");
            for c in 0..3 {
                let plane = &img[c * n * n..][..n * n];
                assert_eq!(plane.iter().position(|&v| v == 1.0), Some(at), "{k} turns");
            }
        }
    }

    #[test]
    fn rotation_draws_every_quarter_turn() {
        let aug = Augment {
            rotate90: true,
            ..Augment::none()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut seen = [0usize; 4];
        for _ in 0..200 {
            seen[usize::from(aug.draw(&mut rng).quarter_turns)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 20), "{seen:?}");
    }

    #[test]
    fn jitter_stays_in_range_and_leaves_labels_alone() {
        let n = 6;
        let image: Vec<f32> = (0..3 * n * n)
            .map(|v| (v * 37 % 101) as f32 / 100.0)
            .collect();
        let label: Vec<u8> = (0..n * n).map(|v| (v % 3) as u8).collect();
        let aug = Augment {
            jitter: 1.0,
            ..Augment::none()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut changed = 0;
        for _ in 0..50 {
            let drawn = aug.draw(&mut rng);
            let f = drawn.jitter.expect("jitter on");
            for v in [f.brightness, f.contrast, f.saturation] {
                assert!((0.0..=2.0).contains(&v), "{v}");
            }
            let (img, lab) = drawn.apply(&image, n, &label, n);
            assert_eq!(lab, label);
            assert!(img.iter().all(|v| (0.0..=1.0).contains(v)), "{img:?}");
            changed += usize::from(img != image);
        }
        assert!(changed > 40, "{changed} of 50 jittered images changed");
    }

    #[test]
    fn unit_jitter_factors_change_nothing() {
        let image: Vec<f32> = (0..3 * 9).map(|v| v as f32 / 27.0).collect();
        let mut same = image.clone();
        color_jitter(
            &mut same,
            3,
            JitterFactors {
                brightness: 1.0,
                contrast: 1.0,
                saturation: 1.0,
            },
        );
        for (a, b) in same.iter().zip(&image) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // Zero saturation makes every pixel gray: its three channels agree.
        let mut gray_image = image.clone();
        color_jitter(
            &mut gray_image,
            3,
            JitterFactors {
                brightness: 1.0,
                contrast: 1.0,
                saturation: 0.0,
            },
        );
        for i in 0..9 {
            assert!((gray_image[i] - gray_image[9 + i]).abs() < 1e-6);
            assert!((gray_image[i] - gray_image[18 + i]).abs() < 1e-6);
        }
    }
}
