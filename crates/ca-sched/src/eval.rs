//! IoU per class over a whole split, at chosen CA steps.

use ca_core::{chunk_seed, ensemble_mean, repeat_members, CellModel, Colony};
use candle_core::{DType, Device, Tensor};

use ca_model::IouTable;

use crate::error::{Result, SchedError};
use crate::model::TrainData;

/// What a chunk of an evaluation sees from step `t` on: images
/// `[b, 3, H, W]` in `[0, 1]` and their labels, `b * H * W` classes in
/// row-major order.
pub type Frame = (Tensor, Vec<u32>);

/// IoU per class after each of `steps` CA steps of `model` on `samples`
/// samples, `batch` at a time: chunk `k` (samples `k * batch ..`) runs a
/// fresh [`Colony`] seeded by [`chunk_seed`]`(seed, k)` from `N(0, I)`
/// states, with detached steps. `frames(indices, t)` gives the chunk's
/// input from step `t` on, or `None` to keep the previous one; it is
/// called for every `t` in `1..=max(steps)` and must give a frame at
/// `t = 1` (image switching and shifts give new frames later).
pub fn iou_over_time<M: CellModel>(
    model: &M,
    samples: usize,
    batch: usize,
    seed: u64,
    steps: &[usize],
    frames: impl FnMut(&[usize], usize) -> Result<Option<Frame>>,
) -> Result<IouTable> {
    iou_over_time_ensemble(model, samples, batch, seed, steps, 1, frames)
}

/// [`iou_over_time`] of a pseudo-ensemble of `members` runs per sample
/// (each chunk's colony holds `members * batch` runs, member-major, see
/// [`ca_core::repeat_members`]): the prediction at a step is the most
/// likely class of the members' averaged probabilities
/// ([`ca_core::ensemble_mean`]). One member is [`iou_over_time`].
pub fn iou_over_time_ensemble<M: CellModel>(
    model: &M,
    samples: usize,
    batch: usize,
    seed: u64,
    steps: &[usize],
    members: usize,
    mut frames: impl FnMut(&[usize], usize) -> Result<Option<Frame>>,
) -> Result<IouTable> {
    let steps = evaluation_steps(steps)?;
    let last = steps[steps.len() - 1];
    if batch == 0 || samples == 0 {
        return Err(SchedError::data(format!(
            "cannot evaluate {samples} samples in batches of {batch}"
        )));
    }
    let classes = model.rule().config().num_classes;
    let mut counts = vec![IouCounts::new(classes); steps.len()];
    let indices: Vec<usize> = (0..samples).collect();
    for (chunk_id, chunk) in indices.chunks(batch).enumerate() {
        let Some((images, mut labels)) = frames(chunk, 1)? else {
            return Err(SchedError::data("no input at step 1"));
        };
        let (b, _, h, w) = images.dims4()?;
        let pixels = labels.len() / b.max(1);
        let mut colony = Colony::new(model, members * b, h, w, chunk_seed(seed, chunk_id))?;
        let env = colony.environment(&repeat_members(&images, members)?)?;
        let mut k = 0;
        colony.evolve_with(&env, last, |t, colony| {
            if t == steps[k] {
                let pred = match members {
                    1 => predict(&colony.logits()?)?,
                    n => ensemble_mean(&colony.logits()?, n)?
                        .classes()?
                        .flatten_all()?
                        .to_vec1::<u32>()?,
                };
                if pred.len() != labels.len() {
                    return Err(SchedError::data(format!(
                        "{} labels for {} predicted pixels",
                        labels.len(),
                        pred.len()
                    )));
                }
                counts[k].add(&pred, &labels, pixels);
                k += 1;
            }
            // The input of the next step, when the frames change it.
            if t == last {
                return Ok(None);
            }
            match frames(chunk, t + 1)? {
                Some((images, l)) => {
                    labels = l;
                    Ok(Some(
                        colony.environment(&repeat_members(&images, members)?)?,
                    ))
                }
                None => Ok(None),
            }
        })?;
    }
    Ok(IouTable {
        steps,
        iou: counts.iter().map(IouCounts::iou).collect(),
        stderr: counts.iter().map(IouCounts::stderr).collect(),
    })
}

/// `steps` ascending without repeats, refused when empty or when one is 0
/// (an evaluation reads the map after at least one CA step).
pub(crate) fn evaluation_steps(steps: &[usize]) -> Result<Vec<usize>> {
    let mut steps = steps.to_vec();
    steps.sort_unstable();
    steps.dedup();
    match steps.first() {
        None => Err(SchedError::data("no evaluation steps given")),
        Some(0) => Err(SchedError::data("evaluation steps start at 1")),
        Some(_) => Ok(steps),
    }
}

/// Per-class intersection and union counts summed over images, and the
/// sums of squares and products that the standard error of their ratio
/// needs ([`IouCounts::stderr`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IouCounts {
    images: usize,
    inter: Vec<f64>,
    union: Vec<f64>,
    inter_sq: Vec<f64>,
    union_sq: Vec<f64>,
    cross: Vec<f64>,
}

