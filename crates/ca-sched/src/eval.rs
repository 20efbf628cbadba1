//! IoU per class over a whole split, at chosen CA steps.

use ca_core::{normal_state, step_rng, StepDraws};
use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::error::{Result, SchedError};
use crate::model::{SegModel, TrainData};

/// Salt of the evaluation's random streams.
const EVAL_SALT: u64 = 0xE7A1_0001;

/// IoU per class at each evaluated step: intersection and union summed over
/// every pixel of the split, then divided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IouTable {
    /// The CA steps evaluated, ascending.
    pub steps: Vec<usize>,
    /// `iou[k][c]`: IoU of class `c` after `steps[k]` steps (`NaN` when the
    /// class appears neither in labels nor predictions).
    pub iou: Vec<Vec<f64>>,
}

impl IouTable {
    /// The IoUs after `step` steps, if evaluated.
    pub fn at(&self, step: usize) -> Option<&[f64]> {
        self.steps
            .iter()
            .position(|&s| s == step)
            .map(|k| self.iou[k].as_slice())
    }
}

/// Runs the model from fresh `N(0, I)` states (seeded by `seed`) on every
/// sample of `data` (augmentation seed 0), `batch` at a time, and returns
/// the IoU per class after each of `steps`.
pub fn evaluate_iou<M: SegModel>(
    model: &M,
    data: &dyn TrainData,
    steps: &[usize],
    batch: usize,
    seed: u64,
) -> Result<IouTable> {
    let mut steps = steps.to_vec();
    steps.sort_unstable();
    steps.dedup();
    let Some(&last) = steps.last() else {
        return Err(SchedError::Data("no evaluation steps given".into()));
    };
    if batch == 0 || data.is_empty() {
        return Err(SchedError::Data(format!(
            "cannot evaluate {} samples in batches of {batch}",
            data.len()
        )));
    }
    let rule = model.rule();
    let classes = rule.config().num_classes;
    let device = rule.device();
    let mut inter = vec![vec![0u64; classes]; steps.len()];
    let mut union = vec![vec![0u64; classes]; steps.len()];
    let indices: Vec<usize> = (0..data.len()).collect();
    for (chunk_id, chunk) in indices.chunks(batch).enumerate() {
        let items: Vec<(usize, u64)> = chunk.iter().map(|&i| (i, 0)).collect();
        let (images, labels) = data.batch(&items, device)?;
        let (_, lh, lw) = labels.dims3()?;
        let labels = labels
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let env = model.environment(&images)?.detach();
        let (_, _, ih, iw) = images.dims4()?;
        let (h, w) = model.state_size((ih, iw));
        let s = rule.config().state_channels;
        let stream = chunk_id as u64 * (last as u64 + 1);
        let mut rng = step_rng(seed ^ EVAL_SALT, stream);
        let mut state = normal_state((chunk.len(), s, h, w), &mut rng, device)?;
        let mut k = 0;
        for t in 1..=last {
            let mut rng = step_rng(seed ^ EVAL_SALT, stream + t as u64);
            let draws = StepDraws::sample(rule.config(), (chunk.len(), h, w), &mut rng, device)?;
            state = rule.step_detached(&state, &env, &draws)?;
            if t == steps[k] {
                let pred = predict(&model.logits(&state, (lh, lw))?)?;
                accumulate(&pred, &labels, &mut inter[k], &mut union[k]);
                k += 1;
            }
        }
    }
    let iou = inter
        .iter()
        .zip(&union)
        .map(|(i, u)| {
            i.iter()
                .zip(u)
                .map(|(&i, &u)| {
                    if u == 0 {
                        f64::NAN
                    } else {
                        i as f64 / u as f64
                    }
                })
                .collect()
        })
        .collect();
    Ok(IouTable { steps, iou })
}

/// The argmax class of every pixel of `logits` `[B, C, H, W]`, flattened.
pub fn predict(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits
        .detach()
        .argmax(1)?
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?)
}

/// Adds the per-class intersection and union counts of `pred` against
/// `truth` (same length) to `inter` and `union`.
pub fn accumulate(pred: &[u32], truth: &[u32], inter: &mut [u64], union: &mut [u64]) {
    for (&p, &t) in pred.iter().zip(truth) {
        let (p, t) = (p as usize, t as usize);
        if p == t {
            if let (Some(i), Some(u)) = (inter.get_mut(p), union.get_mut(p)) {
                *i += 1;
                *u += 1;
            }
        } else {
            if let Some(u) = union.get_mut(p) {
                *u += 1;
            }
            if let Some(u) = union.get_mut(t) {
                *u += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_counts_by_hand() {
        let pred = [0, 0, 1, 1, 2];
        let truth = [0, 1, 1, 1, 0];
        let (mut i, mut u) = (vec![0; 3], vec![0; 3]);
        accumulate(&pred, &truth, &mut i, &mut u);
        // class 0: inter {0}, union {0,1,4}; class 1: inter {2,3}, union {1,2,3}; class 2: union {4}
        assert_eq!(i, [1, 2, 0]);
        assert_eq!(u, [3, 3, 1]);
    }
}
