//! The training loop: mini-unrolls over a pool of slots (after an optional
//! full-unroll curriculum), the age-masked loss, Adam on a scheduled
//! learning rate, an optional moving average of the weights, non-finite-loss
//! handling.

use ca_core::coarse::step_at;
use ca_core::{normal_state, step_rng, LayerId, NamedParam, StepDraws, TensorKind};
use candle_core::{Device, Tensor, Var};
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::config::{StageConfig, TrainConfig};
use crate::ema::Ema;
use crate::error::{Result, SchedError};
use crate::filters::FixedFilters;
use crate::loss::LossTargets;
use ca_model::Trainable;

use crate::model::TrainData;
use crate::pool::{Pool, ResetCounts, Slot};

/// Salt of the generator of slot choices and resets (distinct from the CA
/// draws, which use the plain seed).
const SCHEDULE_SALT: u64 = 0x5CED_0001;
/// Salt of the generator of fresh states.
const STATE_SALT: u64 = 0x5CED_0002;
/// Salt of the CA draws of a cascade's coarse levels.
const CASCADE_SALT: u64 = 0x5CED_0003;

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The optimizer step just taken (1-based).
    pub step: u64,
    /// Mean loss over the (slot, CA step) pairs old enough to count;
    /// `None` when none was (all slots younger than `T0` throughout).
    pub loss: Option<f32>,
    /// The learning rate of this step.
    pub learning_rate: f64,
    /// Whether this step was a full unroll (the mode, or the curriculum).
    pub full_unroll: bool,
    /// Whether the loss or a gradient was NaN or infinite, so the update was
    /// not applied.
    pub non_finite: bool,
    /// The resets after the unroll.
    pub resets: ResetCounts,
}

/// Trains a [`Trainable`] with the schedule of a [`TrainConfig`].
pub struct Trainer<M: Trainable> {
    model: M,
    config: TrainConfig,
    adam: Adam,
    ema: Option<Ema>,
    pool: Pool,
    step: u64,
    bad_streak: usize,
    progress: f64,
    time_spent: TimeSpent,
    device: Device,
    filters: Option<Filters>,
}

/// The time a run has trained so far, over all its processes (a resumed
/// run's earlier ones included): what its time budgets count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSpent {
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// CPU seconds of the training processes (all threads).
    pub cpu_seconds: f64,
}

impl TimeSpent {
    /// The same times with a value that is not finite (the CPU time of a
    /// system that does not report it) as 0, so that checkpoints stay
    /// readable JSON.
    pub(crate) fn finite(self) -> Self {
        let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
        TimeSpent {
            wall_seconds: finite(self.wall_seconds),
            cpu_seconds: finite(self.cpu_seconds),
        }
    }
}

/// A run's progress in [0, 1]: `progress` clamped, NaN as 0.
pub(crate) fn clamped_progress(progress: f64) -> f64 {
    if progress.is_nan() {
        0.0
    } else {
        progress.clamp(0.0, 1.0)
    }
}

/// The fixed perception filters of a run with `fixed_filters`: their mix
/// (the last of Adam's vars) and the rule's perception weight they fold
/// into (Adam's var number `weight_index`).
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    pub(crate) fixed: FixedFilters,
    weight: Var,
    weight_index: usize,
}

