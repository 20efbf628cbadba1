//! Pseudo-ensembles (as M3D-NCA's): `N` runs of one model on each image
//! from independent initial states and draws, evolved as one colony of
//! `N * B` runs (member-major: run `m * B + b` is member `m` of image
//! `b`), their class probabilities averaged. The spread of the members'
//! probabilities is the uncertainty a user sees.

use candle_core::{DType, Tensor};

use crate::error::{CoreError, InvalidValue, Result};

/// The averaged prediction of an ensemble.
///
/// # Shapes
///
/// `probabilities` `[B, C, H, W]` f32 (each pixel's sum over classes is
/// 1), `variance` `[B, H, W]` f32.
#[derive(Debug, Clone)]
pub struct EnsembleOutput {
    /// The members' softmax probabilities, averaged.
    pub probabilities: Tensor,
    /// The variance over the members of each class's probability, averaged
    /// over the classes (0 for one member, at most 0.25).
    pub variance: Tensor,
    /// The number of members.
    pub members: usize,
}

impl EnsembleOutput {
    /// The most likely class of every pixel, `[B, H, W]` u32.
    pub fn classes(&self) -> Result<Tensor> {
        Ok(self.probabilities.argmax(1)?.to_dtype(DType::U32)?)
    }
}

/// `t` `[B, ...]` repeated `members` times along the batch, member-major:
/// `[members * B, ...]`, entry `m * B + b` a copy of entry `b`.
pub fn repeat_members(t: &Tensor, members: usize) -> Result<Tensor> {
    check_members(members)?;
    if members == 1 {
        return Ok(t.clone());
    }
    Ok(Tensor::cat(&vec![t; members], 0)?)
}

/// The ensemble of `logits` `[members * B, C, H, W]` (member-major, as
/// [`repeat_members`] lays the runs out): the mean over the members of
/// their softmax probabilities and its variance.
///
/// # Errors
///
/// [`CoreError::Shape`] when the batch is not a multiple of `members`.
pub fn ensemble_mean(logits: &Tensor, members: usize) -> Result<EnsembleOutput> {
    check_members(members)?;
    let (nb, c, h, w) = logits.dims4()?;
    if nb % members != 0 {
        return Err(CoreError::Shape(crate::ShapeError {
            what: "ensemble logits",
            expected: format!("[members * B, C, H, W] with members = {members}"),
            got: logits.dims().to_vec(),
        }));
    }
    let b = nb / members;
    let p = candle_nn::ops::softmax(logits, 1)?.reshape((members, b, c, h, w))?;
    let probabilities = p.mean(0)?;
    let variance = p
        .broadcast_sub(&probabilities.unsqueeze(0)?)?
        .sqr()?
        .mean(0)?
        .mean(1)?;
    Ok(EnsembleOutput {
        probabilities,
        variance,
        members,
    })
}

fn check_members(members: usize) -> Result<()> {
    match members {
        0 => Err(CoreError::InvalidConfig(InvalidValue::new(
            "ensemble",
            0,
            "must be at least 1",
        ))),
        _ => Ok(()),
    }
}
