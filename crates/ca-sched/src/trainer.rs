//! The training loop: mini-unrolls over a pool of slots, the age-masked
//! loss, Adam, non-finite-loss handling.

use ca_core::{normal_state, step_rng, StepDraws};
use candle_core::{Device, Tensor};
use rand::seq::index::sample;

use crate::adam::Adam;
use crate::config::TrainConfig;
use crate::error::{Result, SchedError};
use crate::loss::per_sample_cross_entropy;
use crate::model::{SegModel, TrainData};
use crate::pool::{Pool, ResetCounts};

/// Salt of the generator of slot choices and resets (distinct from the CA
/// draws, which use the plain seed).
const SCHEDULE_SALT: u64 = 0x5CED_0001;
/// Salt of the generator of fresh states.
const STATE_SALT: u64 = 0x5CED_0002;

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The optimizer step just taken (1-based).
    pub step: u64,
    /// Mean cross-entropy over the (slot, CA step) pairs old enough to count;
    /// `None` when none was (all slots younger than `T0` throughout).
    pub loss: Option<f32>,
    /// Whether the loss was NaN or infinite, so the update was not applied.
    pub non_finite: bool,
    /// The resets after the unroll.
    pub resets: ResetCounts,
}

/// Trains a [`SegModel`] with the schedule of a [`TrainConfig`].
pub struct Trainer<M: SegModel> {
    model: M,
    config: TrainConfig,
    adam: Adam,
    pool: Pool,
    step: u64,
    bad_streak: usize,
    device: Device,
}