impl<M: Trainable> Trainer<M> {
    /// A trainer at step 0 with a fresh pool over `num_samples` samples.
    /// Applies the config's initialisation to the model first: the update
    /// layer set to zero (`zero_update_init`), the reset-gate bias set to
    /// `reset_bias_init`.
    pub fn new(model: M, config: TrainConfig, num_samples: usize) -> Result<Self> {
        config.validate()?;
        if num_samples == 0 {
            return Err(SchedError::data("the training data has no samples"));
        }
        if let Some(c) = &model.rule().config().cascade {
            check_cascade(c, &config)?;
        }
        for p in model.named_params() {
            let value = match LayerId::parse(&p.name) {
                Some((LayerId::Update, _)) if config.init.zero_update_init => Some(0.0),
                Some((LayerId::Reset, TensorKind::Bias)) => config.init.reset_bias_init,
                _ => None,
            };
            if let Some(v) = value {
                p.var.set(&(p.var.as_tensor().zeros_like()? + v)?)?;
            }
        }
        scale_perception_init(&model, config.init.perception_init_scale)?;
        let trainable: Vec<NamedParam> = model
            .named_params()
            .into_iter()
            .filter(|p| p.trainable)
            .collect();
        let mut lr_scales: Vec<f64> = trainable
            .iter()
            .map(|p| match is_perception(&p.name) {
                true => config.perception_lr_scale,
                false => 1.0,
            })
            .collect();
        let filters = match config.fixed_filters {
            true => Some(perception_filters(&trainable)?),
            false => None,
        };
        let mut vars: Vec<Var> = trainable.into_iter().map(|p| p.var).collect();
        if let Some(f) = &filters {
            vars.push(f.fixed.mix().clone());
            lr_scales.push(config.perception_lr_scale);
        }
        let ema = config.ema_decay.map(|d| Ema::new(&vars, d)).transpose()?;
        let adam = Adam::new(vars, config.optimizer)?.with_lr_scales(lr_scales)?;
        let mut rng = step_rng(config.seed ^ SCHEDULE_SALT, u64::MAX);
        let pool = Pool::new(config.unroll.pool_size, num_samples, &mut rng);
        let device = model.rule().device().clone();
        Ok(Trainer {
            model,
            config,
            adam,
            ema,
            pool,
            step: 0,
            bad_streak: 0,
            progress: 0.0,
            time_spent: TimeSpent::default(),
            device,
            filters,
        })
    }

    /// The fixed perception filters, when the config has them.
    pub(crate) fn filters(&self) -> Option<&Filters> {
        self.filters.as_ref()
    }

    /// The fixed perception filters and their learned mix, when the config
    /// has `fixed_filters`.
    pub fn fixed_filters(&self) -> Option<&FixedFilters> {
        self.filters.as_ref().map(|f| &f.fixed)
    }

    /// Sets the run's progress in [0, 1] (the fraction of its budget spent:
    /// steps, wall or CPU time, whichever is furthest), which the
    /// learning-rate schedule and the full-unroll curriculum read. It is 0
    /// until set: a caller without a budget gets the warm-up, then the base
    /// rate, and no curriculum.
    pub fn set_progress(&mut self, progress: f64) {
        self.progress = clamped_progress(progress);
    }

    /// The progress last set with [`Trainer::set_progress`].
    pub fn progress(&self) -> f64 {
        self.progress
    }

    /// The time the run has trained so far, as last set with
    /// [`Trainer::set_time_spent`] (or restored from a checkpoint); saved
    /// in checkpoints, so that a resumed run's time budgets count the
    /// time before the resume.
    pub fn time_spent(&self) -> TimeSpent {
        self.time_spent
    }

    /// Records the time the run has trained so far (a [`crate::Learner`]
    /// does it after every step). A time that is not finite (the CPU
    /// time of a system that does not report it, where no CPU budget can
    /// be set) is kept as 0, so that checkpoints stay readable JSON.
    pub fn set_time_spent(&mut self, spent: TimeSpent) {
        self.time_spent = spent.finite();
    }

    /// Goes on with `stage`'s mini-unroll and learning rate (checked as a
    /// whole config; a coarse-to-fine model's target rules still hold):
    /// the model, pool, Adam's moments and weight average are kept.
    pub fn set_stage(&mut self, stage: &StageConfig) -> Result<()> {
        let config = self.config.with_stage(stage)?;
        if let Some(c) = &self.model.rule().config().cascade {
            check_cascade(c, &config)?;
        }
        self.config = config;
        Ok(())
    }

    /// The moving average of the weights, when the config has one.
    pub fn ema(&self) -> Option<&Ema> {
        self.ema.as_ref()
    }

