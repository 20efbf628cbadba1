//! Training hyper-parameters: a plain struct of the five jobs of a run's
//! settings (the unroll and pool schedule, the curriculum, the optimizer,
//! its learning-rate schedule, the loss) plus the initialisation and the
//! weight average, whose `Default` follows the paper (section 5):
//! mini-unroll 10, target 40, reset probabilities 0.5, Adam with learning
//! rate 3e-4, batch 32, plain cross-entropy, constant learning rate, no
//! weight average. The recipe levers of "a rule that segments" (class
//! weights, a Dice term, a zero-initialised update layer, a learning-rate
//! schedule, an EMA of the weights, a full-unroll curriculum) default to
//! off.
//!
//! Stored (checkpoints, model metadata) as one flat JSON object: the parts
//! are `#[serde(flatten)]`, so the keys are the fields' own names and a
//! config stored before the split reads unchanged.

use ca_core::ErrorShapes;
use serde::{Deserialize, Serialize};

use crate::adam::AdamConfig;
use crate::error::{Result, SchedError};
use crate::loss::LossConfig;
use crate::schedule::{LrSchedule, LrScheduleConfig};
use crate::unroll::{CurriculumConfig, UnrollConfig};

/// What [`crate::Trainer::new`] does to a fresh model's weights before the
/// first step (flat in a stored [`TrainConfig`]). `Default`: nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
// Fields missing from an older stored config take the defaults.
#[serde(default)]
pub struct InitConfig {
    /// Set the update layer (`update.*`) to zero, so that a fresh rule
    /// starts from "no change".
    pub zero_update_init: bool,
    /// The reset gate's initial bias; `None` keeps the rule's own
    /// ([`ca_core::RESET_BIAS_INIT`]).
    pub reset_bias_init: Option<f64>,
    /// Factors on the perception layer's initial weights that read the
    /// state (`[0]`) and the image (`[1]`) (the first layer: `perceive` of
    /// a 3x3 rule, `pointwise` of a depthwise one); `[1, 1]` keeps the
    /// rule's own.
    pub perception_init_scale: [f64; 2],
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            zero_update_init: false,
            reset_bias_init: None,
            perception_init_scale: [1.0, 1.0],
        }
    }
}

impl InitConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<()> {
        if let Some(b) = self.reset_bias_init {
            if !b.is_finite() {
                return Err(SchedError::invalid("reset_bias_init", b, "must be finite"));
            }
        }
        let [state_scale, image_scale] = self.perception_init_scale;
        if !(state_scale.is_finite()
            && image_scale.is_finite()
            && state_scale >= 0.0
            && image_scale >= 0.0)
        {
            return Err(SchedError::invalid(
                "perception_init_scale",
                format!("{state_scale},{image_scale}"),
                "both factors must be finite and at least 0",
            ));
        }
        Ok(())
    }
}

