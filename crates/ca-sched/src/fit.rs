//! [`Fit`]: what a [`crate::Learner`] drives, one optimizer step at a
//! time. The colony's [`Trainer`] is one; the U-Net baseline's
//! [`crate::UNetTrainer`] another, so that both train under the same
//! budgets, validation, best-model file and metrics.

use std::path::Path;

use ca_model::{save_model_noted, IouTable, Trainable};

use crate::config::TrainConfig;
use crate::error::Result;
use crate::eval::evaluate_iou;
use crate::model::TrainData;
use crate::trainer::{StepReport, TimeSpent, Trainer};

/// A model under training with its optimizer state: what
/// [`crate::Learner`] needs to run, measure and save it.
pub trait Fit {
    /// One optimizer step on `data`.
    fn train_step(&mut self, data: &dyn TrainData) -> Result<StepReport>;

    /// Optimizer steps taken.
    fn step_count(&self) -> u64;

    /// The training schedule.
    fn config(&self) -> &TrainConfig;

    /// Sets the run's progress in [0, 1], which the learning-rate schedule
    /// reads (see [`Trainer::set_progress`]).
    fn set_progress(&mut self, progress: f64);

    /// The time the run has trained so far, a resumed run's earlier
    /// processes included.
    fn time_spent(&self) -> TimeSpent;

    /// Records the time the run has trained so far.
    fn set_time_spent(&mut self, spent: TimeSpent);

    /// The IoU of the evaluation weights (the moving average where the run
    /// keeps one) on every sample of `data` after each of `steps` CA steps,
    /// in chunks of `batch`, seeded by `seed`. A model without steps (the
    /// U-Net) gives its one prediction's IoU at every step.
    fn evaluate(
        &self,
        data: &dyn TrainData,
        steps: &[usize],
        batch: usize,
        seed: u64,
    ) -> Result<IouTable>;

    /// Writes the resumable training state to `path` atomically.
    fn save_checkpoint(&self, path: &Path) -> Result<()>;

    /// Writes the evaluation weights as a model file with its training
    /// image size in pixels and extra metadata `notes` (keys `ca.`).
    fn save_model(&self, path: &Path, image_size: usize, notes: &[(String, String)]) -> Result<()>;

    /// The mean of the reset gate over a batch of `data`, for models that
    /// have one; `None` otherwise.
    fn reset_gate_mean(&mut self, data: &dyn TrainData) -> Result<Option<f32>> {
        let _ = data;
        Ok(None)
    }
}

impl<M: Trainable> Fit for Trainer<M> {
    fn train_step(&mut self, data: &dyn TrainData) -> Result<StepReport> {
        Trainer::train_step(self, data)
    }

    fn step_count(&self) -> u64 {
        Trainer::step_count(self)
    }

    fn config(&self) -> &TrainConfig {
        Trainer::config(self)
    }

    fn set_progress(&mut self, progress: f64) {
        Trainer::set_progress(self, progress)
    }

    fn time_spent(&self) -> TimeSpent {
        Trainer::time_spent(self)
    }

    fn set_time_spent(&mut self, spent: TimeSpent) {
        Trainer::set_time_spent(self, spent)
    }

    fn evaluate(
        &self,
        data: &dyn TrainData,
        steps: &[usize],
        batch: usize,
        seed: u64,
    ) -> Result<IouTable> {
        self.with_eval_weights(|m| evaluate_iou(m, data, steps, batch, seed))
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        Trainer::save_checkpoint(self, path)
    }

    fn save_model(&self, path: &Path, image_size: usize, notes: &[(String, String)]) -> Result<()> {
        self.with_eval_weights(|m| Ok(save_model_noted(m, path, image_size, notes.to_vec())?))
    }

    fn reset_gate_mean(&mut self, data: &dyn TrainData) -> Result<Option<f32>> {
        Trainer::reset_gate_mean(self, data)
    }
}
