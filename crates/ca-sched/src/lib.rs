//! # ca-sched: training a segmentation cellular automaton
//!
//! The part that makes the automaton learn (Sandler et al. 2020, sections
//! 3.1, 3.2 and 5): a pool of slots keeps images and states across
//! optimizer steps; each step runs a mini-unroll of `K` CA steps on a batch
//! of slots and back-propagates through those `K` only; the loss is the
//! per-pixel cross-entropy at the steps where a slot is at least `T0 = T/3`
//! steps old; after each mini-unroll every slot resets its image and its
//! state with probabilities chosen so that, within the target `T`, each is
//! reset at least once with probability `p_i` (resp. `p_s`).
//!
//! The model and the data come in through the [`ca_model::Trainable`] (a
//! [`ca_core::CellModel`] with tensors to train and metadata to save) and
//! [`TrainData`] traits; [`ca_core::CellRule`] and
//! [`ca_hires::HiresModel`] are `Trainable`, and
//! [`ca_model::load_model`] reads a model file of either kind.
#![warn(missing_docs)]

mod adam;
mod checkpoint;
mod config;
mod cpu_time;
mod ema;
mod error;
mod eval;
mod filters;
mod fit;
mod learner;
mod loss;
mod model;
mod pixel_ce;
mod pool;
mod schedule;
mod trainer;
mod unet;
mod unroll;

pub use adam::{Adam, AdamConfig, GradNorm};
pub use checkpoint::{
    checkpoint_metadata, checkpoint_schedule, config_conflicts, ConfigConflict, TRAIN_STATE_KEY,
};
pub use config::{InitConfig, StageConfig, TrainConfig};
pub use cpu_time::process_cpu_seconds;
pub use ema::Ema;
pub use error::{Result, SchedError};
pub use eval::{
    accumulate, evaluate_iou, iou_over_time, iou_over_time_ensemble, majority_mean_iou, predict,
    Frame, IouCounts,
};
pub use filters::{FixedFilters, FILTER_NAMES};
pub use fit::Fit;
pub use learner::{
    final_eval_steps, periodic_eval_steps, validation_score, FinalEvaluation, FinalTable,
    FitSummary, Learner, LearnerConfig, StepEvent, Stop,
};
pub use loss::{per_sample_cross_entropy, soft_dice_loss, LossConfig, LossTargets};
pub use model::TrainData;
pub use pool::{Pool, ResetCounts, Slot};
pub use schedule::{LrSchedule, LrScheduleConfig};
pub use trainer::{StepReport, TimeSpent, Trainer};
pub use unet::{unet_iou, UNetTrainer};
pub use unroll::{reset_probability, CurriculumConfig, UnrollConfig};
