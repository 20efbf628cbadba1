//! A colony: the state grid `[B, S, H, W]` of a cell rule and its evolution.

use candle_core::{DType, Tensor};

use crate::draws::{normal_state, step_rng, StepDraws};
use crate::error::{CoreError, Result};
use crate::rule::CellRule;

/// Step index used to derive the generator of the initial state, distinct
/// from every step index an evolution reaches.
const INIT_STREAM: u64 = u64::MAX;

/// A colony of cells on a `H x W` grid, `B` grids at once, evolving under
/// one rule. For inference: the state is detached after every step, so no
/// autograd graph builds up (training goes through [`CellRule::step`]).
///
/// Randomness: the initial state and the draws of step `t` come from
/// [`step_rng`]`(seed, .)`, so the same seed gives the same trajectory on
/// CPU, whatever happened before.
#[derive(Debug, Clone)]
pub struct Colony {
    rule: CellRule,
    state: Tensor,
    seed: u64,
    steps: u64,
}

impl Colony {
    /// A colony of `batch` grids of `height x width` cells, state seeded
    /// `N(0, I)` from `seed`.
    pub fn new(
        rule: CellRule,
        batch: usize,
        height: usize,
        width: usize,
        seed: u64,
    ) -> Result<Self> {
        if batch == 0 || height == 0 || width == 0 {
            return Err(CoreError::Shape {
                what: "colony",
                expected: "batch, height and width of at least 1".into(),
                got: vec![batch, height, width],
            });
        }
        let s = rule.config().state_channels;
        let mut rng = step_rng(seed, INIT_STREAM);
        let state = normal_state((batch, s, height, width), &mut rng, rule.device())?;
        Ok(Colony {
            rule,
            state,
            seed,
            steps: 0,
        })
    }

    /// The rule.
    pub fn rule(&self) -> &CellRule {
        &self.rule
    }

    /// The state `[B, S, H, W]`.
    pub fn state(&self) -> &Tensor {
        &self.state
    }

    /// Replaces the state (same shape required), e.g. to keep it across an
    /// image switch or to restore it.
    pub fn set_state(&mut self, state: Tensor) -> Result<()> {
        if state.dims() != self.state.dims() {
            return Err(CoreError::Shape {
                what: "new colony state",
                expected: format!("{:?}", self.state.dims()),
                got: state.dims().to_vec(),
            });
        }
        self.state = state.detach();
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One step under environment `env` `[B, E, H, W]`; the environment may
    /// differ from step to step (video, image switching).
    pub fn step(&mut self, env: &Tensor) -> Result<()> {
        let (b, _, h, w) = self.state.dims4()?;
        let mut rng = step_rng(self.seed, self.steps);
        let draws = StepDraws::sample(self.rule.config(), (b, h, w), &mut rng, self.rule.device())?;
        self.state = self.rule.step_detached(&self.state, env, &draws)?;
        self.steps += 1;
        Ok(())
    }

    /// `n` steps under the same environment.
    pub fn evolve(&mut self, env: &Tensor, n: usize) -> Result<()> {
        for _ in 0..n {
            self.step(env)?;
        }
        Ok(())
    }

    /// Class logits `[B, classes, H, W]` of the current state.
    pub fn logits(&self) -> Result<Tensor> {
        Ok(self.rule.logits(&self.state)?.detach())
    }

    /// The most likely class of every cell, `[B, H, W]` u32.
    pub fn predict(&self) -> Result<Tensor> {
        Ok(self.logits()?.argmax(1)?.to_dtype(DType::U32)?)
    }
}
