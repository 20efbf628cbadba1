//! [`Learner`]: the training loop around a [`Trainer`], in the spirit of
//! burn-train's: stop conditions (optimizer steps, wall time, CPU time),
//! the checkpoint and model-file cadence, periodic evaluation on a
//! validation set, a metrics sink and a per-step callback. A program that
//! trains (`train_pets`) builds one and prints what the callback reports.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ca_core::ErrorShapes;
use candle_core::{Device, Tensor};

use crate::config::{StageConfig, TrainConfig};
use crate::cpu_time::process_cpu_seconds;
use crate::error::{Result, SchedError};
use ca_model::{
    best_score, FinalRecord, IouByStep, IouTable, MetricsLog, StepRecord, Trainable,
    BEST_SCORE_KEY, BEST_STEP_KEY,
};

use crate::fit::Fit;
use crate::model::TrainData;
use crate::trainer::{StepReport, TimeSpent, Trainer};

/// How long to train, and what to do along the way.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerConfig {
    /// Stop after this many optimizer steps in all (a resumed run counts
    /// the steps it had).
    pub max_steps: u64,
    /// Stop once this much wall-clock time (minutes) has passed in this
    /// process.
    pub max_minutes: Option<f64>,
    /// Stop once this process has used this much CPU time (minutes, all
    /// threads): the fair budget on a shared machine.
    pub max_cpu_minutes: Option<f64>,
    /// Write the checkpoint and the model file every this many steps (and
    /// at the end); a skipped (non-finite) step writes nothing.
    pub checkpoint_every: u64,
    /// Evaluate on the validation data every this many steps (0: never).
    pub eval_every: u64,
    /// The CA steps the periodic evaluation reports.
    pub eval_steps: Vec<usize>,
    /// Samples of the validation data the periodic evaluation reads (the
    /// first ones).
    pub eval_samples: usize,
    /// Colonies per evaluation batch.
    pub eval_batch: usize,
    /// Seed of the evaluation's colonies.
    pub eval_seed: u64,
    /// Record the mean reset-gate value every this many steps (0: never).
    pub gate_every: u64,
    /// Class names, the keys of the IoU records (in class order).
    pub class_names: Vec<String>,
}

