//! The random draws of one CA step (update mask and reset noise), made
//! outside the rule so that every implementation of the step (reference,
//! fused, CUDA) and its backward see the same ones.

use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::config::CellConfig;
use crate::error::Result;

/// The random inputs of one step for a `[B, S, H, W]` colony.
#[derive(Debug, Clone)]
pub struct StepDraws {
    /// `[B, 1, H, W]` f32, 1.0 where the cell takes its new state, 0.0 where
    /// it keeps the old one; each cell is 1 with probability `update_prob`.
    pub mask: Tensor,
    /// `[B, S, H, W]` f32 standard normal noise `z` for the reset gate;
    /// `None` when the config has no reset gate.
    pub noise: Option<Tensor>,
}

impl StepDraws {
    /// Draws a mask (Bernoulli(`update_prob`) per cell) and, when the config
    /// has a reset gate, `N(0, 1)` noise per cell and channel, from `rng`.
    ///
    /// # Shapes
    ///
    /// For `(batch, height, width) = (B, H, W)`: mask `[B, 1, H, W]`,
    /// noise `[B, S, H, W]`, both f32.
    pub fn sample<R: Rng>(
        config: &CellConfig,
        (batch, height, width): (usize, usize, usize),
        rng: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let cells = batch * height * width;
        let p = config.update_prob;
        let mask: Vec<f32> = (0..cells)
            .map(|_| if rng.random::<f64>() < p { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (batch, 1, height, width), device)?;
        let noise = if config.reset_gate {
            let s = config.state_channels;
            let z: Vec<f32> = (0..cells * s).map(|_| rng.sample(StandardNormal)).collect();
            Some(Tensor::from_vec(z, (batch, s, height, width), device)?)
        } else {
            None
        };
        Ok(StepDraws { mask, noise })
    }

    /// Draws whose mask is all `value` (0.0 or 1.0) and whose noise is drawn
    /// from `rng`: for tests of the deterministic parts of the rule.
    ///
    /// # Shapes
    ///
    /// As [`StepDraws::sample`]: mask `[B, 1, H, W]`, noise `[B, S, H, W]`.
    pub fn with_constant_mask<R: Rng>(
        config: &CellConfig,
        shape: (usize, usize, usize),
        value: f32,
        rng: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let mut d = Self::sample(config, shape, rng, device)?;
        d.mask = (d.mask.zeros_like()? + value as f64)?;
        Ok(d)
    }
}

/// A random generator for step `step` of a stream seeded by `seed`: the same
/// `(seed, step)` always gives the same generator, so a run can be resumed
/// from its step counter alone.
pub fn step_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(
        seed ^ splitmix64(step.wrapping_add(0x9E37_79B9)),
    ))
}

/// SplitMix64, a bijective mixer of 64-bit words.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Standard normal values from `rng`: the initial state `C_0 ~ N(0, I)`.
///
/// # Shapes
///
/// `shape` `(B, S, H, W)` -> `[B, S, H, W]` f32.
pub fn normal_state<R: Rng>(
    shape: (usize, usize, usize, usize),
    rng: &mut R,
    device: &Device,
) -> Result<Tensor> {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_rngs_are_reproducible_and_distinct() {
        let a: u64 = step_rng(1, 7).random();
        assert_eq!(a, step_rng(1, 7).random::<u64>());
        assert_ne!(a, step_rng(1, 8).random::<u64>());
        assert_ne!(a, step_rng(2, 7).random::<u64>());
    }

    #[test]
    fn noise_only_with_a_reset_gate() {
        let mut cfg = CellConfig::default();
        let mut rng = step_rng(0, 0);
        let d = StepDraws::sample(&cfg, (2, 3, 4), &mut rng, &Device::Cpu).unwrap();
        assert_eq!(d.mask.dims(), [2, 1, 3, 4]);
        assert_eq!(d.noise.unwrap().dims(), [2, 48, 3, 4]);
        cfg.reset_gate = false;
        let d = StepDraws::sample(&cfg, (2, 3, 4), &mut rng, &Device::Cpu).unwrap();
        assert!(d.noise.is_none());
    }
}
