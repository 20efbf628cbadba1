//! Resumable training checkpoints: one safetensors file holding the model
//! tensors (`model.NAME`), Adam's moments (`adam.m.NAME`, `adam.v.NAME`),
//! the moving average of the weights when the run has one (`ema.NAME`),
//! the pool's states (`pool.states`), the mix of the fixed perception
//! filters when the run has them (`filters.mix`, with its `adam.m.`,
//! `adam.v.` and `ema.` entries), and, in the metadata, the model's own
//! metadata (its config), the training config, the step counter, the
//! time trained so far and the pool's slots. Random draws derive from
//! `(seed, step)`, so the step counter is the whole RNG state. Written atomically (temporary file, then
//! rename): a crash leaves the previous checkpoint intact.

use std::collections::HashMap;
use std::path::Path;

use ca_core::io::{parse_safetensors, read_file, write_safetensors_atomic};
use candle_core::safetensors::Load;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Result, SchedError};
use crate::pool::Slot;
use crate::trainer::{TimeSpent, Trainer};
use ca_model::Trainable;

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
    /// Absent from checkpoints written before it: nothing spent.
    #[serde(default)]
    time_spent: TimeSpent,
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

/// The training schedule a checkpoint's metadata (from
/// [`checkpoint_metadata`]) records: what a resumed run trains with.
/// `path` names the checkpoint in errors.
pub fn checkpoint_schedule(meta: &HashMap<String, String>, path: &Path) -> Result<TrainConfig> {
    let state = meta
        .get(TRAIN_STATE_KEY)
        .ok_or_else(|| bad(path, format!("no '{TRAIN_STATE_KEY}' metadata")))?;
    let state: TrainState = serde_json::from_str(state)
        .map_err(|e| bad(path, format!("'{TRAIN_STATE_KEY}' is not readable: {e}")))?;
    Ok(state.config)
}

/// A setting a resumed run would ignore: a field whose planned value
/// differs from the one its checkpoint keeps ([`config_conflicts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigConflict {
    /// The field's name in the config (its serialised name).
    pub field: String,
    /// The value the new run asks for, as JSON.
    pub planned: serde_json::Value,
    /// The value the checkpoint keeps, as JSON (`null` when it has none).
    pub stored: serde_json::Value,
}

/// The top-level fields of `planned` whose value differs from `stored`'s
/// (two configs of one type, e.g. a [`TrainConfig`] against
/// [`checkpoint_schedule`]'s, or a model's config against the
/// checkpoint's), by field name. A resume takes the model
/// and the schedule from its checkpoint, so a caller refuses (or warns
/// about) the conflicts among the settings its user typed.
pub fn config_conflicts<T: Serialize>(planned: &T, stored: &T) -> Vec<ConfigConflict> {
    let json = |v: &T| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    let (planned, stored) = (json(planned), json(stored));
    let (Some(planned), Some(stored)) = (planned.as_object(), stored.as_object()) else {
        return Vec::new();
    };
    planned
        .iter()
        .filter_map(|(field, value)| {
            let kept = stored.get(field).unwrap_or(&serde_json::Value::Null);
            (kept != value).then(|| ConfigConflict {
                field: field.clone(),
                planned: value.clone(),
                stored: kept.clone(),
            })
        })
        .collect()
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
            time_spent: self.time_spent(),
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
        let state = read_train_state(&meta, path)?;
        let file = Stored {
            st: &st,
            path,
            device: model.rule().device().clone(),
        };
        let params = model.named_params();
        // Built first: `Trainer::new` applies the config's initialisation,
        // which the saved tensors then overwrite.
        let mut trainer = Trainer::new(model, state.config.clone(), num_samples)?;
        for p in &params {
            file.load_into(&format!("model.{}", p.name), &p.var)?;
        }
        if let Some(f) = trainer.filters() {
            file.load_into(MIX, f.fixed.mix())?;
        }
        let with_ema = trainer.ema().is_some();
        let (mut ms, mut vs, mut averages) = (Vec::new(), Vec::new(), Vec::new());
        for name in &trainer.optimized_names() {
            ms.push(file.load(&format!("adam.m.{name}"))?);
            vs.push(file.load(&format!("adam.v.{name}"))?);
            if with_ema {
                averages.push(file.load(&format!("ema.{name}"))?);
            }
        }
        let slots = file.pool_slots(&state, num_samples)?;
        trainer.restore(
            (ms, vs, state.adam_steps),
            (averages, state.ema_updates),
            slots,
            (state.step, state.bad_streak, state.time_spent),
        );
        Ok(trainer)
    }
}

/// The training state in a checkpoint's metadata.
fn read_train_state(meta: &HashMap<String, String>, path: &Path) -> Result<TrainState> {
    let json = meta.get(TRAIN_STATE_KEY).ok_or_else(|| {
        bad(
            path,
            format!("no '{TRAIN_STATE_KEY}' metadata: not a training checkpoint"),
        )
    })?;
    serde_json::from_str(json).map_err(|e| bad(path, format!("training state: {e}")))
}

/// The tensors of a checkpoint file being read, every error naming it.
struct Stored<'a> {
    st: &'a safetensors::SafeTensors<'a>,
    path: &'a Path,
    device: candle_core::Device,
}

impl Stored<'_> {
    /// Tensor `name` on the model's device.
    fn load(&self, name: &str) -> Result<Tensor> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| bad(self.path, format!("tensor '{name}' is missing")))?;
        view.load(&self.device)
            .map_err(|e| bad(self.path, format!("tensor '{name}': {e}")))
    }

    /// Tensor `name` into `var`, whose shape it must have.
    fn load_into(&self, name: &str, var: &Var) -> Result<()> {
        let t = self.load(name)?;
        if t.dims() != var.dims() {
            return Err(bad(
                self.path,
                format!(
                    "tensor '{name}' has shape {:?}, the model needs {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        Ok(var.set(&t)?)
    }

    /// The pool's slots of `state` with their states (`pool.states`, one
    /// row per slot that has one), checked against a data set of
    /// `num_samples` samples.
    fn pool_slots(&self, state: &TrainState, num_samples: usize) -> Result<Vec<Slot>> {
        if state.slots.iter().any(|s| s.image >= num_samples) {
            return Err(bad(
                self.path,
                format!("its pool refers to samples beyond the {num_samples} of this data set"),
            ));
        }
        let states = self
            .load("pool.states")?
            .to_device(&candle_core::Device::Cpu)?;
        let mut rows = states.to_vec2::<f32>()?.into_iter();
        let mut slots = state.slots.clone();
        for (slot, &has) in slots.iter_mut().zip(&state.has_state) {
            slot.state = match has {
                true => Some(
                    rows.next()
                        .ok_or_else(|| bad(self.path, "pool.states has too few rows"))?,
                ),
                false => None,
            };
        }
        Ok(slots)
    }
}
