//! # ca-viz: pictures and plots of segmentation cellular automata
//!
//! Everything the project draws, usable without its evaluation or training
//! crates:
//!
//! - [`render`]: class maps in a fixed palette, overlays on the photo, the
//!   hidden state `[S, H, W]` projected to RGB by a fixed random matrix,
//!   heat maps, stacking and enlarging, PNG files and animated GIFs of an
//!   evolution (paper Figs 2, 3 and 9);
//! - [`segment`]: one photo of any size through any [`ca_core::CellModel`],
//!   with its class map, overlay and evolution frames;
//! - [`plot`]: line plots (named series, vertical marks) as PNG files, by
//!   `plotters`, the only crate of the workspace that depends on it;
//! - [`curves`]: training curves (smoothed loss, periodic validation IoU)
//!   read from `train_pets` metrics files.
//!
//! Pixels are `[3, H, W]` f32 values in `[0, 1]` or 8-bit `image::RgbImage`s;
//! class maps are row-major `u32` class ids (0 background, 1 object, 2
//! boundary).
#![warn(missing_docs)]

pub mod curves;
pub mod error;
pub mod plot;
pub mod render;
pub mod segment;
pub mod video;

pub use error::{Result, VizError};
