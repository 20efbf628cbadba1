//! The per-image mean pixel cross entropy as one CPU op, forward and
//! backward: candle's `log_softmax` over the class dimension of `[B, C, H,
//! W]` logits, the gather of the labels' entries and the mean take about
//! ten strided passes forward and fifteen backward, each its own parallel
//! region and buffer, and the loss is evaluated at every step of an unroll
//! at image resolution (4x the cells of the state grid for the 96/48
//! model). The op reads each pixel's classes once forward and once
//! backward.

use std::sync::Arc;

use ca_core::cpu_op::{cpu_f32, storage_f32};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The op's name in its errors.
const OP: &str = "pixel cross entropy";

/// `-mean over pixels of log softmax(logits)[label]` per image.
pub(crate) struct PixelCrossEntropy {
    /// The label of every pixel, `[B, H, W]`, each below `classes`.
    pub labels: Arc<Vec<u32>>,
    /// The class count the labels were checked against: the logits' `C`.
    pub classes: usize,
}

impl PixelCrossEntropy {
    /// `(B, C, H * W)` of logits with layout `l`, checked against the
    /// labels.
    fn dims(&self, l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
        let (b, c, h, w) = l.shape().dims4()?;
        if b * h * w != self.labels.len() || c != self.classes {
            candle_core::bail!(
                "{OP}: logits {:?} for {} labels of {} classes",
                l.shape().dims(),
                self.labels.len(),
                self.classes
            );
        }
        Ok((b, c, h * w))
    }

    /// Calls `f(pixel, label, log_sum_exp)` for every pixel of one image's
    /// logits `x` (`[C, HW]`).
    fn for_each_pixel(
        x: &[f32],
        labels: &[u32],
        (c, hw): (usize, usize),
        mut f: impl FnMut(usize, usize, f32),
    ) {
        for (p, &label) in labels.iter().enumerate() {
            let mut m = f32::NEG_INFINITY;
            for k in 0..c {
                m = m.max(x[k * hw + p]);
            }
            let s: f32 = (0..c).map(|k| (x[k * hw + p] - m).exp()).sum();
            f(p, label as usize, m + s.ln());
        }
    }
}

impl CustomOp1 for PixelCrossEntropy {
    fn name(&self) -> &'static str {
        "ca-sched-pixel-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(OP, "logits", s, l)?;
        let (b, c, hw) = self.dims(l)?;
        let loss: Vec<f32> = x
            .par_chunks(c * hw)
            .zip(self.labels.par_chunks(hw))
            .map(|(x, labels)| {
                let mut sum = 0.0f64;
                Self::for_each_pixel(x, labels, (c, hw), |p, label, lse| {
                    sum += (lse - x[label * hw + p]) as f64;
                });
                (sum / hw as f64) as f32
            })
            .collect();
        Ok((CpuStorage::F32(loss), Shape::from(b)))
    }

    /// `d loss_b / d x[b, k, p] = (softmax(x)[k, p] - [k == label]) / HW`,
    /// times the loss's gradient `g[b]`.
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let arg = arg.contiguous()?;
        let (storage, layout) = arg.storage_and_layout();
        let x = storage_f32(OP, "logits", &storage, layout)?;
        let (_, c, hw) = self.dims(layout)?;
        let g = grad.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let mut gx = vec![0.0f32; x.len()];
        gx.par_chunks_mut(c * hw)
            .zip(x.par_chunks(c * hw))
            .zip(self.labels.par_chunks(hw))
            .zip(g.par_iter())
            .for_each(|(((gx, x), labels), &g)| {
                let scale = g / hw as f32;
                Self::for_each_pixel(x, labels, (c, hw), |p, label, lse| {
                    for k in 0..c {
                        gx[k * hw + p] = scale * (x[k * hw + p] - lse).exp();
                    }
                    gx[label * hw + p] -= scale;
                });
            });
        Ok(Some(Tensor::from_vec(gx, arg.shape(), arg.device())?))
    }
}
