//! Training the U-Net baseline ([`ca_unet::UNet`]) under the same
//! [`crate::Learner`], data, augmentation, loss, optimizer, learning-rate
//! schedule and weight average as the colonies: [`UNetTrainer`], a
//! [`Fit`]. A step draws a batch of samples (each with a fresh
//! augmentation seed), runs the network in training mode (batch
//! statistics) and takes one Adam step on the class-weighted cross-entropy
//! plus the Dice term. The unroll settings (pool, `K`, `T`, resets) do not
//! apply; `T` only names the CA step the validation is reported at.

use std::path::Path;

use ca_core::{step_rng, ErrorShapes};
use ca_model::{save_unet, IouTable};
use ca_unet::UNet;
use candle_core::{DType, Tensor, Var};
use rand::seq::index::sample;
use rand::Rng;

use crate::adam::Adam;
use crate::config::TrainConfig;
use crate::ema::Ema;
use crate::error::{Result, SchedError};
use crate::eval::{evaluation_steps, predict, IouCounts};
use crate::fit::Fit;
use crate::loss::LossTargets;
use crate::model::TrainData;
use crate::pool::ResetCounts;
use crate::trainer::{all_finite, clamped_progress, StepReport, TimeSpent};

/// Salt of the generator of a U-Net step's samples and augmentation seeds.
const BATCH_SALT: u64 = 0x0E7_0001;

/// Trains a [`UNet`] with the optimizer, schedule, loss and weight average
/// of a [`TrainConfig`] (batch `unroll.batch`).
pub struct UNetTrainer {
    model: UNet,
    config: TrainConfig,
    adam: Adam,
    ema: Option<Ema>,
    num_samples: usize,
    step: u64,
    bad_streak: usize,
    progress: f64,
    time_spent: TimeSpent,
}

impl UNetTrainer {
    /// A trainer at step 0 over `num_samples` training samples. Refuses a
    /// config with `fixed_filters` (a colony's perception lever).
    pub fn new(model: UNet, config: TrainConfig, num_samples: usize) -> Result<Self> {
        config.validate()?;
        if config.fixed_filters {
            return Err(SchedError::invalid(
                "fixed_filters",
                true,
                "is a colony's perception lever; a U-Net trains without it",
            ));
        }
        if num_samples == 0 {
            return Err(SchedError::data("the training data has no samples"));
        }
        let vars: Vec<Var> = model
            .named_params()
            .into_iter()
            .filter(|p| p.trainable)
            .map(|p| p.var)
            .collect();
        let ema = config.ema_decay.map(|d| Ema::new(&vars, d)).transpose()?;
        let adam = Adam::new(vars, config.optimizer)?;
        Ok(UNetTrainer {
            model,
            config,
            adam,
            ema,
            num_samples,
            step: 0,
            bad_streak: 0,
            progress: 0.0,
            time_spent: TimeSpent::default(),
        })
    }

    /// The network (its trained weights, not the average).
    pub fn model(&self) -> &UNet {
        &self.model
    }

    /// Runs `f` with the evaluation weights in the model: the moving
    /// average where the config keeps one (the trained weights are put
    /// back afterwards).
    fn with_eval_weights<T>(&self, f: impl FnOnce(&UNet) -> Result<T>) -> Result<T> {
        match &self.ema {
            Some(ema) => ema.with_average(self.adam.vars(), || f(&self.model)),
            None => f(&self.model),
        }
    }

    /// `batch` distinct samples (with repeats only when there are fewer
    /// samples than that), each with its own augmentation seed, drawn from
    /// `(seed, step)`.
    fn draw_items(&self) -> Vec<(usize, u64)> {
        let mut rng = step_rng(self.config.seed ^ BATCH_SALT, self.step);
        let batch = self.config.unroll.batch;
        let ids: Vec<usize> = match self.num_samples >= batch {
            true => sample(&mut rng, self.num_samples, batch).into_vec(),
            false => (0..batch).map(|i| i % self.num_samples).collect(),
        };
        ids.into_iter().map(|i| (i, rng.random::<u64>())).collect()
    }
}