/// The CA steps the periodic validation reads for a colony trained to
/// `target` steps: 10, 20 and the target, ascending, each once.
pub fn periodic_eval_steps(target: usize) -> Vec<usize> {
    let mut steps = vec![10, 20, target];
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// The CA steps the final evaluation of a training reads: the periodic
/// ones and twice the target (is the colony still right past it?).
pub fn final_eval_steps(target: usize) -> Vec<usize> {
    let mut steps = periodic_eval_steps(target);
    steps.push(2 * target);
    steps.sort_unstable();
    steps.dedup();
    steps
}

impl LearnerConfig {
    /// How much of the budget `step` optimizer steps, `wall` seconds and
    /// `cpu` CPU seconds have used: the largest fraction of the step, time
    /// and CPU-time limits (what the learning-rate schedule follows), or
    /// the limit reached.
    fn budget_used(&self, step: u64, wall: f64, cpu: f64) -> std::result::Result<f64, Stop> {
        if step >= self.max_steps {
            return Err(Stop::Steps);
        }
        if self.max_minutes.is_some_and(|m| wall > m * 60.0) {
            return Err(Stop::WallTime);
        }
        if self.max_cpu_minutes.is_some_and(|m| cpu > m * 60.0) {
            return Err(Stop::CpuTime);
        }
        let mut progress = step as f64 / self.max_steps as f64;
        if let Some(m) = self.max_minutes {
            progress = progress.max(wall / (m * 60.0));
        }
        if let Some(m) = self.max_cpu_minutes {
            progress = progress.max(cpu / (m * 60.0));
        }
        Ok(progress)
    }
}

impl Default for LearnerConfig {
    /// 3,000 steps, no time limits, a checkpoint every 100 steps, an
    /// evaluation of 64 validation samples at CA steps 10, 20 and 40 every
    /// 500 steps (batch 32, seed 1), the reset gate every 25 steps, and the
    /// paper's three classes.
    fn default() -> Self {
        LearnerConfig {
            max_steps: 3000,
            max_minutes: None,
            max_cpu_minutes: None,
            checkpoint_every: 100,
            eval_every: 500,
            eval_steps: periodic_eval_steps(40),
            eval_samples: 64,
            eval_batch: 32,
            eval_seed: 1,
            gate_every: 25,
            class_names: ca_core::classes::class_names(),
        }
    }
}

impl LearnerConfig {
    /// Checks every field; the error names it and its value.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |field, value: String, reason: &str| Err(SchedError::invalid(field, value, reason));
        if self.max_steps == 0 {
            return invalid("max_steps", "0".into(), "must be at least 1");
        }
        for (field, m) in [
            ("max_minutes", self.max_minutes),
            ("max_cpu_minutes", self.max_cpu_minutes),
        ] {
            if let Some(m) = m {
                if !(m > 0.0 && m.is_finite()) {
                    return invalid(field, m.to_string(), "must be positive and finite");
                }
            }
        }
        if self.max_cpu_minutes.is_some() && process_cpu_seconds().is_none() {
            return invalid(
                "max_cpu_minutes",
                self.max_cpu_minutes.unwrap_or_default().to_string(),
                "this system does not report the process's CPU time (clock_gettime)",
            );
        }
        if self.checkpoint_every == 0 {
            return invalid("checkpoint_every", "0".into(), "must be at least 1");
        }
        if self.eval_every > 0 {
            if self.eval_steps.is_empty() || self.eval_steps.contains(&0) {
                return invalid(
                    "eval_steps",
                    format!("{:?}", self.eval_steps),
                    "give CA steps of at least 1",
                );
            }
            if self.eval_samples == 0 || self.eval_batch == 0 {
                return invalid(
                    "eval_samples",
                    format!("{} (batch {})", self.eval_samples, self.eval_batch),
                    "samples and batch must be at least 1",
                );
            }
        }
        Ok(())
    }
}

/// Why [`Learner::fit`] stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// [`LearnerConfig::max_steps`] optimizer steps were reached.
    Steps,
    /// The wall-clock budget ([`LearnerConfig::max_minutes`]) was spent.
    WallTime,
    /// The CPU budget ([`LearnerConfig::max_cpu_minutes`]) was spent.
    CpuTime,
}

/// What the per-step callback of [`Learner::fit`] sees.
#[derive(Debug)]
pub struct StepEvent<'a> {
    /// The trainer's report of the step.
    pub report: &'a StepReport,
    /// Wall-clock seconds the step took.
    pub seconds: f64,
    /// The validation IoU, when this step evaluated.
    pub validation: Option<&'a IouTable>,
    /// Whether this step wrote the checkpoint and the model file.
    pub checkpointed: bool,
    /// Whether this step's validation beat every earlier one of the run
    /// (and wrote the best-model file, where configured).
    pub best: bool,
}

/// What [`Learner::fit`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    /// Why it stopped.
    pub stop: Stop,
    /// Optimizer steps in all (a resumed run's earlier ones included).
    pub steps: u64,
    /// Wall-clock seconds of training in all (a resumed run's earlier
    /// ones included).
    pub seconds: f64,
    /// CPU seconds of training in all, a resumed run's earlier ones
    /// included (`NaN` where the system does not report it).
    pub cpu_seconds: f64,
}

/// The first `n` samples of a data set.
struct Prefix<'a>(&'a dyn TrainData, usize);

impl TrainData for Prefix<'_> {
    fn len(&self) -> usize {
        self.1.min(self.0.len())
    }

    fn batch(&self, items: &[(usize, u64)], device: &Device) -> Result<(Tensor, Tensor)> {
        self.0.batch(items, device)
    }
}

