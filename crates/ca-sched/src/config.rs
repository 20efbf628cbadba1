//! Training hyper-parameters: a plain struct whose `Default` follows the
//! paper (section 5): mini-unroll 10, target 40, reset probabilities 0.5,
//! Adam with learning rate 3e-4, batch 32, plain cross-entropy, constant
//! learning rate, no weight average. The recipe levers of "a rule that
//! segments" (class weights, a Dice term, a zero-initialised update layer,
//! a learning-rate schedule, an EMA of the weights, a full-unroll
//! curriculum) are fields that default to off.

use serde::{Deserialize, Serialize};

use crate::adam::AdamConfig;
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

impl std::str::FromStr for GradNorm {
    type Err = String;
    /// `none`, `per-tensor` or `clip:MAX` (the norm is checked by
    /// [`TrainConfig::validate`]).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(GradNorm::None),
            "per-tensor" => Ok(GradNorm::PerTensor),
            _ => match s.strip_prefix("clip:").map(str::parse::<f64>) {
                Some(Ok(c)) => Ok(GradNorm::Clip(c)),
                _ => Err(format!(
                    "unknown gradient treatment '{s}' (none, per-tensor or clip:MAX)"
                )),
            },
        }
    }
}

/// How the learning rate moves over a run, after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Half a cosine from the base rate at progress 0 to `lr_floor` times
    /// it at progress 1.
    Cosine,
    /// Piecewise constant: `drops` equal drops (geometric) at progress
    /// `1/(drops+1), 2/(drops+1), ...`, the last one reaching `lr_floor`.
    Step {
        /// Number of drops (at least 1).
        drops: u32,
    },
}

impl std::str::FromStr for LrSchedule {
    type Err = String;
    /// `constant`, `cosine` or `step:N` (`N` is checked by
    /// [`TrainConfig::validate`]).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "constant" => Ok(LrSchedule::Constant),
            "cosine" => Ok(LrSchedule::Cosine),
            _ => match s.strip_prefix("step:").map(str::parse::<u32>) {
                Some(Ok(drops)) => Ok(LrSchedule::Step { drops }),
                _ => Err(format!(
                    "unknown schedule '{s}' (constant, cosine or step:N)"
                )),
            },
        }
    }
}

/// The training schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Fields missing from an older checkpoint's stored config take the paper's
// values (every lever off), so old runs resume as they were.
#[serde(default)]
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
    /// Weights of the classes `[background, object, boundary]` in the
    /// cross-entropy (a weighted mean over the pixels); `None`: all 1.
    pub class_weights: Option<Vec<f64>>,
    /// Weight of the soft Dice term (`1 - Dice` of the softmax against the
    /// one-hot labels, averaged over the classes) added to the
    /// cross-entropy; 0 leaves it out.
    pub dice_weight: f64,
    /// Whether [`crate::Trainer::new`] sets the update layer (`update.*`)
    /// to zero, so that a fresh rule starts from "no change".
    pub zero_update_init: bool,
    /// The reset gate's initial bias set by [`crate::Trainer::new`]; `None`
    /// keeps the rule's own ([`ca_core::RESET_BIAS_INIT`]).
    pub reset_bias_init: Option<f64>,
    /// The learning-rate schedule over the run's progress (see
    /// [`crate::Trainer::set_progress`]).
    pub lr_schedule: LrSchedule,
    /// Optimizer steps of linear warm-up from `learning_rate / warmup_steps`
    /// to the scheduled rate; 0: none.
    pub warmup_steps: u64,
    /// The scheduled rate at the end of the run, as a fraction of
    /// `learning_rate`, in [0, 1].
    pub lr_floor: f64,
    /// Decay of an exponential moving average of the trainable weights,
    /// used for evaluation and saved models; `None`: no average. The
    /// effective decay of update `n` is `min(decay, (1 + n) / (10 + n))`,
    /// so that a short run's average is not dominated by its start.
    pub ema_decay: Option<f64>,
    /// Curriculum: the fraction of the run's progress trained in full-unroll
    /// mode (fresh states and images, unroll `T`) before the pool phase.
    pub full_unroll_fraction: f64,
    /// Factors on the perception layer's initial weights that read the
    /// state (`[0]`) and the image (`[1]`), applied by
    /// [`crate::Trainer::new`] (the first layer: `perceive` of a 3x3 rule,
    /// `pointwise` of a depthwise one); `[1, 1]` keeps the rule's own.
    pub perception_init_scale: [f64; 2],
    /// Factor on the learning rate of the perception layer's parameters
    /// (`perceive.*`, or `depthwise.*` and `pointwise.*`); 1: the same rate
    /// as the rest.
    pub perception_lr_scale: f64,
    /// Growing NCA's fixed identity, Sobel and Laplacian filters of every
    /// input channel beside the learned 3x3 perception, mixed in by a
    /// learned `[H, C, 4]` (see [`crate::FixedFilters`]); conv3x3 rules
    /// only. The saved rule is a plain conv3x3 one (the mix folded in).
    pub fixed_filters: bool,
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
            class_weights: None,
            dice_weight: 0.0,
            zero_update_init: false,
            reset_bias_init: None,
            lr_schedule: LrSchedule::Constant,
            warmup_steps: 0,
            lr_floor: 1.0,
            ema_decay: None,
            full_unroll_fraction: 0.0,
            perception_init_scale: [1.0, 1.0],
            perception_lr_scale: 1.0,
            fixed_filters: false,
        }
    }
}