impl IouCounts {
    /// No images yet, `classes` classes.
    pub fn new(classes: usize) -> Self {
        IouCounts {
            images: 0,
            inter: vec![0.0; classes],
            union: vec![0.0; classes],
            inter_sq: vec![0.0; classes],
            union_sq: vec![0.0; classes],
            cross: vec![0.0; classes],
        }
    }

    /// Adds images whose predicted and true classes are `pred` and `truth`
    /// (the same length, `pixels` values per image, image after image).
    pub fn add(&mut self, pred: &[u32], truth: &[u32], pixels: usize) {
        let classes = self.inter.len();
        for (p, t) in pred.chunks(pixels.max(1)).zip(truth.chunks(pixels.max(1))) {
            let (mut i, mut u) = (vec![0u64; classes], vec![0u64; classes]);
            accumulate(p, t, &mut i, &mut u);
            for c in 0..classes {
                let (i, u) = (i[c] as f64, u[c] as f64);
                self.inter[c] += i;
                self.union[c] += u;
                self.inter_sq[c] += i * i;
                self.union_sq[c] += u * u;
                self.cross[c] += i * u;
            }
            self.images += 1;
        }
    }

    /// The IoU of each class over all the images (`NaN` for a class in no
    /// label and no prediction).
    pub fn iou(&self) -> Vec<f64> {
        (self.inter.iter().zip(&self.union))
            .map(|(&i, &u)| if u == 0.0 { f64::NAN } else { i / u })
            .collect()
    }

    /// The standard error of each class's IoU over the images, by the
    /// linearisation of the ratio `R = sum I / sum U`:
    /// `sqrt(sum_i (I_i - R U_i)^2 / (n (n - 1))) / mean(U)`. `NaN` with
    /// fewer than 2 images or a class of union 0.
    pub fn stderr(&self) -> Vec<f64> {
        let n = self.images as f64;
        (0..self.inter.len())
            .map(|c| {
                let u = self.union[c];
                if self.images < 2 || u == 0.0 {
                    return f64::NAN;
                }
                let r = self.inter[c] / u;
                let residual =
                    self.inter_sq[c] - 2.0 * r * self.cross[c] + r * r * self.union_sq[c];
                (residual.max(0.0) / (n * (n - 1.0))).sqrt() / (u / n)
            })
            .collect()
    }
}

/// [`iou_over_time`] on every sample of `data` (augmentation seed 0, the
/// image fixed): the IoU per class after each of `steps`.
pub fn evaluate_iou<M: CellModel>(
    model: &M,
    data: &dyn TrainData,
    steps: &[usize],
    batch: usize,
    seed: u64,
) -> Result<IouTable> {
    let device = model.rule().device().clone();
    iou_over_time(model, data.len(), batch, seed, steps, |chunk, t| {
        if t > 1 {
            return Ok(None);
        }
        let items: Vec<(usize, u64)> = chunk.iter().map(|&i| (i, 0)).collect();
        let (images, labels) = data.batch(&items, &device)?;
        let labels = labels
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        Ok(Some((images, labels)))
    })
}

/// The mean IoU over `classes` classes of the trivial rule that predicts
/// the majority class of `data`'s labels (augmentation seed 0) everywhere:
/// that class's share of the pixels divided by `classes` (every other class
/// scores 0). The baseline a trained model has to beat.
pub fn majority_mean_iou(data: &dyn TrainData, classes: usize, device: &Device) -> Result<f64> {
    let items: Vec<(usize, u64)> = (0..data.len()).map(|i| (i, 0)).collect();
    let (_, labels) = data.batch(&items, device)?;
    let labels = labels
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    if labels.is_empty() || classes == 0 {
        return Err(SchedError::data(format!(
            "no baseline for {} labels of {classes} classes",
            labels.len()
        )));
    }
    let mut counts = vec![0usize; classes];
    for &l in &labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    let majority = counts.iter().max().copied().unwrap_or(0);
    Ok(majority as f64 / labels.len() as f64 / classes as f64)
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

    /// Two images of 4 pixels: class 1's intersections 1 and 3, unions 2
    /// and 4, so R = 4/6 and the standard error is
    /// `sqrt(((1 - 2R)^2 + (3 - 4R)^2) / 2) / 3 = 1/9`.
    #[test]
    fn counts_give_the_ratio_and_its_standard_error() {
        let mut counts = IouCounts::new(2);
        counts.add(&[1, 1, 0, 0, 1, 1, 1, 0], &[1, 0, 0, 0, 1, 1, 1, 1], 4);
        let iou = counts.iou();
        let se = counts.stderr();
        assert!((iou[1] - 4.0 / 6.0).abs() < 1e-12, "{iou:?}");
        assert!((se[1] - 1.0 / 9.0).abs() < 1e-12, "{se:?}");
        // Class 0: intersections 2 and 0, unions 3 and 1.
        assert!((iou[0] - 0.5).abs() < 1e-12);
        assert!(se[0] > 0.0);
        // One image: no standard error; a class nobody has: NaN.
        let mut one = IouCounts::new(3);
        one.add(&[1, 1], &[1, 0], 2);
        assert!(one.stderr()[1].is_nan() && one.iou()[2].is_nan());
    }
}