/// Trains a [`Trainable`] on a [`TrainData`] until a stop condition, with
/// checkpoints, a model file, periodic validation and metrics.
///
/// ```
/// # use ca_core::{CellConfig, CellRule};
/// # use ca_sched::{Learner, LearnerConfig, TrainConfig, TrainData, UnrollConfig};
/// # use candle_core::{Device, Tensor};
/// # struct Flat;
/// # impl TrainData for Flat {
/// #     fn len(&self) -> usize { 4 }
/// #     fn batch(&self, items: &[(usize, u64)], d: &Device) -> ca_sched::Result<(Tensor, Tensor)> {
/// #         let n = items.len();
/// #         Ok((Tensor::zeros((n, 3, 8, 8), candle_core::DType::F32, d)?,
/// #             Tensor::zeros((n, 8, 8), candle_core::DType::U32, d)?))
/// #     }
/// # }
/// # fn main() -> ca_sched::Result<()> {
/// let config = CellConfig { state_channels: 8, hidden_channels: 8, ..CellConfig::default() };
/// let rule = CellRule::new(config, 0, &Device::Cpu)?;
/// let unroll = UnrollConfig { batch: 2, pool_size: 4, target: 4, mini_unroll: 2, ..UnrollConfig::default() };
/// let schedule = TrainConfig { unroll, ..TrainConfig::default() };
/// let settings = LearnerConfig { max_steps: 3, eval_every: 0, ..LearnerConfig::default() };
/// let mut learner = Learner::new(rule, schedule, &Flat, settings)?;
/// let summary = learner.fit(|_| {})?;
/// assert_eq!(summary.steps, 3);
/// # Ok(())
/// # }
/// ```
pub struct Learner<'d, T: Fit> {
    trainer: T,
    train: &'d dyn TrainData,
    validation: Option<&'d dyn TrainData>,
    config: LearnerConfig,
    checkpoint: Option<PathBuf>,
    model_file: Option<(PathBuf, usize)>,
    best_file: Option<(PathBuf, usize)>,
    /// The best validation score of the run so far and its step.
    best: Option<(f64, u64)>,
    resumed: bool,
    metrics: Option<MetricsLog>,
}

impl<'d, M: Trainable> Learner<'d, Trainer<M>> {
    /// A fresh run of `model` under `schedule` on `train`.
    pub fn new(
        model: M,
        schedule: TrainConfig,
        train: &'d dyn TrainData,
        config: LearnerConfig,
    ) -> Result<Self> {
        let trainer = Trainer::new(model, schedule, train.len())?;
        Self::from_trainer(trainer, train, config)
    }

    /// The run saved in the training checkpoint at `checkpoint`, continued:
    /// `model` must have the saved model's architecture (e.g. from
    /// [`crate::model_from_metadata`] of [`crate::checkpoint_metadata`]).
    /// Later checkpoints go to the same file.
    pub fn resume(
        model: M,
        checkpoint: &Path,
        train: &'d dyn TrainData,
        config: LearnerConfig,
    ) -> Result<Self> {
        let trainer = Trainer::resume(model, checkpoint, train.len())?;
        let mut learner = Self::from_trainer(trainer, train, config)?.with_checkpoint(checkpoint);
        learner.resumed = true;
        Ok(learner)
    }

    /// A later stage of the same run (paper Fig. 7b: the mini-unroll as
    /// long as the target, the pool kept): the trainer goes on with
    /// `stage`'s mini-unroll and learning rate
    /// ([`Trainer::set_stage`]), and the time budgets and the schedule
    /// start over ([`Learner::restart_schedule`]). Checkpoints store the
    /// new settings, so a resumed stage stays one.
    pub fn next_stage(mut self, stage: &StageConfig) -> Result<Self> {
        self.trainer.set_stage(stage)?;
        Ok(self.restart_schedule())
    }
}

