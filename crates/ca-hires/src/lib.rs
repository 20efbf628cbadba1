//! # ca-hires: cellular automata on a state grid smaller than the image
//!
//! Paper section 3.4 (Sandler et al., "Image segmentation via Cellular
//! Automata", 2020): an [`Encoder`] of `levels` stride-2 convolutions
//! (kernel 3, padding 1; 3 -> 8 channels, then 8 -> 8) maps images
//! `[B, 3, H, W]` to an 8-channel environment `[B, 8, h, w]`,
//! `h = ceil(H / 2^levels)`; the cell rule ([`ca_core::CellRule`] with
//! `env_channels = 8`) evolves the state `[B, S, h, w]`; a [`Decoder`] of
//! `levels` stride-2 transposed convolutions (kernel 3; `S -> classes` for
//! one level, `S -> 8 -> ... -> classes` for more) maps the state to
//! logits `[B, classes, H, W]`, exactly at the image's size, odd sizes
//! included. ReLUs sit between stacked layers, never after the last one.
//! Factors 2, 4, 8: 96 -> 48, 192 -> 48, 384 -> 48.
//!
//! For the paper's 96/48 model (state 48, hidden 72) the encoder has 224
//! parameters and the decoder 1,299; the rule's perception layer reads 5
//! more channels than with RGB (3,240 parameters more); the rule's 1x1
//! classifier (147) is not used.
//!
//! ## Layering
//!
//! The model needs `ca-core` and candle only. Besides [`HiresModel::new`]
//! (fresh, seeded) and [`HiresModel::load`] (a file with its metadata),
//! [`HiresModel::from_var_builder`] builds it from a
//! [`candle_nn::VarBuilder`] (a memory-mapped file, a `VarMap` to train it
//! inside a larger candle model), and the [`Encoder`] is a
//! [`candle_nn::Module`]. [`HiresModel`] implements
//! [`ca_core::CellModel`], so [`ca_core::Colony`] evolves it exactly as it
//! evolves a plain rule; the trainer (`ca-sched`) sits above this crate and
//! knows how to train and save it.
//!
//! ```
//! use ca_core::CellConfig;
//! use ca_hires::HiresModel;
//! use candle_core::{DType, Device, Tensor};
//!
//! # fn main() -> Result<(), ca_hires::HiresError> {
//! let config = CellConfig { state_channels: 8, hidden_channels: 16, env_channels: 8, ..CellConfig::default() };
//! let model = HiresModel::new(config, 1, 0, &Device::Cpu)?;
//! let images = Tensor::zeros((2, 3, 33, 32), DType::F32, &Device::Cpu)?;
//! let env = model.environment(&images)?;
//! assert_eq!(env.dims(), [2, 8, 17, 16]);
//! let state = Tensor::zeros((2, 8, 17, 16), DType::F32, &Device::Cpu)?;
//! assert_eq!(model.logits(&state, (33, 32))?.dims(), [2, 3, 33, 32]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod cell_model;
mod checkpoint;
mod error;
mod layers;
mod model;
mod upsample;
mod var_builder;

pub use checkpoint::{expect_levels, hires_levels, HIRES_FORMAT, HIRES_KEY};
pub use error::{HiresError, Result};
pub use layers::{
    decoder_shapes, encoder_shapes, reduced_size, Decoder, Encoder, DECODER_CHANNELS, ENV_CHANNELS,
    IMAGE_CHANNELS, MAX_LEVELS,
};
pub use model::{HiresModel, HiresParamCount};
