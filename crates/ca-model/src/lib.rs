//! # ca-model: the automaton's models as files
//!
//! What every tool that loads or runs a trained model needs, below the
//! trainer: the [`Trainable`] trait (a [`ca_core::CellModel`] with its
//! named tensors and the metadata that rebuilds it; [`ca_core::CellRule`]
//! and [`ca_hires::HiresModel`] are both), [`AnyModel`] and the one loader
//! of a model file of either kind ([`load_model`], with the image size it
//! was trained at) and writer ([`save_model`]), the [`IouTable`] an
//! evaluation gives, and the records of a training's metrics file
//! ([`read_metrics_file`]). `ca-sched` trains these models; `ca-serve`,
//! `ca-viz` and `ca-eval` read them without it.
#![warn(missing_docs)]

mod error;
mod metrics;
mod saved;
mod trainable;

pub use error::{ModelError, Result};
pub use metrics::{
    read_metrics_file, FinalRecord, IouByStep, IouTable, MetricsLog, MetricsRecord, StepRecord,
};
pub use saved::{
    best_score, load_model, load_unet, model_from_metadata, save_model, save_model_noted,
    save_unet, AnyModel, BEST_SCORE_KEY, BEST_STEP_KEY, DEFAULT_STATE_SIZE, IMAGE_SIZE_KEY,
    LEGACY_IMAGE_SIZE_KEY,
};
pub use trainable::Trainable;