impl<'d, T: Fit> Learner<'d, T> {
    /// Around an existing trainer.
    pub fn from_trainer(
        trainer: T,
        train: &'d dyn TrainData,
        config: LearnerConfig,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Learner {
            trainer,
            train,
            validation: None,
            config,
            checkpoint: None,
            model_file: None,
            best_file: None,
            best: None,
            resumed: false,
            metrics: None,
        })
    }

    /// Evaluates on `data` every [`LearnerConfig::eval_every`] steps.
    pub fn with_validation(mut self, data: &'d dyn TrainData) -> Self {
        self.validation = (!data.is_empty()).then_some(data);
        self
    }

    /// Writes the resumable training checkpoint to `path`.
    pub fn with_checkpoint(mut self, path: &Path) -> Self {
        self.checkpoint = Some(path.to_path_buf());
        self
    }

    /// Writes the model (the moving average of the weights when the run
    /// keeps one) to `path` with its training image size in pixels, for
    /// [`crate::load_model`].
    pub fn with_model_file(mut self, path: &Path, image_size: usize) -> Self {
        self.model_file = Some((path.to_path_buf(), image_size));
        self
    }

    /// Also keeps the model (the evaluation weights) that is best on the
    /// periodic validation: written to `path`, with its training image size
    /// and its score and step ([`ca_model::BEST_SCORE_KEY`],
    /// [`ca_model::BEST_STEP_KEY`]), whenever a validation's mean IoU over
    /// the classes at the last evaluated CA step beats every earlier one
    /// of the run. A resumed run goes on from the score the file records
    /// (a fresh run ignores a file left by another).
    pub fn with_best_model_file(mut self, path: &Path, image_size: usize) -> Result<Self> {
        if self.resumed {
            self.best = best_score(path)?;
        }
        self.best_file = Some((path.to_path_buf(), image_size));
        Ok(self)
    }

    /// The best validation score of the run so far and the step it came
    /// at ([`Learner::with_best_model_file`]).
    pub fn best(&self) -> Option<(f64, u64)> {
        self.best
    }

    /// Appends one JSON record per step to `metrics` (keys `step`, `loss`,
    /// `seconds`, `elapsed`, `cpu_seconds`, `lr`, `full_unroll`, and
    /// `reset_gate_mean`, `val`, `val_samples` when measured).
    pub fn with_metrics(mut self, metrics: MetricsLog) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same run with its time budgets counted from zero again: a
    /// warm restart of the learning-rate schedule (as in SGDR) for a
    /// resumed run, whose weights, optimizer moments, pool and step count
    /// go on. The step budget still counts every step, so the schedule
    /// restarts when the time budgets are the tightest limit.
    pub fn restart_schedule(mut self) -> Self {
        self.trainer.set_time_spent(TimeSpent::default());
        self
    }

    /// The trainer (model, schedule, step count).
    pub fn trainer(&self) -> &T {
        &self.trainer
    }

    /// Its settings.
    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// The IoU of the evaluation weights on every sample of `data` after
    /// each of `steps` CA steps (batch and seed of the config).
    pub fn evaluate(&self, data: &dyn TrainData, steps: &[usize]) -> Result<IouTable> {
        let (batch, seed) = (self.config.eval_batch, self.config.eval_seed);
        self.trainer.evaluate(data, steps, batch, seed)
    }

    /// An IoU table as a metrics record, its classes named by the config.
    pub fn iou_record(&self, table: &IouTable) -> IouByStep {
        IouByStep::from_table(table, &self.config.class_names)
    }

    /// Appends `record` to the metrics sink, if there is one.
    pub fn log<R: serde::Serialize>(&mut self, record: &R) -> Result<()> {
        match &mut self.metrics {
            Some(m) => Ok(m.write(record)?),
            None => Ok(()),
        }
    }

    /// Writes the checkpoint and the model file, where configured.
    pub fn save(&self) -> Result<()> {
        if let Some(path) = &self.checkpoint {
            self.trainer.save_checkpoint(path)?;
        }
        if let Some((path, size)) = &self.model_file {
            self.trainer.save_model(path, *size, &[])?;
        }
        Ok(())
    }

    /// Records `table` (a periodic validation at optimizer step `step`) as
    /// the run's best when its score beats every earlier one, writing the
    /// best-model file where configured; whether it did.
    fn keep_if_best(&mut self, table: &IouTable, step: u64) -> Result<bool> {
        let Some(score) = validation_score(table) else {
            return Ok(false);
        };
        if self.best.is_some_and(|(best, _)| best >= score) {
            return Ok(false);
        }
        self.best = Some((score, step));
        if let Some((path, size)) = &self.best_file {
            let notes = [
                (BEST_SCORE_KEY.to_string(), score.to_string()),
                (BEST_STEP_KEY.to_string(), step.to_string()),
            ];
            self.trainer.save_model(path, *size, &notes)?;
        }
        Ok(true)
    }

    /// Trains until a stop condition, calling `on_step` after every step;
    /// writes the checkpoint and the model file at the end. The learning
    /// rate schedule runs over the budget: its progress is the furthest
    /// of steps, wall time and CPU time. Steps and times count the whole
    /// run: a resumed run goes on from the step and the time its
    /// checkpoint recorded ([`Trainer::time_spent`]), so a run stopped
    /// and resumed with the same flags trains as long, on the same
    /// schedule, as one that was never stopped.
    pub fn fit(&mut self, mut on_step: impl FnMut(&StepEvent)) -> Result<FitSummary> {
        let started = Instant::now();
        let cpu_at_start = process_cpu_seconds();
        let before = self.trainer.time_spent();
        let spent = move || TimeSpent {
            wall_seconds: before.wall_seconds + started.elapsed().as_secs_f64(),
            cpu_seconds: before.cpu_seconds
                + match (cpu_at_start, process_cpu_seconds()) {
                    (Some(c0), Some(c)) => c - c0,
                    _ => f64::NAN,
                },
        };
        let cfg = self.config.clone();
        let stop = loop {
            let step = self.trainer.step_count();
            let now = spent();
            match cfg.budget_used(step, now.wall_seconds, now.cpu_seconds) {
                Err(stop) => break stop,
                Ok(progress) => self.trainer.set_progress(progress),
            }

            let step_start = Instant::now();
            let report = self.trainer.train_step(self.train)?;
            let seconds = step_start.elapsed().as_secs_f64();
            let step = self.trainer.step_count();
            let now = spent();
            self.trainer.set_time_spent(now);
            let mut record = StepRecord {
                step,
                loss: report.loss.map(f64::from),
                seconds,
                elapsed: now.wall_seconds,
                cpu_seconds: now.cpu_seconds,
                lr: report.learning_rate,
                full_unroll: report.full_unroll,
                reset_gate_mean: None,
                val: None,
                val_samples: None,
            };
            if cfg.gate_every > 0 && step.is_multiple_of(cfg.gate_every) {
                record.reset_gate_mean = self.trainer.reset_gate_mean(self.train)?.map(f64::from);
            }
            let mut validation = None;
            if let Some(val) = self.validation {
                if cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every) && step < cfg.max_steps
                {
                    let subset = Prefix(val, cfg.eval_samples);
                    let table = self.evaluate(&subset, &cfg.eval_steps)?;
                    record.val = Some(self.iou_record(&table));
                    record.val_samples = Some(subset.len());
                    validation = Some(table);
                }
            }
            let best = match &validation {
                Some(table) => self.keep_if_best(table, step)?,
                None => false,
            };
            self.log(&record)?;
            // A skipped (non-finite) step changes no weight; not writing it
            // keeps the last good checkpoint as it was.
            let checkpointed = step.is_multiple_of(cfg.checkpoint_every) && !report.non_finite;
            if checkpointed {
                self.save()?;
            }
            on_step(&StepEvent {
                report: &report,
                seconds,
                validation: validation.as_ref(),
                checkpointed,
                best,
            });
        };
        self.save()?;
        let total = spent();
        Ok(FitSummary {
            stop,
            steps: self.trainer.step_count(),
            seconds: total.wall_seconds,
            cpu_seconds: total.cpu_seconds,
        })
    }

    /// The end of a run: the saved weights (the evaluation weights)
    /// evaluated on every sample of `validation` and, when given, `test`
    /// at [`final_eval_steps`] of the schedule's target, appended to the
    /// metrics file as a [`FinalRecord`] with the training time of
    /// `summary`. Empty splits are skipped.
    pub fn final_evaluation(
        &mut self,
        summary: &FitSummary,
        validation: &dyn TrainData,
        test: Option<&dyn TrainData>,
    ) -> Result<FinalEvaluation> {
        let steps = final_eval_steps(self.trainer.config().unroll.target);
        let measure = |data: &dyn TrainData| -> Result<Option<FinalTable>> {
            if data.is_empty() {
                return Ok(None);
            }
            Ok(Some(FinalTable {
                table: self.evaluate(data, &steps)?,
                samples: data.len(),
            }))
        };
        let validation = measure(validation)?;
        let test = match test {
            Some(data) => measure(data)?,
            None => None,
        };
        let record = FinalRecord {
            step: summary.steps,
            train_seconds: summary.seconds,
            train_cpu_seconds: summary.cpu_seconds,
            final_val: validation.as_ref().map(|t| self.iou_record(&t.table)),
            val_samples: validation.as_ref().map(|t| t.samples),
            final_eval: test.as_ref().map(|t| self.iou_record(&t.table)),
            eval_samples: test.as_ref().map(|t| t.samples),
        };
        self.log(&record)?;
        Ok(FinalEvaluation {
            record,
            validation,
            test,
        })
    }
}

