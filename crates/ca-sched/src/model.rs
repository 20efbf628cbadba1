//! Where the scheduler's data come from: one small trait, so that any
//! dataset plugs in without changes here (what it trains is a
//! [`ca_model::Trainable`]).

use candle_core::{Device, Tensor};

use crate::error::Result;

/// A source of labelled images, addressed by sample index.
pub trait TrainData {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Images `[B, 3, H, W]` f32 in `[0, 1]` and labels `[B, H', W']` u32
    /// for the `(sample index, augmentation seed)` pairs of `items`, on
    /// `device`. The same pair must always give the same image (a slot
    /// keeps its image across mini-unrolls).
    fn batch(&self, items: &[(usize, u64)], device: &Device) -> Result<(Tensor, Tensor)>;
}