    /// Runs `f` on the model with the weights to evaluate and save: the
    /// moving average when the config has one (the trained weights are put
    /// back afterwards), else the trained weights.
    pub fn with_eval_weights<T>(&self, f: impl FnOnce(&M) -> Result<T>) -> Result<T> {
        match &self.ema {
            Some(ema) => ema.with_average(self.adam.vars(), || f(&self.model)),
            None => f(&self.model),
        }
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The schedule.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Optimizer steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Puts back a checkpoint's training state: Adam's moments and update
    /// count `(m, v, t)`, the weight average and its update count (ignored
    /// without one), the pool's slots, the step and bad-loss counters and
    /// the time trained `(step, bad_streak, time_spent)`.
    pub(crate) fn restore(
        &mut self,
        (m, v, adam_steps): (Vec<Tensor>, Vec<Tensor>, u64),
        (averages, ema_updates): (Vec<Tensor>, u64),
        slots: Vec<Slot>,
        (step, bad_streak, time_spent): (u64, usize, TimeSpent),
    ) {
        self.adam.restore(m, v, adam_steps);
        if let Some(ema) = &mut self.ema {
            ema.restore(averages, ema_updates);
        }
        self.pool.slots = slots;
        self.step = step;
        self.bad_streak = bad_streak;
        self.time_spent = time_spent;
    }

    pub(crate) fn adam(&self) -> &Adam {
        &self.adam
    }

    pub(crate) fn bad_streak(&self) -> usize {
        self.bad_streak
    }

    /// One optimizer step: a mini-unroll of `K` CA steps (or `T` in full
    /// unroll mode and during the curriculum) on `batch` slots, the loss
    /// (cross-entropy, class-weighted if configured, plus the Dice term)
    /// over the steps at which a slot's age is at least `T0`,
    /// back-propagation through those steps only, an Adam update at the
    /// scheduled learning rate, the moving average, then the resets of the
    /// pool.
    ///
    /// A NaN or infinite loss or gradient is not applied: the batch's states
    /// are reset and the step reports `non_finite`; after `max_bad_steps` in
    /// a row training stops with [`SchedError::Diverged`].
    pub fn train_step(&mut self, data: &dyn TrainData) -> Result<StepReport> {
        let cfg = self.config.clone();
        let mut rng = step_rng(cfg.seed ^ SCHEDULE_SALT, self.step);
        let ids: Vec<usize> = if cfg.unroll.pool_size == cfg.unroll.batch {
            (0..cfg.unroll.batch).collect()
        } else {
            let mut v = sample(&mut rng, cfg.unroll.pool_size, cfg.unroll.batch).into_vec();
            v.sort_unstable();
            v
        };
        let full = cfg.full_unroll_at(self.progress);
        if full && !cfg.unroll.full_unroll {
            // Curriculum: fresh images and states, as the full unroll has.
            for &id in &ids {
                let slot = &mut self.pool.slots[id];
                if slot.age > 0 || slot.state.is_some() {
                    slot.state = None;
                    slot.age = 0;
                }
            }
        }
        let (labels, env, (h, w)) = self.slot_inputs(&ids, data)?;
        let targets = LossTargets::new(
            &labels,
            self.model.rule().config().num_classes,
            cfg.loss.class_weights.as_deref(),
            cfg.loss.dice_weight,
        )?;
        let (state, fresh) = self.gather_states(&ids, (h, w))?;
        let mut ages: Vec<usize> = ids.iter().map(|&i| self.pool.slots[i].age).collect();
        let state = self.cascade_prefix(state, &env, &fresh, &mut ages)?;
        let (state, loss) = self.unroll(state, &env, &targets, &mut ages, full)?;

        let learning_rate = cfg.learning_rate_at(self.step, self.progress);
        let mut report = StepReport {
            step: self.step + 1,
            loss: None,
            learning_rate,
            full_unroll: full,
            non_finite: false,
            resets: ResetCounts::default(),
        };
        let mut keep_states = true;
        if let Some(loss) = loss {
            let value = loss.to_scalar::<f32>()?;
            report.loss = Some(value);
            // A finite loss can still have an overflowing gradient; applying
            // it would put infinities in the weights.
            if value.is_finite() && self.apply_gradients(&loss, learning_rate)? {
                self.bad_streak = 0;
            } else {
                report.non_finite = true;
                keep_states = false;
                self.bad_streak += 1;
            }
        }
        self.store_states(&ids, ages, &state, keep_states)?;
        let (p_image, p_state) = if full {
            (1.0, 1.0)
        } else {
            (cfg.unroll.image_reset_prob(), cfg.unroll.state_reset_prob())
        };
        report.resets = self
            .pool
            .reset(&ids, p_image, p_state, data.len(), &mut rng);
        self.step += 1;
        if self.bad_streak >= cfg.max_bad_steps {
            return Err(SchedError::Diverged {
                count: self.bad_streak,
                step: self.step,
            });
        }
        Ok(report)
    }

    /// The mini-unroll (or full unroll) of one optimizer step from `state`:
    /// the state after it, and the loss averaged over the steps and slots
    /// old enough to count (`None` when none is). `ages` advance by one per
    /// step. The CA draws of step k of optimizer step s come from stream
    /// s * stride + k; with a curriculum the stride is the longer unroll,
    /// so that no two steps share a stream.
    fn unroll(
        &self,
        mut state: Tensor,
        env: &Tensor,
        targets: &LossTargets,
        ages: &mut [usize],
        full: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let cfg = &self.config;
        let unroll = cfg.unroll.unroll_for(full);
        let stride = if cfg.curriculum.full_unroll_fraction > 0.0 {
            cfg.unroll.target.max(cfg.unroll.mini_unroll)
        } else {
            unroll
        } as u64;
        let (_, _, h, w) = state.dims4()?;
        let label_size = targets.size();
        let rule = self.model.rule();
        let mut total: Option<Tensor> = None;
        let mut terms = 0usize;
        for k in 0..unroll {
            let draw_step = self.step * stride + k as u64;
            let draws = StepDraws::sample(
                rule.config(),
                (ages.len(), h, w),
                &mut step_rng(cfg.seed, draw_step),
                &self.device,
            )?;
            state = rule.step(&state, env, &draws)?;
            ages.iter_mut().for_each(|a| *a += 1);
            let counts = |age: usize| age >= cfg.unroll.loss_start();
            let weights: Vec<f32> = ages
                .iter()
                .map(|&a| f32::from(u8::from(counts(a))))
                .collect();
            let counted = weights.iter().filter(|&&x| x > 0.0).count();
            if counted == 0 {
                continue;
            }
            let ce = targets.per_sample_loss(&self.model.logits(&state, label_size)?)?;
            let weights = Tensor::from_vec(weights, ages.len(), &self.device)?;
            let term = (ce * weights)?.sum_all()?;
            total = Some(match total {
                None => term,
                Some(t) => (t + term)?,
            });
            terms += counted;
        }
        let loss = total.map(|t| t / terms as f64).transpose()?;
        Ok((state, loss))
    }

    /// Back-propagates `loss` and takes an Adam step (and the EMA's) at
    /// `learning_rate`; false, changing nothing, when a gradient is not
    /// finite.
    fn apply_gradients(&mut self, loss: &Tensor, learning_rate: f64) -> Result<bool> {
        let grads = loss.backward()?;
        let mut per_var: Vec<Option<Tensor>> = self
            .model
            .named_params()
            .into_iter()
            .filter(|p| p.trainable)
            .map(|p| grads.get(p.var.as_tensor()).cloned())
            .collect();
        if let Some(f) = &self.filters {
            let mix_grad = per_var[f.weight_index]
                .as_ref()
                .map(|g| f.fixed.mix_grad(g))
                .transpose()?;
            per_var.push(mix_grad);
        }
        if !all_finite(&per_var)? {
            return Ok(false);
        }
        let old_mix = match &self.filters {
            Some(f) => Some(f.fixed.mix().as_tensor().copy()?),
            None => None,
        };
        self.adam.step_grads(&per_var, learning_rate)?;
        if let (Some(f), Some(old)) = (&self.filters, old_mix) {
            f.fixed.follow_mix(&f.weight, &old)?;
        }
        if let Some(ema) = &mut self.ema {
            ema.update(self.adam.vars())?;
        }
        Ok(true)
    }

    /// Puts the batch's states and ages back into their pool slots, or,
    /// when `keep` is false (a skipped step), empties the slots.
    fn store_states(
        &mut self,
        ids: &[usize],
        ages: Vec<usize>,
        state: &Tensor,
        keep: bool,
    ) -> Result<()> {
        let flat = state.detach().flatten_from(1)?.to_vec2::<f32>()?;
        for ((&id, age), values) in ids.iter().zip(ages).zip(flat) {
            let slot = &mut self.pool.slots[id];
            slot.age = if keep { age } else { 0 };
            slot.state = keep.then_some(values);
        }
        Ok(())
    }

    /// The labels, the environment (from the images) and the state grid
    /// `(h, w)` of the slots `ids`.
    fn slot_inputs(
        &self,
        ids: &[usize],
        data: &dyn TrainData,
    ) -> Result<(Tensor, Tensor, (usize, usize))> {
        let items: Vec<(usize, u64)> = ids
            .iter()
            .map(|&i| (self.pool.slots[i].image, self.pool.slots[i].aug_seed))
            .collect();
        let (images, labels) = data.batch(&items, &self.device)?;
        let env = self.model.environment(&images)?;
        let (_, _, ih, iw) = images.dims4()?;
        let grid = self.model.state_size((ih, iw));
        Ok((labels, env, grid))
    }

    /// The states of the slots `ids` as `[B, S, h, w]`, drawing fresh
    /// `N(0, I)` states where a slot has none, and the positions (in `ids`)
    /// of those fresh states.
    fn gather_states(
        &mut self,
        ids: &[usize],
        (h, w): (usize, usize),
    ) -> Result<(Tensor, Vec<usize>)> {
        let s = self.model.rule().config().state_channels;
        let len = s * h * w;
        let mut all = Vec::with_capacity(ids.len() * len);
        let mut fresh = Vec::new();
        for (pos, &id) in ids.iter().enumerate() {
            match &self.pool.slots[id].state {
                Some(v) if v.len() == len => all.extend_from_slice(v),
                _ => {
                    fresh.push(pos);
                    let stream = self.step.wrapping_mul(1 << 20) ^ id as u64;
                    let mut rng = step_rng(self.config.seed ^ STATE_SALT, stream);
                    let state = normal_state((1, s, h, w), &mut rng, &Device::Cpu)?;
                    all.extend(state.flatten_all()?.to_vec1::<f32>()?);
                }
            }
        }
        let state = Tensor::from_vec(all, (ids.len(), s, h, w), &self.device)?;
        Ok((state, fresh))
    }

    /// For a model whose rule has a [`ca_core::Cascade`]: runs its coarse
    /// levels on the fresh states (positions `fresh` of the batch), with
    /// their autograd graph, so that the loss of the full-grid steps that
    /// follow trains the coarse levels too; adds the coarse steps to those
    /// slots' ages. Slots with a pooled state are already past the coarse
    /// levels and are left as they are. Without a cascade, `state` as given.
    ///
    /// # Shapes
    ///
    /// `state` `[B, S, h, w]`, `env` `[B, E, h, w]`; returns `[B, S, h, w]`.
    fn cascade_prefix(
        &self,
        state: Tensor,
        env: &Tensor,
        fresh: &[usize],
        ages: &mut [usize],
    ) -> Result<Tensor> {
        let rule = self.model.rule();
        let cascade = match &rule.config().cascade {
            Some(c) if !c.levels.is_empty() && !fresh.is_empty() => c.clone(),
            _ => return Ok(state),
        };
        let picked: Vec<u32> = fresh.iter().map(|&p| p as u32).collect();
        let picked = Tensor::from_vec(picked, fresh.len(), &self.device)?;
        let mut sub = state.index_select(&picked, 0)?;
        let sub_env = env.index_select(&picked, 0)?;
        let coarse = cascade.coarse_steps() as u64;
        for t in 0..coarse {
            let mut rng = step_rng(self.config.seed ^ CASCADE_SALT, self.step * coarse + t);
            sub = step_at(rule, &sub, &sub_env, t, &mut rng, true)?;
        }
        let mut rows = Vec::with_capacity(ages.len());
        let mut next_fresh = 0;
        for (pos, age) in ages.iter_mut().enumerate() {
            if fresh.get(next_fresh) == Some(&pos) {
                rows.push(sub.narrow(0, next_fresh, 1)?);
                *age += coarse as usize;
                next_fresh += 1;
            } else {
                rows.push(state.narrow(0, pos, 1)?);
            }
        }
        Ok(Tensor::cat(&rows, 0)?)
    }

    /// The mean reset-gate value over the cells of the first `batch` slots
    /// (paper 5.5), or `None` without a reset gate.
    pub fn reset_gate_mean(&mut self, data: &dyn TrainData) -> Result<Option<f32>> {
        let ids: Vec<usize> = (0..self.config.unroll.batch).collect();
        let (_, env, grid) = self.slot_inputs(&ids, data)?;
        let (state, _) = self.gather_states(&ids, grid)?;
        match self.model.rule().reset_gate(&state, &env)? {
            Some(r) => Ok(Some(r.mean_all()?.to_scalar::<f32>()?)),
            None => Ok(None),
        }
    }
}

/// The fixed filters for the 3x3 perception weight among `trainable`.
fn perception_filters(trainable: &[NamedParam]) -> Result<Filters> {
    let found = trainable
        .iter()
        .enumerate()
        .find(|(_, p)| LayerId::parse(&p.name) == Some((LayerId::Perceive, TensorKind::Weight)));
    let Some((weight_index, p)) = found else {
        return Err(SchedError::InvalidConfig(ca_core::InvalidValue::new(
            "fixed_filters",
            true,
            "needs a rule whose first layer is a trained 3x3 convolution (perception conv3x3)",
        )));
    };
    Ok(Filters {
        fixed: FixedFilters::new(&p.var)?,
        weight: p.var.clone(),
        weight_index,
    })
}

/// Whether a parameter belongs to the perception (first) layer of a rule.
fn is_perception(name: &str) -> bool {
    LayerId::parse(name).is_some_and(|(layer, _)| layer.is_perception())
}

/// Multiplies the perception layer's weights that read the state by
/// `scale[0]` and those that read the environment by `scale[1]` (the
/// input channels `0..S` and `S..S+E` of `perceive.weight` `[H, S+E, 3, 3]`
/// or `pointwise.weight` `[H, S+E]`).
fn scale_perception_init<M: Trainable>(model: &M, scale: [f64; 2]) -> Result<()> {
    if scale == [1.0, 1.0] {
        return Ok(());
    }
    let cfg = model.rule().config();
    let factors: Vec<f32> = (0..cfg.input_channels())
        .map(|c| scale[usize::from(c >= cfg.state_channels)] as f32)
        .collect();
    for p in model.named_params() {
        let perception_weight = [
            Some((LayerId::Perceive, TensorKind::Weight)),
            Some((LayerId::Pointwise, TensorKind::Weight)),
        ];
        if perception_weight.contains(&LayerId::parse(&p.name)) {
            let w = p.var.as_tensor();
            let mut shape = vec![1; w.rank()];
            shape[1] = factors.len();
            let f = Tensor::from_vec(factors.clone(), shape, w.device())?;
            p.var.set(&w.broadcast_mul(&f)?)?;
        }
    }
    Ok(())
}

/// A cascade trains through the pool: fresh states run its coarse levels,
/// pooled ones continue on the full grid. A full unroll (the mode or the
/// curriculum) would start every slot fresh at each step, and the target
/// `T` must leave full-grid steps after the coarse ones.
fn check_cascade(cascade: &ca_core::Cascade, config: &TrainConfig) -> Result<()> {
    if config.unroll.full_unroll || config.curriculum.full_unroll_fraction > 0.0 {
        let field = if config.unroll.full_unroll {
            "full_unroll"
        } else {
            "full_unroll_fraction"
        };
        return Err(SchedError::InvalidConfig(ca_core::InvalidValue {
            name: field,
            value: if config.unroll.full_unroll {
                "true".into()
            } else {
                config.curriculum.full_unroll_fraction.to_string()
            },
            reason: format!(
                "a coarse-to-fine model ({}) trains through the pool, without full unrolls",
                cascade.describe()
            ),
        }));
    }
    if config.unroll.target <= cascade.coarse_steps() {
        return Err(SchedError::InvalidConfig(ca_core::InvalidValue {
            name: "target",
            value: config.unroll.target.to_string(),
            reason: format!(
                "must exceed the cascade's {} coarse steps ({})",
                cascade.coarse_steps(),
                cascade.describe()
            ),
        }));
    }
    Ok(())
}

/// Whether every gradient is finite (no NaN, no infinity).
pub(crate) fn all_finite(grads: &[Option<Tensor>]) -> Result<bool> {
    for g in grads.iter().flatten() {
        let v = g
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        if !v.iter().all(|x| x.is_finite()) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::TimeSpent;

    /// A checkpoint keeps the time spent as JSON; read back it must be the
    /// same to the bit, or a resumed run's budgets drift and a resumed
    /// Learner's time is not the one it saved (serde_json's default float
    /// parser gets about one value in ten wrong in the last bit: the
    /// workspace enables its `float_roundtrip` feature).
    #[test]
    fn the_time_spent_survives_json_to_the_bit() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0;
            let t = TimeSpent {
                wall_seconds: v,
                cpu_seconds: v * 1.7,
            };
            let back: TimeSpent =
                serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
            assert_eq!(back, t, "{v}");
        }
    }
}