impl<M: SegModel> Trainer<M> {
    /// A trainer at step 0 with a fresh pool over `num_samples` samples.
    pub fn new(model: M, config: TrainConfig, num_samples: usize) -> Result<Self> {
        config.validate()?;
        if num_samples == 0 {
            return Err(SchedError::Data("the training data has no samples".into()));
        }
        let vars = model
            .named_params()
            .into_iter()
            .filter(|p| p.trainable)
            .map(|p| p.var)
            .collect();
        let adam = Adam::new(vars)?;
        let mut rng = step_rng(config.seed ^ SCHEDULE_SALT, u64::MAX);
        let pool = Pool::new(config.pool_size, num_samples, &mut rng);
        let device = model.rule().device().clone();
        Ok(Trainer {
            model,
            config,
            adam,
            pool,
            step: 0,
            bad_streak: 0,
            device,
        })
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

    pub(crate) fn parts_mut(&mut self) -> (&mut Adam, &mut Pool, &mut u64, &mut usize) {
        (
            &mut self.adam,
            &mut self.pool,
            &mut self.step,
            &mut self.bad_streak,
        )
    }

    pub(crate) fn adam(&self) -> &Adam {
        &self.adam
    }

    pub(crate) fn bad_streak(&self) -> usize {
        self.bad_streak
    }

    /// One optimizer step: a mini-unroll of `K` CA steps (or `T` in full
    /// unroll mode) on `batch` slots, the loss over the steps at which a
    /// slot's age is at least `T0`, back-propagation through those steps
    /// only, an Adam update, then the resets of the pool.
    ///
    /// A NaN or infinite loss is not applied: the batch's states are reset
    /// and the step reports `non_finite`; after `max_bad_steps` in a row
    /// training stops with [`SchedError::Diverged`].
    pub fn train_step(&mut self, data: &dyn TrainData) -> Result<StepReport> {
        let cfg = self.config.clone();
        let n = data.len();
        let mut rng = step_rng(cfg.seed ^ SCHEDULE_SALT, self.step);
        let ids: Vec<usize> = if cfg.pool_size == cfg.batch {
            (0..cfg.batch).collect()
        } else {
            let mut v = sample(&mut rng, cfg.pool_size, cfg.batch).into_vec();
            v.sort_unstable();
            v
        };
        let (labels, env, (h, w)) = self.slot_inputs(&ids, data)?;
        let (_, lh, lw) = labels.dims3()?;
        let mut state = self.gather_states(&ids, (h, w))?;
        let mut ages: Vec<usize> = ids.iter().map(|&i| self.pool.slots[i].age).collect();

        let unroll = cfg.unroll();
        let rule = self.model.rule();
        let mut total: Option<Tensor> = None;
        let mut terms = 0usize;
        for k in 0..unroll {
            let draw_step = self.step * unroll as u64 + k as u64;
            let draws = StepDraws::sample(
                rule.config(),
                (ids.len(), h, w),
                &mut step_rng(cfg.seed, draw_step),
                &self.device,
            )?;
            state = rule.step(&state, &env, &draws)?;
            ages.iter_mut().for_each(|a| *a += 1);
            let weights: Vec<f32> = ages
                .iter()
                .map(|&a| if a >= cfg.loss_start() { 1.0 } else { 0.0 })
                .collect();
            let counted = weights.iter().filter(|&&x| x > 0.0).count();
            if counted == 0 {
                continue;
            }
            let ce = per_sample_cross_entropy(&self.model.logits(&state, (lh, lw))?, &labels)?;
            let weights = Tensor::from_vec(weights, ids.len(), &self.device)?;
            let term = (ce * weights)?.sum_all()?;
            total = Some(match total {
                None => term,
                Some(t) => (t + term)?,
            });
            terms += counted;
        }

        let mut report = StepReport {
            step: self.step + 1,
            loss: None,
            non_finite: false,
            resets: ResetCounts::default(),
        };
        let mut keep_states = true;
        if let Some(total) = total {
            let loss = (total / terms as f64)?;
            let value = loss.to_scalar::<f32>()?;
            report.loss = Some(value);
            if value.is_finite() {
                let grads = loss.backward()?;
                let per_var: Vec<Option<Tensor>> = self
                    .model
                    .named_params()
                    .into_iter()
                    .filter(|p| p.trainable)
                    .map(|p| grads.get(p.var.as_tensor()).cloned())
                    .collect();
                self.adam.step(&per_var, &cfg)?;
                self.bad_streak = 0;
            } else {
                report.non_finite = true;
                keep_states = false;
                self.bad_streak += 1;
            }
        }

        let flat = state.detach().flatten_from(1)?.to_vec2::<f32>()?;
        for ((&id, age), values) in ids.iter().zip(ages).zip(flat) {
            let slot = &mut self.pool.slots[id];
            slot.age = age;
            slot.state = keep_states.then_some(values);
            if !keep_states {
                slot.age = 0;
            }
        }
        report.resets = self.pool.reset(
            &ids,
            cfg.image_reset_prob(),
            cfg.state_reset_prob(),
            n,
            &mut rng,
        );
        self.step += 1;
        if self.bad_streak >= cfg.max_bad_steps {
            return Err(SchedError::Diverged {
                count: self.bad_streak,
                step: self.step,
            });
        }
        Ok(report)
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
    /// `N(0, I)` states where a slot has none.
    fn gather_states(&mut self, ids: &[usize], (h, w): (usize, usize)) -> Result<Tensor> {
        let s = self.model.rule().config().state_channels;
        let len = s * h * w;
        let mut all = Vec::with_capacity(ids.len() * len);
        for &id in ids {
            match &self.pool.slots[id].state {
                Some(v) if v.len() == len => all.extend_from_slice(v),
                _ => {
                    let stream = self.step.wrapping_mul(1 << 20) ^ id as u64;
                    let mut rng = step_rng(self.config.seed ^ STATE_SALT, stream);
                    let fresh = normal_state((1, s, h, w), &mut rng, &Device::Cpu)?;
                    all.extend(fresh.flatten_all()?.to_vec1::<f32>()?);
                }
            }
        }
        Ok(Tensor::from_vec(all, (ids.len(), s, h, w), &self.device)?)
    }

    /// The mean reset-gate value over the cells of the first `batch` slots
    /// (paper 5.5), or `None` without a reset gate.
    pub fn reset_gate_mean(&mut self, data: &dyn TrainData) -> Result<Option<f32>> {
        let ids: Vec<usize> = (0..self.config.batch).collect();
        let (_, env, grid) = self.slot_inputs(&ids, data)?;
        let state = self.gather_states(&ids, grid)?;
        match self.model.rule().reset_gate(&state, &env)? {
            Some(r) => Ok(Some(r.mean_all()?.to_scalar::<f32>()?)),
            None => Ok(None),
        }
    }
}
