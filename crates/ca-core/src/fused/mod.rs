//! A fused CPU implementation of one CA step, forward and analytic
//! backward, plugged into candle's autograd as a `CustomOp3`.
//!
//! The op takes the state `[B, S, H, W]`, the environment `[B, E, H, W]`
//! and the rule's parameters packed into one 1-D tensor (a `cat` of the
//! flattened vars, so that candle routes the packed gradient back to every
//! var); the draws (mask `[B, 1, H, W]`, noise `[B, S, H, W]`; no gradient)
//! are read by the op where they lie. Inside, buffers are
//! NHWC; the cells are processed in tiles, one task per tile on rayon's
//! pool, each running the whole cell MLP with single-threaded GEMMs. The
//! forward keeps the activations of a step (not the im2col matrices, which
//! are rebuilt) so that memory grows with the steps in the graph only.

mod backward;
mod forward;
mod layout;
mod linalg;
mod norm;
mod op;
mod pool;

use candle_core::Tensor;

use crate::config::CellConfig;
use crate::draws::StepDraws;
use crate::error::Result;
use crate::params::{CellParams, ParamGroup};

/// One CA step on CPU with the fused op; same contract as
/// [`crate::CellRule::step_reference`], whose checks the caller has run.
/// With `grad` false, or when no input tracks a gradient, the output is
/// detached and no activations are kept.
pub(crate) fn step(
    config: &CellConfig,
    params: &CellParams,
    state: &Tensor,
    env: &Tensor,
    draws: &StepDraws,
    grad: bool,
) -> Result<Tensor> {
    let (b, _, h, w) = state.dims4()?;
    let noise = draws.noise.as_ref().filter(|_| params.reset.is_some());
    let reset = noise.is_some();
    let packed: Vec<Tensor> = params
        .vars_of(|group| match group {
            ParamGroup::Rule => true,
            ParamGroup::ResetGate => reset,
            ParamGroup::Classifier => false,
        })
        .into_iter()
        .map(|v| v.as_tensor().flatten_all())
        .collect::<candle_core::Result<_>>()?;
    let packed = Tensor::cat(&packed, 0)?;
    let (state, env) = (state.contiguous()?, env.contiguous()?);
    let mask = draws.mask.contiguous()?;
    let noise = noise.map(Tensor::contiguous).transpose()?;
    let dims = layout::Dims::new(config, reset, (b, h, w));
    let train = grad && (state.track_op() || env.track_op() || packed.track_op());
    let op = op::FusedStep::new(dims, train, mask, noise);
    let out = if train {
        state.apply_op3(&env, &packed, op)?
    } else {
        state.apply_op3_no_bwd(&env, &packed, &op)?
    };
    Ok(out)
}
