//! Resumable training checkpoints: one safetensors file holding the model
//! tensors (`model.NAME`), Adam's moments (`adam.m.NAME`, `adam.v.NAME`),
//! the moving average of the weights when the run has one (`ema.NAME`),
//! the pool's states (`pool.states`), the mix of the fixed perception
//! filters when the run has them (`filters.mix`, with its `adam.m.`,
//! `adam.v.` and `ema.` entries), and, in the metadata, the model's own
//! metadata (its config), the training config, the step counter and the
//! pool's slots. Random draws derive from `(seed, step)`, so the step
//! counter is the whole RNG state. Written atomically (temporary file, then
//! rename): a crash leaves the previous checkpoint intact.

use std::collections::HashMap;
use std::path::Path;

use ca_core::io::{parse_safetensors, read_file, write_safetensors_atomic};
use candle_core::safetensors::Load;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Result, SchedError};
use crate::model::Trainable;
use crate::pool::Slot;
use crate::trainer::Trainer;

/// Tensor name of the fixed perception filters' mix.
const MIX: &str = "filters.mix";

/// Metadata key of the training state.
pub const TRAIN_STATE_KEY: &str = "ca.train_state";

#[derive(Serialize, Deserialize)]
struct TrainState {
    step: u64,
    adam_steps: u64,
    #[serde(default)]
    ema_updates: u64,
    bad_streak: usize,
    config: TrainConfig,
    slots: Vec<Slot>,
    has_state: Vec<bool>,
    state_len: usize,
}

