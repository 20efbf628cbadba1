//! [`ImageNorm`]: the standardisation of the RGB image before a model's
//! environment reads it, `gain * (x - mean) / std` per channel.
//!
//! A raw image in `[0, 1]` (standard deviation about 0.25) is a small share
//! of the perception's input beside a state held at unit variance by the
//! norm; standardising it, and scaling it by a gain, gives the image a
//! larger share of the input and of the gradient (issue 23,
//! `docs/RESULTS.md`). The statistics are the training set's, recorded in
//! the model's [`crate::CellConfig`] so that every user of the file applies
//! the same transform; a config without one reads the image as it is.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Per-channel standardisation of RGB images: `gain * (x - mean[c]) /
/// std[c]` for channel `c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageNorm {
    /// Mean of each channel (R, G, B) over the training images, in pixel
    /// units (`[0, 1]`).
    pub mean: [f32; 3],
    /// Standard deviation of each channel over the training images, in
    /// pixel units; every entry positive.
    pub std: [f32; 3],
    /// Factor applied after standardising (1 = unit variance).
    pub gain: f32,
}

impl ImageNorm {
    /// A standardisation from per-channel statistics and a gain, checked.
    pub fn new(mean: [f32; 3], std: [f32; 3], gain: f32) -> Result<Self> {
        let norm = ImageNorm { mean, std, gain };
        norm.validate()?;
        Ok(norm)
    }

    /// Checks that the means are finite, the deviations positive and finite
    /// and the gain positive and finite; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: String, reason: &str| {
            Err(CoreError::InvalidConfig(crate::InvalidValue::new(
                field, value, reason,
            )))
        };
        if self.mean.iter().any(|m| !m.is_finite()) {
            return bad(
                "image_norm.mean",
                format!("{:?}", self.mean),
                "must be finite",
            );
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad(
                "image_norm.std",
                format!("{:?}", self.std),
                "must be positive and finite",
            );
        }
        if !(self.gain.is_finite() && self.gain > 0.0) {
            return bad(
                "image_norm.gain",
                self.gain.to_string(),
                "must be positive and finite",
            );
        }
        Ok(())
    }

    /// The standardised images.
    ///
    /// # Shapes
    ///
    /// - images `[B, 3, H, W]` f32 (pixel values in `[0, 1]`) -> the same
    ///   shape, channel `c` mapped to `gain * (x - mean[c]) / std[c]`.
    pub fn apply(&self, images: &Tensor) -> Result<Tensor> {
        let dims = images.dims();
        if dims.len() != 4 || dims[1] != 3 {
            return Err(CoreError::Shape(crate::ShapeError {
                what: "images to standardise",
                expected: "[B, 3, H, W]".into(),
                got: dims.to_vec(),
            }));
        }
        let device = images.device();
        let scale: Vec<f32> = self.std.iter().map(|s| self.gain / s).collect();
        let mean =
            Tensor::from_slice(&self.mean, (1, 3, 1, 1), device)?.to_dtype(images.dtype())?;
        let scale = Tensor::from_slice(&scale, (1, 3, 1, 1), device)?.to_dtype(images.dtype())?;
        Ok(images.broadcast_sub(&mean)?.broadcast_mul(&scale)?)
    }
}

/// The images a model's environment reads: standardised by `norm` when
/// there is one, as they are otherwise.
pub fn standardise(norm: Option<&ImageNorm>, images: &Tensor) -> Result<Tensor> {
    match norm {
        Some(n) => n.apply(images),
        None => Ok(images.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn maps_each_channel_by_its_own_statistics() {
        let norm = ImageNorm::new([0.5, 0.25, 0.0], [0.25, 0.5, 1.0], 2.0).unwrap();
        let images = Tensor::new(&[0.75f32, 0.25, 0.5], &Device::Cpu)
            .unwrap()
            .reshape((1, 3, 1, 1))
            .unwrap();
        let out = norm.apply(&images).unwrap().flatten_all().unwrap();
        let got = out.to_vec1::<f32>().unwrap();
        // 2 * (0.75 - 0.5) / 0.25, 2 * (0.25 - 0.25) / 0.5, 2 * 0.5 / 1.
        assert_eq!(got, vec![2.0, 0.0, 1.0]);
    }

    #[test]
    fn absent_is_identity() {
        let images = Tensor::rand(0f32, 1f32, (2, 3, 4, 5), &Device::Cpu).unwrap();
        let out = standardise(None, &images).unwrap();
        let diff = (out - &images).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn bad_statistics_name_the_field() {
        let zero_std = ImageNorm::new([0.5; 3], [0.2, 0.0, 0.2], 1.0).unwrap_err();
        assert!(
            zero_std.to_string().contains("image_norm.std"),
            "{zero_std}"
        );
        let nan_mean = ImageNorm::new([f32::NAN, 0.5, 0.5], [0.2; 3], 1.0).unwrap_err();
        assert!(
            nan_mean.to_string().contains("image_norm.mean"),
            "{nan_mean}"
        );
        let gain = ImageNorm::new([0.5; 3], [0.2; 3], -3.0).unwrap_err();
        assert!(gain.to_string().contains("image_norm.gain"), "{gain}");
    }

    #[test]
    fn wrong_channel_count_is_a_shape_error() {
        let norm = ImageNorm::new([0.5; 3], [0.2; 3], 1.0).unwrap();
        let four = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            norm.apply(&four),
            Err(CoreError::Shape(crate::ShapeError { .. }))
        ));
    }
}