/// The training settings, one part per job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Fields missing from an older checkpoint's stored config take the paper's
// values (every lever off), so old runs resume as they were.
#[serde(default)]
pub struct TrainConfig {
    /// Batch, pool, `K`, `T` and the reset probabilities.
    #[serde(flatten)]
    pub unroll: UnrollConfig,
    /// The full-unroll part before the pool phase.
    #[serde(flatten)]
    pub curriculum: CurriculumConfig,
    /// Adam: the base learning rate, betas, epsilon, gradient treatment.
    #[serde(flatten)]
    pub optimizer: AdamConfig,
    /// The factor on the base rate over the run (see
    /// [`crate::Trainer::set_progress`]).
    #[serde(flatten)]
    pub lr_schedule: LrScheduleConfig,
    /// Class weights and the Dice term.
    #[serde(flatten)]
    pub loss: LossConfig,
    /// What is done to a fresh model's weights before the first step.
    #[serde(flatten)]
    pub init: InitConfig,
    /// Factor on the learning rate of the perception layer's parameters
    /// (`perceive.*`, or `depthwise.*` and `pointwise.*`); 1: the same rate
    /// as the rest.
    pub perception_lr_scale: f64,
    /// Growing NCA's fixed identity, Sobel and Laplacian filters of every
    /// input channel beside the learned 3x3 perception, mixed in by a
    /// learned `[H, C, 4]` (see [`crate::FixedFilters`]); conv3x3 rules
    /// only. The saved rule is a plain conv3x3 one (the mix folded in).
    pub fixed_filters: bool,
    /// Decay of an exponential moving average of the trainable weights,
    /// used for evaluation and saved models; `None`: no average. The
    /// effective decay of update `n` is `min(decay, (1 + n) / (10 + n))`,
    /// so that a short run's average is not dominated by its start.
    pub ema_decay: Option<f64>,
    /// Non-finite losses in a row after which training stops.
    pub max_bad_steps: usize,
    /// Seed of every random draw of training.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            unroll: UnrollConfig::default(),
            curriculum: CurriculumConfig::default(),
            optimizer: AdamConfig::default(),
            lr_schedule: LrScheduleConfig::default(),
            loss: LossConfig::default(),
            init: InitConfig::default(),
            perception_lr_scale: 1.0,
            fixed_filters: false,
            ema_decay: None,
            max_bad_steps: 5,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// The paper's settings (its appendix): batch and pool 32, `K` 10,
    /// `T` 40, Adam at a constant 3e-4, the plain cross-entropy, the
    /// rule's own initialisation, no weight average. The same as
    /// [`TrainConfig::default`]; `train --paper` trains with it.
    pub fn paper() -> Self {
        TrainConfig::default()
    }

    /// The project's recipe, what `train` uses without flags on real data
    /// (chosen on validation, `docs/RESULTS.md`): batch and pool 8, `K`
    /// 10, `T` 40, Adam at 2e-3 with a 20-step warm-up and a cosine to 5%
    /// over the budget, class weights 0.7 / 1 / 3 plus a soft Dice term,
    /// the update layer started at zero, the fixed identity / Sobel /
    /// Laplacian filters beside the learned perception (conv3x3 rules; a
    /// depthwise rule needs `fixed_filters: false`), and a moving average
    /// of the weights (0.99) for evaluation and saved models.
    pub fn recipe() -> Self {
        TrainConfig {
            unroll: UnrollConfig {
                batch: 8,
                pool_size: 8,
                ..UnrollConfig::default()
            },
            optimizer: AdamConfig {
                learning_rate: 2e-3,
                ..AdamConfig::default()
            },
            lr_schedule: LrScheduleConfig {
                shape: LrSchedule::Cosine,
                warmup_steps: 20,
                floor: 0.05,
            },
            loss: LossConfig {
                class_weights: Some(vec![0.7, 1.0, 3.0]),
                dice_weight: 1.0,
            },
            init: InitConfig {
                zero_update_init: true,
                ..InitConfig::default()
            },
            fixed_filters: true,
            ema_decay: Some(0.99),
            ..TrainConfig::default()
        }
    }
}

/// What a later stage of a run may change (paper Fig. 7b trains with the
/// mini-unroll as long as the target; [`crate::Learner::next_stage`]): the
/// mini-unroll `K`, the base learning rate and its schedule. The model,
/// the pool, Adam's moments, the loss and the weight average go on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageConfig {
    /// `K`: CA steps per optimizer step (at most the target `T`).
    pub mini_unroll: usize,
    /// Adam's base learning rate.
    pub learning_rate: f64,
    /// The schedule's factor on it over the stage's budget (the warm-up
    /// counts the run's optimizer steps, so a later stage has none).
    pub lr_schedule: LrScheduleConfig,
}

impl TrainConfig {
    /// The settings a stage may change, as they are now.
    pub fn stage(&self) -> StageConfig {
        StageConfig {
            mini_unroll: self.unroll.mini_unroll,
            learning_rate: self.optimizer.learning_rate,
            lr_schedule: self.lr_schedule,
        }
    }

