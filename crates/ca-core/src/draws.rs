//! The random draws of one CA step (update mask and reset noise), made
//! outside the rule so that every implementation of the step (reference,
//! fused, CUDA) and its backward see the same ones.
//!
//! The caller's generator gives one seed per tensor; each `H x W` plane of
//! it (a mask, a noise channel of an image) is then drawn by its own
//! Xoshiro256++ generator seeded from that seed and the plane's index, in
//! parallel: the same values on any number of threads. Drawing every value
//! from the caller's ChaCha12 generator in turn took 4.4 ns per normal on
//! one thread (a batch-8 step's 884K: 4 ms, a third of an inference step
//! of `evaluate`); Xoshiro256++ takes 2.2 ns, and the planes spread over
//! the threads.

use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

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
        let (cells, plane) = (batch * height * width, height * width);
        let p = config.update_prob;
        let mask = planes(cells, plane, rng, |r, v| {
            *v = if r.random::<f64>() < p { 1.0 } else { 0.0 }
        });
        let mask = Tensor::from_vec(mask, (batch, 1, height, width), device)?;
        let noise = if config.reset_gate {
            let s = config.state_channels;
            let z = planes(cells * s, plane, rng, |r, v| *v = r.sample(StandardNormal));
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

/// The seed of the colony that segments chunk `chunk` (0-based) of a run
/// seeded by `seed`: the one seeding rule of the project. An evaluation
/// seeds its chunk `k` of images so, and [`crate::Segmenter`] seeds every
/// colony as chunk 0, so the same model, image, seed and steps give the same
/// class map in `segment`, `evaluate` (its first chunk) and the server.
pub fn chunk_seed(seed: u64, chunk: usize) -> u64 {
    splitmix64(seed ^ splitmix64(chunk as u64))
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
    let v = planes(n, shape.2 * shape.3, rng, |r, v| {
        *v = r.sample(StandardNormal)
    });
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// `len` values in planes of `plane` values (the last may be shorter),
/// each value set by `draw` from its plane's generator: Xoshiro256++
/// seeded from one seed drawn from `rng` and the plane's index. Planes are
/// drawn in parallel; the result does not depend on the thread count.
fn planes<R: Rng>(
    len: usize,
    plane: usize,
    rng: &mut R,
    draw: impl Fn(&mut Xoshiro256PlusPlus, &mut f32) + Sync,
) -> Vec<f32> {
    let seed: u64 = rng.random();
    let mut v = vec![0.0f32; len];
    v.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut r = Xoshiro256PlusPlus::seed_from_u64(splitmix64(seed ^ splitmix64(i as u64)));
            for x in chunk {
                draw(&mut r, x);
            }
        });
    v
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

    /// The planes are drawn in parallel from their own generators: the
    /// draws must not depend on the thread count, planes must differ, and
    /// the values must have the distributions asked for.
    #[test]
    fn draws_are_the_same_on_any_thread_count_and_well_distributed() {
        let cfg = CellConfig::default();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let d = StepDraws::sample(&cfg, (3, 40, 50), &mut step_rng(5, 2), &Device::Cpu)
                    .unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (flat(&d.mask), flat(d.noise.as_ref().unwrap()))
            })
        };
        let (mask, noise) = on(1);
        assert_eq!((mask.clone(), noise.clone()), on(2));
        assert_eq!((mask.clone(), noise.clone()), on(3));
        let fired = mask.iter().filter(|&&m| m == 1.0).count() as f64 / mask.len() as f64;
        assert!((fired - cfg.update_prob).abs() < 0.02, "fired {fired}");
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0));
        let n = noise.len() as f64;
        let mean = noise.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = noise
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "mean {mean} var {var}"
        );
        let plane = 40 * 50;
        assert_ne!(noise[..plane], noise[plane..2 * plane]);
        assert_ne!(mask[..plane], mask[plane..2 * plane]);
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