/// The intersection and union counts per class of `model`'s prediction
/// on every sample of `data` (augmentation seed 0), in chunks of `batch`,
/// with flip test-time augmentation when `flip` ([`UNet::probabilities`]).
pub fn unet_iou(model: &UNet, data: &dyn TrainData, batch: usize, flip: bool) -> Result<IouCounts> {
    if batch == 0 || data.is_empty() {
        return Err(SchedError::data(format!(
            "cannot evaluate {} samples in batches of {batch}",
            data.len()
        )));
    }
    let mut counts = IouCounts::new(model.config().classes);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch) {
        let items: Vec<(usize, u64)> = chunk.iter().map(|&i| (i, 0)).collect();
        let (images, labels) = data.batch(&items, model.device())?;
        let labels = labels
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let pred = predict(&model.probabilities(&images, flip)?)?;
        if pred.len() != labels.len() {
            return Err(SchedError::data(format!(
                "{} labels for {} predicted pixels",
                labels.len(),
                pred.len()
            )));
        }
        counts.add(&pred, &labels, labels.len() / chunk.len());
    }
    Ok(counts)
}

impl Fit for UNetTrainer {
    fn train_step(&mut self, data: &dyn TrainData) -> Result<StepReport> {
        let cfg = &self.config;
        let items = self.draw_items();
        let (images, labels) = data.batch(&items, self.model.device())?;
        let targets = LossTargets::new(
            &labels,
            self.model.config().classes,
            cfg.loss.class_weights.as_deref(),
            cfg.loss.dice_weight,
        )?;
        let logits = self.model.forward_train(&images)?;
        let loss = targets.per_sample_loss(&logits)?.mean_all()?;
        let value = loss.to_scalar::<f32>()?;
        let learning_rate = cfg.learning_rate_at(self.step, self.progress);
        let mut applied = false;
        if value.is_finite() {
            let grads = loss.backward()?;
            let per_var: Vec<Option<Tensor>> = self
                .adam
                .vars()
                .iter()
                .map(|v| grads.get(v.as_tensor()).cloned())
                .collect();
            if all_finite(&per_var)? {
                self.adam.step_grads(&per_var, learning_rate)?;
                if let Some(ema) = &mut self.ema {
                    ema.update(self.adam.vars())?;
                }
                applied = true;
            }
        }
        self.bad_streak = if applied { 0 } else { self.bad_streak + 1 };
        self.step += 1;
        if self.bad_streak >= self.config.max_bad_steps {
            return Err(SchedError::Diverged {
                count: self.bad_streak,
                step: self.step,
            });
        }
        Ok(StepReport {
            step: self.step,
            loss: Some(value),
            learning_rate,
            full_unroll: false,
            non_finite: !applied,
            resets: ResetCounts::default(),
        })
    }

    fn step_count(&self) -> u64 {
        self.step
    }

    fn config(&self) -> &TrainConfig {
        &self.config
    }

    fn set_progress(&mut self, progress: f64) {
        self.progress = clamped_progress(progress);
    }

    fn time_spent(&self) -> TimeSpent {
        self.time_spent
    }

    fn set_time_spent(&mut self, spent: TimeSpent) {
        self.time_spent = spent.finite();
    }

    /// The network's one prediction, its IoU repeated at every step of
    /// `steps` (a feed-forward network does not change with CA steps);
    /// `seed` is not used (no draws).
    fn evaluate(
        &self,
        data: &dyn TrainData,
        steps: &[usize],
        batch: usize,
        _seed: u64,
    ) -> Result<IouTable> {
        let steps = evaluation_steps(steps)?;
        let counts = self.with_eval_weights(|m| unet_iou(m, data, batch, false))?;
        Ok(IouTable {
            iou: vec![counts.iou(); steps.len()],
            stderr: vec![counts.stderr(); steps.len()],
            steps,
        })
    }

    /// Not kept: a U-Net run is short (its validation peaks within
    /// minutes) and is not resumed; the error says so.
    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        Err(SchedError::Checkpoint {
            path: path.to_path_buf(),
            reason: "U-Net runs write no resumable checkpoint; train them in one go".into(),
        })
    }

    fn save_model(&self, path: &Path, image_size: usize, notes: &[(String, String)]) -> Result<()> {
        self.with_eval_weights(|m| Ok(save_unet(m, path, image_size, notes.to_vec())?))
    }
}