fn bad(path: &Path, reason: impl Into<String>) -> SchedError {
    SchedError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The metadata of a training checkpoint (the model's metadata included),
/// so that a caller can rebuild the model before [`Trainer::resume`].
pub fn checkpoint_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = read_file(path)?;
    let (_, meta) = parse_safetensors(&bytes, path)?;
    if !meta.contains_key(TRAIN_STATE_KEY) {
        return Err(bad(
            path,
            format!("no '{TRAIN_STATE_KEY}' metadata: not a training checkpoint"),
        ));
    }
    Ok(meta)
}

impl<M: Trainable> Trainer<M> {
    /// The names of Adam's variables in its order: the model's trainable
    /// tensors, then the fixed filters' mix when the run has them.
    fn optimized_names(&self) -> Vec<String> {
        let params = self.model().named_params();
        let trainable = params.into_iter().filter(|p| p.trainable).map(|p| p.name);
        let mix = self.filters().map(|_| MIX.to_string());
        trainable.chain(mix).collect()
    }

    /// Writes the whole training state to `path` atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let params = self.model().named_params();
        for p in &params {
            tensors.push((format!("model.{}", p.name), p.var.as_tensor().clone()));
        }
        let optimized = self.optimized_names();
        if let Some(f) = self.filters() {
            tensors.push((MIX.into(), f.fixed.mix().as_tensor().clone()));
        }
        for (i, name) in optimized.iter().enumerate() {
            let (m, v) = self.adam().moments(i);
            tensors.push((format!("adam.m.{name}"), m.clone()));
            tensors.push((format!("adam.v.{name}"), v.clone()));
            if let Some(ema) = self.ema() {
                tensors.push((format!("ema.{name}"), ema.average()[i].clone()));
            }
        }
        let slots = &self.pool().slots;
        let state_len = slots
            .iter()
            .find_map(|s| s.state.as_ref().map(Vec::len))
            .unwrap_or(0);
        let has_state: Vec<bool> = slots.iter().map(|s| s.state.is_some()).collect();
        let states: Vec<f32> = slots
            .iter()
            .filter_map(|s| s.state.clone())
            .flatten()
            .collect();
        let rows = has_state.iter().filter(|&&b| b).count();
        let cpu = candle_core::Device::Cpu;
        tensors.push((
            "pool.states".into(),
            Tensor::from_vec(states, (rows, state_len), &cpu)?,
        ));
        let state = TrainState {
            step: self.step_count(),
            adam_steps: self.adam().steps(),
            ema_updates: self.ema().map_or(0, |e| e.updates()),
            bad_streak: self.bad_streak(),
            config: self.config().clone(),
            slots: slots.clone(),
            has_state,
            state_len,
        };
        let mut meta = self.model().metadata();
        meta.insert(
            TRAIN_STATE_KEY.into(),
            serde_json::to_string(&state).map_err(|e| bad(path, e.to_string()))?,
        );
        write_safetensors_atomic(path, tensors, meta)?;
        Ok(())
    }

    /// A trainer continuing the run saved at `path`. `model` must have the
    /// architecture stored there (build it from [`checkpoint_metadata`]);
    /// its tensors are overwritten with the saved ones. Only the training
    /// config stored in the checkpoint is used.
    pub fn resume(model: M, path: &Path, num_samples: usize) -> Result<Self> {
        let bytes = read_file(path)?;
        let (st, meta) = parse_safetensors(&bytes, path)?;
        let state: TrainState = meta
            .get(TRAIN_STATE_KEY)
            .ok_or_else(|| {
                bad(
                    path,
                    format!("no '{TRAIN_STATE_KEY}' metadata: not a training checkpoint"),
                )
            })
            .and_then(|j| {
                serde_json::from_str(j).map_err(|e| bad(path, format!("training state: {e}")))
            })?;
        let device = model.rule().device().clone();
        let load = |name: &str| -> Result<Tensor> {
            let view = st
                .tensor(name)
                .map_err(|_| bad(path, format!("tensor '{name}' is missing")))?;
            view.load(&device)
                .map_err(|e| bad(path, format!("tensor '{name}': {e}")))
        };
        let params = model.named_params();
        // Built first: `Trainer::new` applies the config's initialisation,
        // which the saved tensors then overwrite.
        let mut trainer = Trainer::new(model, state.config, num_samples)?;
        for p in &params {
            let t = load(&format!("model.{}", p.name))?;
            if t.dims() != p.var.dims() {
                return Err(bad(
                    path,
                    format!(
                        "tensor 'model.{}' has shape {:?}, the model needs {:?}",
                        p.name,
                        t.dims(),
                        p.var.dims()
                    ),
                ));
            }
            p.var.set(&t)?;
        }
        let optimized = trainer.optimized_names();
        if let Some(f) = trainer.filters() {
            let mix = f.fixed.mix();
            let t = load(MIX)?;
            if t.dims() != mix.dims() {
                return Err(bad(
                    path,
                    format!(
                        "tensor '{MIX}' has shape {:?}, the model needs {:?}",
                        t.dims(),
                        mix.dims()
                    ),
                ));
            }
            mix.set(&t)?;
        }
        let (mut ms, mut vs, mut averages) = (Vec::new(), Vec::new(), Vec::new());
        let with_ema = trainer.ema().is_some();
        for name in &optimized {
            ms.push(load(&format!("adam.m.{name}"))?);
            vs.push(load(&format!("adam.v.{name}"))?);
            if with_ema {
                averages.push(load(&format!("ema.{name}"))?);
            }
        }
        if state.slots.iter().any(|s| s.image >= num_samples) {
            return Err(bad(
                path,
                format!("its pool refers to samples beyond the {num_samples} of this data set"),
            ));
        }
        let states = load("pool.states")?.to_device(&candle_core::Device::Cpu)?;
        let mut rows = states.to_vec2::<f32>()?.into_iter();
        let mut slots = state.slots;
        for (slot, &has) in slots.iter_mut().zip(&state.has_state) {
            slot.state = if has {
                Some(
                    rows.next()
                        .ok_or_else(|| bad(path, "pool.states has too few rows"))?,
                )
            } else {
                None
            };
        }
        let (adam, ema, pool, step, streak) = trainer.parts_mut();
        adam.restore(ms, vs, state.adam_steps);
        if let Some(ema) = ema {
            ema.restore(averages, state.ema_updates);
        }
        pool.slots = slots;
        *step = state.step;
        *streak = state.bad_streak;
        Ok(trainer)
    }
}
