//! The training losses: the per-pixel cross-entropy of the paper (section
//! 3.1), optionally class-weighted, plus an optional soft Dice term.

use ca_core::ErrorShapes;
use std::sync::Arc;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SchedError};
use crate::pixel_ce::PixelCrossEntropy;

/// The training loss's settings (flat in a stored [`crate::TrainConfig`]).
/// `Default` is the paper's plain cross-entropy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
// Fields missing from an older stored config take the defaults.
#[serde(default)]
pub struct LossConfig {
    /// Weights of the classes `[background, object, boundary]` in the
    /// cross-entropy (a weighted mean over the pixels); `None`: all 1.
    pub class_weights: Option<Vec<f64>>,
    /// Weight of the soft Dice term (`1 - Dice` of the softmax against the
    /// one-hot labels, averaged over the classes) added to the
    /// cross-entropy; 0 leaves it out.
    pub dice_weight: f64,
}

impl LossConfig {
    /// Checks both fields; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if let Some(w) = &self.class_weights {
            if w.is_empty()
                || w.iter().any(|x| !(x.is_finite() && *x >= 0.0))
                || w.iter().all(|&x| x == 0.0)
            {
                return Err(SchedError::invalid(
                    "class_weights",
                    format!("{w:?}"),
                    "must be finite, non-negative and not all zero",
                ));
            }
        }
        if !(self.dice_weight.is_finite() && self.dice_weight >= 0.0) {
            return Err(SchedError::invalid(
                "dice_weight",
                self.dice_weight,
                "must be finite and non-negative",
            ));
        }
        Ok(())
    }
}

/// Smoothing of the soft Dice ratio: `(2 |p y| + 1) / (|p| + |y| + 1)`,
/// so that a class absent from both prediction and labels scores 1.
const DICE_SMOOTH: f64 = 1.0;

/// Mean per-pixel cross-entropy of each sample: `logits` `[B, C, H, W]`,
/// `labels` `[B, H, W]` u32 class ids; returns `[B]`.
pub fn per_sample_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let index = labels.to_dtype(DType::U32)?.unsqueeze(1)?.contiguous()?;
    let picked = log_p.gather(&index, 1)?; // [B, 1, H, W]
    Ok(picked.flatten_from(1)?.mean(1)?.neg()?)
}

/// The labels of a batch prepared once for the loss of every CA step of an
/// unroll: class ids, their one-hot planes and the per-pixel class weights.
#[derive(Debug, Clone)]
pub struct LossTargets {
    /// `[B, 1, H, W]` u32 class ids.
    index: Tensor,
    /// `[B, C, H, W]` f32 one-hot labels (only with a Dice term).
    one_hot: Option<Tensor>,
    /// `[B, H*W]` f32 weight of each pixel's class, and `[B]` their sums
    /// (only with class weights).
    weights: Option<(Tensor, Tensor)>,
    dice_weight: f64,
    /// The class ids again, `[B, H, W]`, for the one-pass CPU loss (plain
    /// cross entropy: no class weights, no Dice term).
    ids: Arc<Vec<u32>>,
    /// The class count the ids were checked against.
    classes: usize,
}

impl LossTargets {
    /// Prepares `labels` `[B, H, W]` (class ids below `classes`) for a loss
    /// of cross-entropy weighted per class by `class_weights` (one per
    /// class; `None`: unweighted) plus `dice_weight` times the soft Dice
    /// loss.
    pub fn new(
        labels: &Tensor,
        classes: usize,
        class_weights: Option<&[f64]>,
        dice_weight: f64,
    ) -> Result<Self> {
        let labels = labels.to_dtype(DType::U32)?;
        let (b, h, w) = labels.dims3()?;
        let ids = labels.flatten_all()?.to_vec1::<u32>()?;
        if let Some(&bad) = ids.iter().find(|&&c| c as usize >= classes) {
            return Err(SchedError::data(format!(
                "label {bad} is not one of the {classes} classes"
            )));
        }
        let device = labels.device();
        let one_hot = if dice_weight > 0.0 {
            let mut v = vec![0f32; b * classes * h * w];
            for (i, &c) in ids.iter().enumerate() {
                let (n, p) = (i / (h * w), i % (h * w));
                v[(n * classes + c as usize) * h * w + p] = 1.0;
            }
            Some(Tensor::from_vec(v, (b, classes, h, w), device)?)
        } else {
            None
        };
        let weights = match class_weights {
            Some(cw) => {
                if cw.len() != classes {
                    return Err(SchedError::data(format!(
                        "{} class weights given for {classes} classes",
                        cw.len()
                    )));
                }
                let v: Vec<f32> = ids.iter().map(|&c| cw[c as usize] as f32).collect();
                let map = Tensor::from_vec(v, (b, h * w), device)?;
                let sums = map.sum(1)?;
                Some((map, sums))
            }
            None => None,
        };
        Ok(LossTargets {
            index: labels.unsqueeze(1)?.contiguous()?,
            one_hot,
            weights,
            dice_weight,
            ids: Arc::new(ids),
            classes,
        })
    }

    /// The label grid `(H, W)`: the size the logits must have.
    pub fn size(&self) -> (usize, usize) {
        let dims = self.index.dims();
        (dims[2], dims[3])
    }

