//! # ca-core: the learned cell rule of a segmentation cellular automaton
//!
//! A colony of cells lives on the pixel grid; every cell holds a state of
//! `S` channels and, at every step, updates it from its 3x3 neighbourhood
//! and the image under its cell, with one small learned rule shared by all
//! cells (Sandler et al., "Image segmentation via Cellular Automata", 2020).
//! A 1x1 classifier reads the class (background, object, boundary) off
//! each cell's state.
//!
//! # Shapes and units
//!
//! Tensors are `[B, C, H, W]` f32 on a candle [`candle_core::Device`]:
//! images `[B, 3, H, W]` RGB with pixel values in `[0, 1]`, states
//! `[B, S, H, W]`, logits `[B, classes, H, W]`, class maps `[B, H, W]` u32.
//!
//! # Entry points
//!
//! - a rule: [`CellRule::new`] (fresh), [`CellRule::load`] (a file of
//!   [`CellRule::save`]), [`CellRule::from_safetensors_slice`] (its bytes),
//!   [`CellRule::from_var_builder`] (a [`candle_nn::VarBuilder`]: inside a
//!   larger candle model, memory-mapped weights, a `VarMap` for training),
//!   [`CellRule::from_params`] (checked tensors);
//! - segmenting in one call: [`Segmenter`], for any [`CellModel`];
//! - step by step: [`Colony`] (inference), [`CellRule::step`] (training);
//! - the file helpers behind every model file: [`io`].
//!
//! ```
//! use ca_core::{chunk_seed, CellConfig, CellRule, Colony, Segmenter};
//! use candle_core::{DType, Device, Tensor};
//!
//! # fn main() -> Result<(), ca_core::CoreError> {
//! let rule = CellRule::new(CellConfig::default(), 0, &Device::Cpu)?;
//! let image = Tensor::zeros((1, 3, 24, 24), DType::F32, &Device::Cpu)?;
//! let mut colony = Colony::new(&rule, 1, 24, 24, chunk_seed(42, 0))?;
//! colony.evolve(&image, 5)?;
//! assert_eq!(colony.predict()?.dims(), [1, 24, 24]);
//!
//! // The same in one call (a segmenter seeds its colony as chunk 0).
//! let classes = Segmenter::new(&rule).with_steps(5).with_seed(42).segment_batch(&image)?;
//! assert_eq!(classes.to_vec3::<u32>()?, colony.predict()?.to_vec3::<u32>()?);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod alloc;
pub mod cascade;
mod checkpoint;
pub mod classes;
pub mod coarse;
mod colony;
mod config;
pub mod cpu_op;
mod draws;
mod ensemble;
mod error;
mod fused;
mod image_norm;
pub mod io;
mod model;
mod norm;
mod params;
mod rule;
mod segmenter;
mod settle;
mod var_builder;

pub use cascade::{Cascade, CascadeLevel};
pub use colony::Colony;
pub use config::{CellConfig, Norm, Perception};
pub use draws::{chunk_seed, normal_state, splitmix64, step_rng, StepDraws};
pub use ensemble::{ensemble_mean, repeat_members, EnsembleOutput};
pub use error::{CoreError, ErrorShapes, InvalidValue, PathError, Result, ShapeError};
pub use image_norm::{standardise, ImageNorm};
pub use model::{CellModel, Downsampled};
pub use norm::{normalize, normalize_firing, NORM_EPS};
pub use params::{
    param_shapes, CellParams, Layer, LayerId, NamedParam, ParamCount, ParamGroup, Perceive,
    TensorKind, RESET_BIAS_INIT,
};
pub use rule::{CellRule, StepBackend};
#[cfg(feature = "image")]
pub use segmenter::rgb_to_chw;
pub use segmenter::{Segmenter, DEFAULT_STEPS};
pub use settle::{SettleTracker, Settled, Settling};
pub use var_builder::var_builder_tensor;
