//! The fused step as a candle `CustomOp3`: forward on CPU storage, backward
//! from the activations kept by the forward.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::backward::backward;
use super::forward::{forward, Saved};
use super::layout::{Dims, Packing};

/// One CA step with inputs `x = cat(state, env)` `[B, S + E, H, W]`, the
/// packed rule parameters (1-D, see [`super::layout::Packing`]) and the
/// draws `[B, 1 (+ S), H, W]`; output the new state `[B, S, H, W]`.
pub(crate) struct FusedStep {
    dims: Dims,
    save: bool,
    saved: Mutex<Option<Saved>>,
}

impl FusedStep {
    /// The op for a step of `dims`; `save` keeps the activations for `bwd`.
    pub fn new(dims: Dims, save: bool) -> Self {
        FusedStep {
            dims,
            save,
            saved: Mutex::new(None),
        }
    }

    /// Runs the forward on contiguous f32 inputs, after checking their sizes.
    fn run(
        &self,
        x: &[f32],
        p: &[f32],
        dr: &[f32],
        save: bool,
    ) -> candle_core::Result<super::forward::Output> {
        let d = &self.dims;
        let expect = [
            ("x", x.len(), d.cells() * d.ci()),
            ("packed parameters", p.len(), Packing::new(d).len),
            ("draws", dr.len(), d.cells() * d.draw_channels()),
        ];
        for (what, got, want) in expect {
            if got != want {
                return Err(candle_core::Error::Msg(format!(
                    "fused step: {what} has {got} elements, expected {want}"
                )));
            }
        }
        Ok(forward(d, x, p, dr, save))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The contiguous f32 data of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        return Err(candle_core::Error::Msg(format!(
            "fused step: {what} must be f32"
        )));
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(candle_core::Error::Msg(format!(
            "fused step: {what} must be contiguous"
        ))),
    }
}

/// The data of a tensor as a contiguous f32 vector.
fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl CustomOp3 for FusedStep {
    fn name(&self) -> &'static str {
        "ca-fused-step"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "x")?;
        let p = f32_slice(s2, l2, "packed parameters")?;
        let dr = f32_slice(s3, l3, "draws")?;
        let fwd = self.run(x, p, dr, self.save)?;
        *self.lock() = fwd.saved;
        let d = &self.dims;
        Ok((CpuStorage::F32(fwd.out), Shape::from((d.b, d.s, d.h, d.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        dr: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The kept activations are used once; a second backward recomputes.
        let kept = self.lock().take();
        let saved = match kept {
            Some(s) => s,
            None => self
                .run(&to_vec(x)?, &to_vec(p)?, &to_vec(dr)?, true)?
                .saved
                .ok_or_else(|| candle_core::Error::Msg("fused step: nothing saved".into()))?,
        };
        let g = backward(&self.dims, &saved, &to_vec(grad)?);
        let gx = Tensor::from_vec(g.x, x.shape(), x.device())?;
        let gp = Tensor::from_vec(g.params, p.shape(), p.device())?;
        Ok((Some(gx), Some(gp), None))
    }
}
