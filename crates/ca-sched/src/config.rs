//! Training hyper-parameters: a plain struct whose `Default` follows the
//! paper (section 5): mini-unroll 10, target 40, reset probabilities 0.5,
//! Adam with learning rate 3e-4, batch 32.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SchedError};

/// Optional treatment of each gradient before the Adam update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradNorm {
    /// Gradients as they are.
    None,
    /// Each tensor's gradient divided by its L2 norm (plus 1e-8), as in
    /// the neural-CA literature: every tensor moves at the pace Adam sets,
    /// whatever the scale of its gradient.
    PerTensor,
    /// Each tensor's gradient scaled down to at most this L2 norm.
    Clip(f64),
}

/// The training schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
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
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Adam `beta1`.
    pub beta1: f64,
    /// Adam `beta2`.
    pub beta2: f64,
    /// Adam `epsilon`.
    pub epsilon: f64,
    /// Gradient treatment before Adam.
    pub grad_norm: GradNorm,
    /// Non-finite losses in a row after which training stops.
    pub max_bad_steps: usize,
    /// Seed of every random draw of training.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch: 32,
            pool_size: 32,
            mini_unroll: 10,
            target: 40,
            p_image: 0.5,
            p_state: 0.5,
            full_unroll: false,
            learning_rate: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            grad_norm: GradNorm::PerTensor,
            max_bad_steps: 5,
            seed: 0,
        }
    }
}

fn invalid(field: &'static str, value: impl ToString, reason: &str) -> SchedError {
    SchedError::InvalidConfig {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl TrainConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(invalid("batch", self.batch, "must be at least 1"));
        }
        if self.pool_size < self.batch {
            return Err(invalid(
                "pool_size",
                self.pool_size,
                "must be at least the batch size",
            ));
        }
        if self.target == 0 {
            return Err(invalid("target", self.target, "must be at least 1"));
        }
        if !self.full_unroll && (self.mini_unroll == 0 || self.mini_unroll > self.target) {
            return Err(invalid(
                "mini_unroll",
                self.mini_unroll,
                &format!("must be between 1 and the target ({})", self.target),
            ));
        }
        for (field, p) in [("p_image", self.p_image), ("p_state", self.p_state)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(field, p, "must lie in [0, 1]"));
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(invalid(
                "learning_rate",
                self.learning_rate,
                "must be positive and finite",
            ));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(field, b, "must lie in [0, 1)"));
            }
        }
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(invalid("epsilon", self.epsilon, "must be positive"));
        }
        if let GradNorm::Clip(c) = self.grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return Err(invalid("grad_norm", c, "the clip norm must be positive"));
            }
        }
        if self.max_bad_steps == 0 {
            return Err(invalid("max_bad_steps", 0, "must be at least 1"));
        }
        Ok(())
    }

    /// CA steps per optimizer step: `K`, or `T` for the full unroll.
    pub fn unroll(&self) -> usize {
        if self.full_unroll {
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
        if self.full_unroll {
            1.0
        } else {
            reset_probability(self.p_image, self.mini_unroll, self.target)
        }
    }

    /// Per-mini-unroll reset probability of the state, see [`reset_probability`].
    pub fn state_reset_prob(&self) -> f64 {
        if self.full_unroll {
            1.0
        } else {
            reset_probability(self.p_state, self.mini_unroll, self.target)
        }
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
    fn defaults_follow_the_paper_and_validate() {
        let c = TrainConfig::default();
        assert_eq!((c.mini_unroll, c.target, c.batch), (10, 40, 32));
        assert_eq!((c.p_image, c.p_state, c.learning_rate), (0.5, 0.5, 3e-4));
        assert_eq!(c.loss_start(), 13);
        c.validate().unwrap();
    }

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
    fn nonsense_is_rejected_with_the_field_named() {
        let bad = |f: fn(&mut TrainConfig), field: &str| {
            let mut c = TrainConfig::default();
            f(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(field), "{msg}");
        };
        bad(|c| c.batch = 0, "batch");
        bad(|c| c.mini_unroll = 41, "mini_unroll");
        bad(|c| c.mini_unroll = 0, "mini_unroll");
        bad(|c| c.target = 0, "target");
        bad(|c| c.pool_size = 3, "pool_size");
        bad(|c| c.p_state = 1.5, "p_state");
        bad(|c| c.learning_rate = -1.0, "learning_rate");
        bad(|c| c.grad_norm = GradNorm::Clip(0.0), "grad_norm");
    }
}
