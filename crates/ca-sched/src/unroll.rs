//! The pool and unroll schedule of the paper (section 3.2): which slots an
//! optimizer step trains, how many CA steps it back-propagates through,
//! when the loss counts and how often a slot's image and state are reset;
//! and the full-unroll curriculum before it.

use ca_core::ErrorShapes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SchedError};

/// Batch, pool, mini-unroll, target and reset probabilities (flat in a
/// stored [`crate::TrainConfig`]). `Default` follows the paper: batch and
/// pool 32, `K = 10`, `T = 40`, `p_i = p_s = 0.5`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
// Fields missing from an older stored config take the defaults.
#[serde(default)]
pub struct UnrollConfig {
    /// Slots trained per optimizer step.
    pub batch: usize,
    /// Slots in the pool (at least `batch`); each step trains a random
    /// `batch` of them.
    pub pool_size: usize,
    /// `K`: CA steps per optimizer step, back-propagated through.
    pub mini_unroll: usize,
    /// `T`: the target number of steps; the loss counts steps at which a
    /// slot's age is at least `T0 = T / 3`.
    pub target: usize,
    /// `p_i`: probability that a slot's image is replaced at least once
    /// within `T / K` mini-unrolls.
    pub p_image: f64,
    /// `p_s`: the same for a slot's state (reset to fresh `N(0, I)` noise).
    pub p_state: f64,
    /// The "full unroll" baseline: every optimizer step starts fresh states
    /// on fresh images and unrolls `T` steps (`mini_unroll` is ignored).
    pub full_unroll: bool,
}

impl Default for UnrollConfig {
    fn default() -> Self {
        UnrollConfig {
            batch: 32,
            pool_size: 32,
            mini_unroll: 10,
            target: 40,
            p_image: 0.5,
            p_state: 0.5,
            full_unroll: false,
        }
    }
}

impl UnrollConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(SchedError::invalid(
                "batch",
                self.batch,
                "must be at least 1",
            ));
        }
        if self.pool_size < self.batch {
            return Err(SchedError::invalid(
                "pool_size",
                self.pool_size,
                format!("must be at least the batch size ({})", self.batch),
            ));
        }
        if self.target == 0 {
            return Err(SchedError::invalid(
                "target",
                self.target,
                "must be at least 1",
            ));
        }
        if !self.full_unroll && (self.mini_unroll == 0 || self.mini_unroll > self.target) {
            return Err(SchedError::invalid(
                "mini_unroll",
                self.mini_unroll,
                format!("must be between 1 and the target ({})", self.target),
            ));
        }
        for (field, p) in [("p_image", self.p_image), ("p_state", self.p_state)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SchedError::invalid(field, p, "must lie in [0, 1]"));
            }
        }
        Ok(())
    }

    /// CA steps per optimizer step: `K`, or `T` for the full unroll.
    pub fn unroll(&self) -> usize {
        self.unroll_for(self.full_unroll)
    }

    /// CA steps of an optimizer step that is (or is not) a full unroll.
    pub fn unroll_for(&self, full_unroll: bool) -> usize {
        if full_unroll {
            self.target
        } else {
            self.mini_unroll
        }
    }

    /// `T0 = T / 3` (integer division): the first age at which the loss counts.
    pub fn loss_start(&self) -> usize {
        self.target / 3
    }

    /// Per-mini-unroll reset probability of the image, see [`reset_probability`].
    pub fn image_reset_prob(&self) -> f64 {
        self.reset_prob(self.p_image)
    }

    /// Per-mini-unroll reset probability of the state, see [`reset_probability`].
    pub fn state_reset_prob(&self) -> f64 {
        self.reset_prob(self.p_state)
    }

    fn reset_prob(&self, p: f64) -> f64 {
        if self.full_unroll {
            1.0
        } else {
            reset_probability(p, self.mini_unroll, self.target)
        }
    }
}

/// The full-unroll curriculum (flat in a stored [`crate::TrainConfig`]):
/// the run's first part trains with fresh states and images unrolled `T`
/// steps, the pool after it. `Default`: none.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
// Fields missing from an older stored config take the defaults.
#[serde(default)]
pub struct CurriculumConfig {
    /// The fraction of the run's progress trained in full-unroll mode
    /// before the pool phase, in [0, 1].
    pub full_unroll_fraction: f64,
}

impl CurriculumConfig {
    /// Checks the fraction; the error names `full_unroll_fraction`.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.full_unroll_fraction) {
            return Err(SchedError::invalid(
                "full_unroll_fraction",
                self.full_unroll_fraction,
                "must lie in [0, 1]",
            ));
        }
        Ok(())
    }

    /// Whether run progress `progress` (in [0, 1]) is still in the
    /// full-unroll part.
    pub fn full_unroll_at(&self, progress: f64) -> bool {
        progress < self.full_unroll_fraction
    }
}

/// The per-mini-unroll reset probability `r = 1 - (1 - p)^(K/T)`: with
/// independent resets after each of the `T / K` mini-unrolls that make up
/// the target, the chance of at least one reset is `1 - (1 - r)^(T/K) = p`.
/// (The paper writes `p^(K/T)`: the same rule read as the chance of keeping.)
pub fn reset_probability(p: f64, mini_unroll: usize, target: usize) -> f64 {
    1.0 - (1.0 - p).powf(mini_unroll as f64 / target as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_probability_composes_to_p_over_the_target() {
        for (p, k, t) in [(0.5, 10, 40), (0.3, 5, 40), (0.9, 1, 7), (0.5, 40, 40)] {
            let r = reset_probability(p, k, t);
            let within_target = 1.0 - (1.0 - r).powf(t as f64 / k as f64);
            assert!((within_target - p).abs() < 1e-12);
        }
        assert!((reset_probability(0.5, 10, 40) - 0.159_103_584).abs() < 1e-8);
    }

    #[test]
    fn curriculum_is_full_unroll_for_its_fraction() {
        let c = CurriculumConfig {
            full_unroll_fraction: 0.25,
        };
        assert!(c.full_unroll_at(0.0) && c.full_unroll_at(0.24));
        assert!(!c.full_unroll_at(0.25) && !c.full_unroll_at(1.0));
        let u = UnrollConfig::default();
        assert_eq!(u.unroll_for(true), u.target);
        assert_eq!(u.unroll_for(false), u.mini_unroll);
        assert_eq!(u.loss_start(), 13);
    }
}
