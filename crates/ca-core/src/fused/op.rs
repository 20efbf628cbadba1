//! The fused step as a candle `CustomOp3`: forward on CPU storage, backward
//! from the activations kept by the forward.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::cpu_op::{cpu_f32, storage_f32};

use super::backward::backward;
use super::forward::{forward, Inputs, Saved};
use super::layout::{Dims, Packing};

/// The op's name in its errors.
const OP: &str = "fused step";

/// One CA step with inputs the state `[B, S, H, W]`, the environment `[B,
/// E, H, W]` and the packed rule parameters (1-D, see
/// [`super::layout::Packing`]); output the new state `[B, S, H, W]`. The
/// step's draws (no gradient) are part of the op: the update mask `[B, 1,
/// H, W]` and, with a reset gate, the noise `[B, S, H, W]`, both
/// contiguous. The inputs are read where they lie, not copied into one
/// tensor first.
pub(crate) struct FusedStep {
    dims: Dims,
    save: bool,
    mask: Tensor,
    noise: Option<Tensor>,
    saved: Mutex<Option<Saved>>,
}

impl FusedStep {
    /// The op for a step of `dims` with draws `mask` and `noise` (present
    /// exactly when `dims.reset`); `save` keeps the activations for `bwd`.
    pub fn new(dims: Dims, save: bool, mask: Tensor, noise: Option<Tensor>) -> Self {
        FusedStep {
            dims,
            save,
            mask,
            noise,
            saved: Mutex::new(None),
        }
    }

    /// Runs the forward on the contiguous f32 data of state, environment
    /// and parameters, after checking every size.
    fn run(
        &self,
        (state, env, packed): (&[f32], &[f32], &[f32]),
        save: bool,
    ) -> candle_core::Result<super::forward::Output> {
        let d = &self.dims;
        let (mask_storage, mask_layout) = self.mask.storage_and_layout();
        let mask = storage_f32(OP, "mask", &mask_storage, mask_layout)?;
        let noise_storage = self.noise.as_ref().map(|z| z.storage_and_layout());
        let noise = match &noise_storage {
            Some((storage, layout)) => Some(storage_f32(OP, "noise", storage, layout)?),
            None => None,
        };
        let expect = [
            ("state", state.len(), d.cells() * d.s),
            ("environment", env.len(), d.cells() * d.e),
            ("packed parameters", packed.len(), Packing::new(d).len),
            ("mask", mask.len(), d.cells()),
            (
                "noise",
                noise.map_or(0, <[f32]>::len),
                if d.reset { d.cells() * d.s } else { 0 },
            ),
        ];
        for (what, got, want) in expect {
            if got != want {
                return Err(candle_core::Error::Msg(format!(
                    "fused step: {what} has {got} elements, expected {want}"
                )));
            }
        }
        let inputs = Inputs {
            state,
            env,
            packed,
            mask,
            noise,
        };
        Ok(forward(d, inputs, save))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
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
        let state = cpu_f32(OP, "state", s1, l1)?;
        let env = cpu_f32(OP, "environment", s2, l2)?;
        let packed = cpu_f32(OP, "packed parameters", s3, l3)?;
        let fwd = self.run((state, env, packed), self.save)?;
        *self.lock() = fwd.saved;
        let d = &self.dims;
        Ok((CpuStorage::F32(fwd.out), Shape::from((d.b, d.s, d.h, d.w))))
    }

    fn bwd(
        &self,
        state: &Tensor,
        env: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The kept activations are used once; a second backward recomputes.
        let kept = self.lock().take();
        let saved = match kept {
            Some(s) => s,
            None => self
                .run((&to_vec(state)?, &to_vec(env)?, &to_vec(packed)?), true)?
                .saved
                .ok_or_else(|| candle_core::Error::Msg("fused step: nothing saved".into()))?,
        };
        let grad = grad.contiguous()?;
        let g = {
            let (storage, layout) = grad.storage_and_layout();
            let gout = storage_f32(OP, "gradient", &storage, layout)?;
            backward(&self.dims, &saved, gout, env.track_op())
        };
        let gs = Tensor::from_vec(g.state, state.shape(), state.device())?;
        let ge = match g.env {
            Some(v) => Some(Tensor::from_vec(v, env.shape(), env.device())?),
            None => None,
        };
        let gp = Tensor::from_vec(g.params, packed.shape(), packed.device())?;
        Ok((Some(gs), ge, Some(gp)))
    }
}
