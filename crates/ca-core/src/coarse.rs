//! Stepping a coarse-to-fine colony: one CA step at a [`crate::Cascade`] level's
//! coarse grid ([`coarse_step`]), or at whichever grid step `t` of an
//! evolution runs on ([`step_at`]). The levels themselves, and the grid
//! helpers, are data in [`crate::cascade`], which knows nothing of the rule.

use candle_core::Tensor;

use crate::cascade::{block_mean, coarse_size, subsample, upsample};
use crate::draws::StepDraws;
use crate::error::Result;
use crate::rule::CellRule;

/// One CA step of `rule` at a coarse level of factor `factor`: the coarse
/// state read off the full-shape `state`, one step under the block means of
/// `env`, upsampled back. With `grad` the step keeps its autograd graph (as
/// [`CellRule::step`]), else it is detached (as [`CellRule::step_detached`]).
///
/// # Shapes
///
/// `state` `[B, S, h, w]`, `env` `[B, E, h, w]`, `draws` for the coarse grid
/// `(B, ceil(h / f), ceil(w / f))`; returns `[B, S, h, w]`.
pub fn coarse_step(
    rule: &CellRule,
    state: &Tensor,
    env: &Tensor,
    factor: usize,
    draws: &StepDraws,
    grad: bool,
) -> Result<Tensor> {
    let (_, _, h, w) = state.dims4()?;
    let coarse = subsample(state, factor)?;
    let coarse_env = block_mean(env, factor)?;
    let next = if grad {
        rule.step(&coarse, &coarse_env, draws)?
    } else {
        rule.step_detached(&coarse, &coarse_env.detach(), draws)?
    };
    upsample(&next, factor, (h, w))
}

/// CA step number `t` (0-based) of an evolution under `rule`: on the
/// coarse grid of its level when the rule's config has a [`crate::Cascade`] and
/// `t` falls in one of its levels ([`coarse_step`]), else on the full grid.
/// The draws come from `rng`, sized for the grid the step runs on. With
/// `grad` the step keeps its autograd graph.
///
/// # Shapes
///
/// `state` `[B, S, h, w]`, `env` `[B, E, h, w]`; returns `[B, S, h, w]`.
pub fn step_at<R: rand::Rng>(
    rule: &CellRule,
    state: &Tensor,
    env: &Tensor,
    t: u64,
    rng: &mut R,
    grad: bool,
) -> Result<Tensor> {
    let (b, _, h, w) = state.dims4()?;
    let factor = rule.config().cascade.as_ref().and_then(|c| c.factor_at(t));
    match factor {
        Some(f) => {
            let (hc, wc) = coarse_size((h, w), f);
            let draws = StepDraws::sample(rule.config(), (b, hc, wc), rng, rule.device())?;
            coarse_step(rule, state, env, f, &draws, grad)
        }
        None => {
            let draws = StepDraws::sample(rule.config(), (b, h, w), rng, rule.device())?;
            match grad {
                true => rule.step(state, env, &draws),
                false => rule.step_detached(state, env, &draws),
            }
        }
    }
}