fn invalid(field: &'static str, value: impl ToString, reason: &str) -> SchedError {
    SchedError::InvalidConfig(ca_core::InvalidValue {
        name: field,
        value: value.to_string(),
        reason: reason.to_string(),
    })
}

impl TrainConfig {
    /// The optimizer's settings: the learning rate before its schedule, the
    /// betas, epsilon and the gradient treatment.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            learning_rate: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: self.epsilon,
            grad_norm: self.grad_norm,
        }
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.validate_pool_and_unroll()?;
        self.validate_optimizer()?;
        self.validate_loss_and_init()
    }

    /// Batch, pool, target, unroll lengths and reset probabilities.
    fn validate_pool_and_unroll(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(invalid("batch", self.batch, "must be at least 1"));
        }
        if self.pool_size < self.batch {
            return Err(invalid(
                "pool_size",
                self.pool_size,
                &format!("must be at least the batch size ({})", self.batch),
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
        if !(0.0..=1.0).contains(&self.full_unroll_fraction) {
            return Err(invalid(
                "full_unroll_fraction",
                self.full_unroll_fraction,
                "must lie in [0, 1]",
            ));
        }
        Ok(())
    }

    /// Adam, gradient normalisation, the learning-rate schedule, the EMA
    /// and the perception's learning-rate factor.
    fn validate_optimizer(&self) -> Result<()> {
        self.adam().validate()?;
        if let GradNorm::Clip(c) = self.grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return Err(invalid(
                    "grad_norm",
                    format!("clip:{c}"),
                    "the clip norm must be positive",
                ));
            }
        }
        if self.max_bad_steps == 0 {
            return Err(invalid("max_bad_steps", 0, "must be at least 1"));
        }
        if let LrSchedule::Step { drops: 0 } = self.lr_schedule {
            return Err(invalid("lr_schedule", "step:0", "needs at least one drop"));
        }
        if !(0.0..=1.0).contains(&self.lr_floor) {
            return Err(invalid("lr_floor", self.lr_floor, "must lie in [0, 1]"));
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return Err(invalid("ema_decay", d, "must lie in [0, 1)"));
            }
        }
        if !(self.perception_lr_scale > 0.0 && self.perception_lr_scale.is_finite()) {
            return Err(invalid(
                "perception_lr_scale",
                self.perception_lr_scale,
                "must be positive and finite",
            ));
        }
        Ok(())
    }

    /// Class weights, the Dice weight and the initialisation factors.
    fn validate_loss_and_init(&self) -> Result<()> {
        if let Some(w) = &self.class_weights {
            if w.is_empty()
                || w.iter().any(|x| !(x.is_finite() && *x >= 0.0))
                || w.iter().all(|&x| x == 0.0)
            {
                return Err(invalid(
                    "class_weights",
                    format!("{w:?}"),
                    "must be finite, non-negative and not all zero",
                ));
            }
        }
        if !(self.dice_weight.is_finite() && self.dice_weight >= 0.0) {
            return Err(invalid(
                "dice_weight",
                self.dice_weight,
                "must be finite and non-negative",
            ));
        }
        if let Some(b) = self.reset_bias_init {
            if !b.is_finite() {
                return Err(invalid("reset_bias_init", b, "must be finite"));
            }
        }
        let [state_scale, image_scale] = self.perception_init_scale;
        if !(state_scale.is_finite()
            && image_scale.is_finite()
            && state_scale >= 0.0
            && image_scale >= 0.0)
        {
            return Err(invalid(
                "perception_init_scale",
                format!("{state_scale},{image_scale}"),
                "both factors must be finite and at least 0",
            ));
        }
        Ok(())
    }

    /// Whether an optimizer step at run progress `progress` (in [0, 1])
    /// is a full unroll: always in `full_unroll` mode, and during the
    /// curriculum's first `full_unroll_fraction` of the run.
    pub fn full_unroll_at(&self, progress: f64) -> bool {
        self.full_unroll || progress < self.full_unroll_fraction
    }

    /// The learning rate of optimizer step `step` (0-based) at run progress
    /// `progress` in [0, 1]: the warm-up ramp times the schedule's factor.
    pub fn learning_rate_at(&self, step: u64, progress: f64) -> f64 {
        let p = progress.clamp(0.0, 1.0);
        let floor = self.lr_floor;
        let factor = match self.lr_schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => {
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            LrSchedule::Step { drops } => {
                let passed = ((p * f64::from(drops + 1)).floor() as u32).min(drops);
                floor.powf(f64::from(passed) / f64::from(drops))
            }
        };
        let warm = if self.warmup_steps > 0 && step < self.warmup_steps {
            (step + 1) as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        self.learning_rate * factor * warm
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
        bad(
            |c| c.class_weights = Some(vec![1.0, -1.0, 3.0]),
            "class_weights",
        );
        bad(
            |c| c.class_weights = Some(vec![0.0, 0.0, 0.0]),
            "class_weights",
        );
        bad(|c| c.dice_weight = f64::NAN, "dice_weight");
        bad(|c| c.lr_floor = 1.5, "lr_floor");
        bad(
            |c| c.lr_schedule = LrSchedule::Step { drops: 0 },
            "lr_schedule",
        );
        bad(|c| c.ema_decay = Some(1.0), "ema_decay");
        bad(|c| c.full_unroll_fraction = -0.1, "full_unroll_fraction");
        bad(
            |c| c.perception_init_scale = [1.0, -1.0],
            "perception_init_scale",
        );
        bad(
            |c| c.perception_init_scale = [f64::NAN, 1.0],
            "perception_init_scale",
        );
        bad(|c| c.perception_lr_scale = 0.0, "perception_lr_scale");
        bad(
            |c| c.reset_bias_init = Some(f64::INFINITY),
            "reset_bias_init",
        );
    }

    #[test]
    fn schedules_start_at_the_rate_and_end_at_their_floor() {
        for schedule in [LrSchedule::Cosine, LrSchedule::Step { drops: 2 }] {
            let c = TrainConfig {
                learning_rate: 2e-3,
                lr_schedule: schedule,
                lr_floor: 0.05,
                ..TrainConfig::default()
            };
            assert!(
                (c.learning_rate_at(100, 0.0) - 2e-3).abs() < 1e-15,
                "{schedule:?}"
            );
            assert!(
                (c.learning_rate_at(100, 1.0) - 1e-4).abs() < 1e-12,
                "{schedule:?}"
            );
            // Never rises, never goes below the floor.
            let mut last = f64::INFINITY;
            for i in 0..=100 {
                let lr = c.learning_rate_at(100, i as f64 / 100.0);
                assert!(
                    lr <= last + 1e-18 && lr >= 1e-4 - 1e-12,
                    "{schedule:?} at {i}: {lr}"
                );
                last = lr;
            }
        }
        let step = TrainConfig {
            learning_rate: 1.0,
            lr_schedule: LrSchedule::Step { drops: 2 },
            lr_floor: 0.01,
            ..TrainConfig::default()
        };
        assert!((step.learning_rate_at(0, 0.5) - 0.1).abs() < 1e-12);
        let constant = TrainConfig::default();
        assert_eq!(constant.learning_rate_at(0, 1.0), constant.learning_rate);
    }

    #[test]
    fn warmup_ramps_linearly_to_the_rate() {
        let c = TrainConfig {
            learning_rate: 1.0,
            warmup_steps: 4,
            ..TrainConfig::default()
        };
        let ramp: Vec<f64> = (0..6).map(|s| c.learning_rate_at(s, 0.0)).collect();
        assert_eq!(ramp, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn curriculum_is_full_unroll_for_its_fraction() {
        let c = TrainConfig {
            full_unroll_fraction: 0.25,
            ..TrainConfig::default()
        };
        assert!(c.full_unroll_at(0.0) && c.full_unroll_at(0.24));
        assert!(!c.full_unroll_at(0.25) && !c.full_unroll_at(1.0));
        assert_eq!(c.unroll_for(true), c.target);
        assert_eq!(c.unroll_for(false), c.mini_unroll);
    }

    #[test]
    fn an_old_stored_config_reads_with_every_lever_off() {
        let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
        let map = old.as_object_mut().unwrap();
        for key in [
            "class_weights",
            "dice_weight",
            "ema_decay",
            "lr_schedule",
            "full_unroll_fraction",
        ] {
            map.remove(key);
        }
        let read: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(read, TrainConfig::default());
    }
}