    /// These settings with `stage`'s, checked: the error names the field.
    pub fn with_stage(&self, stage: &StageConfig) -> Result<TrainConfig> {
        let config = TrainConfig {
            unroll: UnrollConfig {
                mini_unroll: stage.mini_unroll,
                ..self.unroll
            },
            optimizer: AdamConfig {
                learning_rate: stage.learning_rate,
                ..self.optimizer
            },
            lr_schedule: stage.lr_schedule,
            ..self.clone()
        };
        config.validate()?;
        Ok(config)
    }
}

impl TrainConfig {
    /// Checks every field, part by part; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.unroll.validate()?;
        self.curriculum.validate()?;
        self.optimizer.validate()?;
        self.lr_schedule.validate()?;
        self.loss.validate()?;
        self.init.validate()?;
        if self.max_bad_steps == 0 {
            return Err(SchedError::invalid(
                "max_bad_steps",
                0,
                "must be at least 1",
            ));
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return Err(SchedError::invalid("ema_decay", d, "must lie in [0, 1)"));
            }
        }
        if !(self.perception_lr_scale > 0.0 && self.perception_lr_scale.is_finite()) {
            return Err(SchedError::invalid(
                "perception_lr_scale",
                self.perception_lr_scale,
                "must be positive and finite",
            ));
        }
        Ok(())
    }

    /// Whether an optimizer step at run progress `progress` (in [0, 1])
    /// is a full unroll: always in `full_unroll` mode, and during the
    /// curriculum's first part of the run.
    pub fn full_unroll_at(&self, progress: f64) -> bool {
        self.unroll.full_unroll || self.curriculum.full_unroll_at(progress)
    }

    /// The learning rate of optimizer step `step` (0-based) at run progress
    /// `progress` in [0, 1]: the optimizer's base rate times the schedule's
    /// factor.
    pub fn learning_rate_at(&self, step: u64, progress: f64) -> f64 {
        self.optimizer.learning_rate * self.lr_schedule.factor(step, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::GradNorm;
    use crate::schedule::LrSchedule;

    #[test]
    fn defaults_follow_the_paper_and_validate() {
        let c = TrainConfig::default();
        let u = c.unroll;
        assert_eq!((u.mini_unroll, u.target, u.batch), (10, 40, 32));
        assert_eq!((u.p_image, u.p_state), (0.5, 0.5));
        assert_eq!(c.optimizer.learning_rate, 3e-4);
        assert_eq!(u.loss_start(), 13);
        c.validate().unwrap();
    }

    #[test]
    fn nonsense_is_rejected_with_the_field_named() {
        let bad = |f: fn(&mut TrainConfig), field: &str| {
            let mut c = TrainConfig::default();
            f(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(field), "{msg}");
        };
        bad(|c| c.unroll.batch = 0, "batch");
        bad(|c| c.unroll.mini_unroll = 41, "mini_unroll");
        bad(|c| c.unroll.mini_unroll = 0, "mini_unroll");
        bad(|c| c.unroll.target = 0, "target");
        bad(|c| c.unroll.pool_size = 3, "pool_size");
        bad(|c| c.unroll.p_state = 1.5, "p_state");
        bad(|c| c.optimizer.learning_rate = -1.0, "learning_rate");
        bad(|c| c.optimizer.grad_norm = GradNorm::Clip(0.0), "grad_norm");
        bad(
            |c| c.loss.class_weights = Some(vec![1.0, -1.0, 3.0]),
            "class_weights",
        );
        bad(
            |c| c.loss.class_weights = Some(vec![0.0, 0.0, 0.0]),
            "class_weights",
        );
        bad(|c| c.loss.dice_weight = f64::NAN, "dice_weight");
        bad(|c| c.lr_schedule.floor = 1.5, "lr_floor");
        bad(
            |c| c.lr_schedule.shape = LrSchedule::Step { drops: 0 },
            "lr_schedule",
        );
        bad(|c| c.ema_decay = Some(1.0), "ema_decay");
        bad(
            |c| c.curriculum.full_unroll_fraction = -0.1,
            "full_unroll_fraction",
        );
        bad(
            |c| c.init.perception_init_scale = [1.0, -1.0],
            "perception_init_scale",
        );
        bad(
            |c| c.init.perception_init_scale = [f64::NAN, 1.0],
            "perception_init_scale",
        );
        bad(|c| c.perception_lr_scale = 0.0, "perception_lr_scale");
        bad(
            |c| c.init.reset_bias_init = Some(f64::INFINITY),
            "reset_bias_init",
        );
        bad(|c| c.max_bad_steps = 0, "max_bad_steps");
    }

    #[test]
    fn the_rate_is_the_base_rate_times_the_schedule() {
        let c = TrainConfig {
            optimizer: AdamConfig {
                learning_rate: 2e-3,
                ..AdamConfig::default()
            },
            lr_schedule: LrScheduleConfig {
                shape: LrSchedule::Cosine,
                warmup_steps: 0,
                floor: 0.05,
            },
            ..TrainConfig::default()
        };
        assert!((c.learning_rate_at(100, 0.0) - 2e-3).abs() < 1e-15);
        assert!((c.learning_rate_at(100, 1.0) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn curriculum_and_full_unroll_combine() {
        let mut c = TrainConfig::default();
        c.curriculum.full_unroll_fraction = 0.25;
        assert!(c.full_unroll_at(0.1) && !c.full_unroll_at(0.5));
        c.unroll.full_unroll = true;
        assert!(c.full_unroll_at(0.5));
    }

    /// The keys a config was stored with before the split into parts
    /// (checkpoints of earlier runs hold them, flat).
    const FLAT_KEYS: [&str; 26] = [
        "batch",
        "pool_size",
        "mini_unroll",
        "target",
        "p_image",
        "p_state",
        "full_unroll",
        "learning_rate",
        "beta1",
        "beta2",
        "epsilon",
        "grad_norm",
        "max_bad_steps",
        "seed",
        "class_weights",
        "dice_weight",
        "zero_update_init",
        "reset_bias_init",
        "lr_schedule",
        "warmup_steps",
        "lr_floor",
        "ema_decay",
        "full_unroll_fraction",
        "perception_init_scale",
        "perception_lr_scale",
        "fixed_filters",
    ];

    #[test]
    fn it_is_stored_flat_with_the_keys_of_before_the_split() {
        let stored = serde_json::to_value(TrainConfig::default()).unwrap();
        let mut keys: Vec<&str> = stored
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        let mut expected = FLAT_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_config_stored_before_the_split_reads_field_by_field() {
        // Written as the pre-split struct wrote it (one flat object).
        let old = r#"{"batch":8,"pool_size":16,"mini_unroll":10,"target":40,"p_image":0.5,
            "p_state":0.5,"full_unroll":false,"learning_rate":0.002,"beta1":0.9,"beta2":0.999,
            "epsilon":1e-8,"grad_norm":"per_tensor","max_bad_steps":5,"seed":3,
            "class_weights":[0.7,1.0,3.0],"dice_weight":1.0,"zero_update_init":true,
            "reset_bias_init":null,"lr_schedule":"cosine","warmup_steps":20,"lr_floor":0.05,
            "ema_decay":0.99,"full_unroll_fraction":0.0,"perception_init_scale":[1.0,1.0],
            "perception_lr_scale":1.0,"fixed_filters":true}"#;
        let c: TrainConfig = serde_json::from_str(old).unwrap();
        assert_eq!((c.unroll.batch, c.unroll.pool_size, c.seed), (8, 16, 3));
        assert_eq!(c.optimizer.learning_rate, 0.002);
        assert_eq!(c.lr_schedule.shape, LrSchedule::Cosine);
        assert_eq!(
            (c.lr_schedule.warmup_steps, c.lr_schedule.floor),
            (20, 0.05)
        );
        assert_eq!(c.loss.class_weights, Some(vec![0.7, 1.0, 3.0]));
        assert!(c.init.zero_update_init && c.fixed_filters);
        assert_eq!(c.ema_decay, Some(0.99));
        let again: TrainConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
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
