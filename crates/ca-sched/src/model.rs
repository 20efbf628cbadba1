//! What the scheduler trains and where its data come from: two small traits,
//! so that the high-resolution path (encoder, CA, decoder) and any dataset
//! plug in without changes here.

use std::collections::HashMap;

use ca_core::{CellRule, NamedParam};
use candle_core::{Device, Tensor};

use crate::error::Result;

/// A segmentation model built around one cell rule.
pub trait SegModel {
    /// The cell rule that evolves the state.
    fn rule(&self) -> &CellRule;

    /// The environment `[B, E, h, w]` the cells see, from images
    /// `[B, 3, H, W]` (the identity for a plain CA, an encoder for high
    /// resolution).
    fn environment(&self, images: &Tensor) -> Result<Tensor>;

    /// Class logits `[B, classes, H', W']` from the state `[B, S, h, w]`,
    /// where `out_size = (H', W')` is the label resolution. It is passed in
    /// because the state grid alone does not fix it: behind a stride-2
    /// encoder, images of 95 and 96 pixels both give a 48-cell state.
    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor>;

    /// The state grid `(h, w)` for images of `(H, W)` pixels.
    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize);

    /// Every tensor of the model with its name and trainability; the
    /// optimizer updates the trainable ones, checkpoints store them all.
    fn named_params(&self) -> Vec<NamedParam>;

    /// Metadata that lets a loader rebuild the model (e.g. its config).
    fn metadata(&self) -> HashMap<String, String>;
}

impl SegModel for CellRule {
    fn rule(&self) -> &CellRule {
        self
    }

    fn environment(&self, images: &Tensor) -> Result<Tensor> {
        Ok(images.clone())
    }

    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor> {
        let (_, _, h, w) = state.dims4()?;
        if (h, w) != out_size {
            return Err(ca_core::CoreError::Shape {
                what: "labels of a plain CA (one cell per pixel)",
                expected: format!("[{h}, {w}] (the state grid)"),
                got: vec![out_size.0, out_size.1],
            }
            .into());
        }
        Ok(CellRule::logits(self, state)?)
    }

    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
        image_size
    }

    fn named_params(&self) -> Vec<NamedParam> {
        self.params().named()
    }

    fn metadata(&self) -> HashMap<String, String> {
        self.to_safetensors_parts().1
    }
}

/// A source of labelled images, addressed by sample index.
pub trait TrainData {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Images `[B, 3, H, W]` f32 and labels `[B, H', W']` u32 for the
    /// `(sample index, augmentation seed)` pairs of `items`, on `device`. The
    /// same pair must always give the same image (a slot keeps its image
    /// across mini-unrolls).
    fn batch(&self, items: &[(usize, u64)], device: &Device) -> Result<(Tensor, Tensor)>;
}