/// The final evaluation of a run ([`Learner::final_evaluation`]): one
/// split's IoU table at [`final_eval_steps`] and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalTable {
    /// The IoU after each of the final evaluation's CA steps.
    pub table: IouTable,
    /// Samples read.
    pub samples: usize,
}

/// What [`Learner::final_evaluation`] measured: the record it appended to
/// the metrics file and the tables behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalEvaluation {
    /// The record appended to the metrics file.
    pub record: FinalRecord,
    /// The validation split's table; `None` when it is empty.
    pub validation: Option<FinalTable>,
    /// The test split's table, when one was given and is not empty.
    pub test: Option<FinalTable>,
}

/// The score a validation is ranked by: the mean IoU over the classes
/// (those with a value) at its last evaluated CA step; `None` when it has
/// none.
pub fn validation_score(table: &IouTable) -> Option<f64> {
    let last = table.iou.last()?;
    let known: Vec<f64> = last.iter().copied().filter(|v| v.is_finite()).collect();
    (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_steps_are_ascending_and_distinct() {
        assert_eq!(periodic_eval_steps(40), [10, 20, 40]);
        assert_eq!(final_eval_steps(40), [10, 20, 40, 80]);
        assert_eq!(periodic_eval_steps(5), [5, 10, 20]);
        assert_eq!(final_eval_steps(10), [10, 20]);
        assert_eq!(LearnerConfig::default().eval_steps, [10, 20, 40]);
        assert_eq!(LearnerConfig::default().class_names, paper_class_names());
    }

    #[test]
    fn the_budget_is_the_tightest_limit() {
        let cfg = LearnerConfig {
            max_steps: 100,
            max_minutes: Some(2.0),
            max_cpu_minutes: Some(1.0),
            ..LearnerConfig::default()
        };
        assert_eq!(cfg.budget_used(10, 12.0, 30.0), Ok(0.5));
        assert_eq!(cfg.budget_used(50, 12.0, 6.0), Ok(0.5));
        assert_eq!(cfg.budget_used(10, 60.0, 6.0), Ok(0.5));
        assert_eq!(cfg.budget_used(100, 0.0, 0.0), Err(Stop::Steps));
        assert_eq!(cfg.budget_used(10, 121.0, 0.0), Err(Stop::WallTime));
        assert_eq!(cfg.budget_used(10, 0.0, 61.0), Err(Stop::CpuTime));
    }

    fn paper_class_names() -> Vec<String> {
        ["background", "object", "boundary"]
            .map(String::from)
            .to_vec()
    }
}