    /// The loss of each sample, `[B]`, for `logits` `[B, C, H, W]`.
    pub fn per_sample_loss(&self, logits: &Tensor) -> Result<Tensor> {
        let plain = self.weights.is_none() && self.one_hot.is_none();
        if plain && logits.device().is_cpu() && logits.dtype() == DType::F32 {
            let op = PixelCrossEntropy {
                labels: Arc::clone(&self.ids),
                classes: self.classes,
            };
            return Ok(logits.contiguous()?.apply_op1(op)?);
        }
        let log_p = candle_nn::ops::log_softmax(logits, 1)?;
        let nll = log_p.gather(&self.index, 1)?.flatten_from(1)?.neg()?; // [B, H*W]
        let mut loss = match &self.weights {
            None => nll.mean(1)?,
            // A sample whose pixels all weigh 0 contributes 0, not NaN.
            Some((map, sums)) => (nll * map)?
                .sum(1)?
                .broadcast_div(&sums.clamp(1e-12, f64::MAX)?)?,
        };
        if let Some(y) = &self.one_hot {
            let p = log_p.exp()?;
            loss = (loss + (soft_dice_loss(&p, y)? * self.dice_weight)?)?;
        }
        Ok(loss)
    }
}

/// The soft Dice loss of each sample, `[B]`: `1 - (2 sum(p y) + 1) /
/// (sum(p) + sum(y) + 1)` per class over the pixels, averaged over the
/// classes, for probabilities `p` and one-hot labels `y`, both
/// `[B, C, H, W]`. It is 0 for a perfect prediction and approaches 1 when
/// prediction and labels do not overlap.
pub fn soft_dice_loss(p: &Tensor, y: &Tensor) -> Result<Tensor> {
    let inter = (p * y)?.flatten_from(2)?.sum(2)?; // [B, C]
    let total = (p.flatten_from(2)?.sum(2)? + y.flatten_from(2)?.sum(2)?)?;
    let ratio = ((inter * 2.0)? + DICE_SMOOTH)?.div(&(total + DICE_SMOOTH)?)?;
    Ok(ratio.affine(-1.0, 1.0)?.mean(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_a_hand_computation() {
        // One sample, two classes, two pixels: logits (0, ln 3) and (0, 0).
        let l3 = 3f32.ln();
        let logits = Tensor::new(&[[[[0f32, 0.0]], [[l3, 0.0]]]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[[[1u32, 0]]], &Device::Cpu).unwrap();
        let ce = per_sample_cross_entropy(&logits, &labels).unwrap();
        let expected = (-(0.75f32).ln() - (0.5f32).ln()) / 2.0;
        let got = ce.to_vec1::<f32>().unwrap()[0];
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        // The prepared targets without levers give the same loss.
        let plain = LossTargets::new(&labels, 2, None, 0.0).unwrap();
        let same = plain
            .per_sample_loss(&logits)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!((same - expected).abs() < 1e-6);
    }

    /// Logits with another class count than the targets were made for are
    /// an error, not an index past the logits.
    #[test]
    fn logits_of_the_wrong_class_count_are_an_error() {
        let labels = Tensor::new(&[[[2u32, 0]]], &Device::Cpu).unwrap();
        let targets = LossTargets::new(&labels, 3, None, 0.0).unwrap();
        let two = Tensor::zeros((1, 2, 1, 2), DType::F32, &Device::Cpu).unwrap();
        let err = targets.per_sample_loss(&two).unwrap_err().to_string();
        assert!(err.contains("3 classes"), "{err}");
        let three = Tensor::zeros((1, 3, 1, 2), DType::F32, &Device::Cpu).unwrap();
        let loss = targets
            .per_sample_loss(&three)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((loss[0] - 3f32.ln()).abs() < 1e-6, "{loss:?}");
    }

    #[test]
    fn class_weights_give_the_weighted_mean() {
        let l3 = 3f32.ln();
        let logits = Tensor::new(&[[[[0f32, 0.0]], [[l3, 0.0]]]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[[[1u32, 0]]], &Device::Cpu).unwrap();
        let t = LossTargets::new(&labels, 2, Some(&[1.0, 3.0]), 0.0).unwrap();
        let got = t
            .per_sample_loss(&logits)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        // pixel 0 is class 1 (weight 3), pixel 1 class 0 (weight 1).
        let expected = (3.0 * -(0.75f32).ln() + -(0.5f32).ln()) / 4.0;
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        assert!(LossTargets::new(&labels, 2, Some(&[1.0]), 0.0).is_err());
        assert!(LossTargets::new(&labels, 1, None, 0.0).is_err());
    }

    #[test]
    fn dice_is_zero_for_a_perfect_prediction_and_near_one_for_the_opposite() {
        let y = Tensor::new(&[[[[1f32, 0.0, 1.0]], [[0.0, 1.0, 0.0]]]], &Device::Cpu).unwrap();
        let perfect = soft_dice_loss(&y, &y).unwrap().to_vec1::<f32>().unwrap()[0];
        assert!(perfect.abs() < 1e-7, "{perfect}");
        let opposite = y.affine(-1.0, 1.0).unwrap();
        let worst = soft_dice_loss(&opposite, &y)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        // Per class 1 - 1 / (3 + 1) = 0.75 with the smoothing of 1.
        assert!((worst - 0.75).abs() < 1e-6, "{worst}");
        // Through the loss: confident correct logits add (almost) nothing.
        let labels = Tensor::new(&[[[0u32, 1, 0]]], &Device::Cpu).unwrap();
        let logits = (y * 40.0).unwrap();
        let t = LossTargets::new(&labels, 2, None, 1.0).unwrap();
        let loss = t
            .per_sample_loss(&logits)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!(loss.abs() < 1e-6, "{loss}");
    }
}
