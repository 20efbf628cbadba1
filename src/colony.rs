//! A colony evolved by a segmentation model of either kind: the cells see
//! the model's environment of the images (the images themselves, or an
//! encoder's output on a smaller grid) and the logits come at the images'
//! resolution (the rule's classifier, or a decoder). What the protocols and
//! `segment` run.

use ca_core::Colony;
use ca_sched::SegModel;
use candle_core::{DType, Tensor};

use crate::error::Result;

/// A [`Colony`] of `model`'s rule on the state grid of `H x W` images.
#[derive(Debug)]
pub struct ModelColony<'m, M: SegModel> {
    model: &'m M,
    colony: Colony,
    image_size: (usize, usize),
}

impl<'m, M: SegModel> ModelColony<'m, M> {
    /// `batch` colonies for images of `image_size = (H, W)` pixels, state
    /// `N(0, I)` seeded from `seed` on the model's state grid.
    pub fn new(model: &'m M, batch: usize, image_size: (usize, usize), seed: u64) -> Result<Self> {
        let (h, w) = model.state_size(image_size);
        let colony = Colony::new(model.rule().clone(), batch, h, w, seed)?;
        Ok(ModelColony {
            model,
            colony,
            image_size,
        })
    }

    /// The environment `[B, E, h, w]` the cells read, from images
    /// `[B, 3, H, W]` in [0, 1]: compute it once per image, step with it
    /// many times.
    pub fn environment(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.model.environment(images)?.detach())
    }

    /// One CA step under `env` (from [`ModelColony::environment`]).
    pub fn step(&mut self, env: &Tensor) -> Result<()> {
        Ok(self.colony.step(env)?)
    }

    /// The state `[B, S, h, w]`.
    pub fn state(&self) -> &Tensor {
        self.colony.state()
    }

    /// Replaces the state (the shape of [`ModelColony::state`] required),
    /// e.g. to damage a region of the colony or to restore a saved state.
    pub fn set_state(&mut self, state: Tensor) -> Result<()> {
        Ok(self.colony.set_state(state)?)
    }

    /// The state grid `(h, w)` in cells.
    pub fn state_size(&self) -> (usize, usize) {
        self.model.state_size(self.image_size)
    }

    /// Class logits `[B, classes, H, W]` at the images' resolution.
    pub fn logits(&self) -> Result<Tensor> {
        Ok(self
            .model
            .logits(self.colony.state(), self.image_size)?
            .detach())
    }

    /// The most likely class of every pixel, `[B, H, W]` u32.
    pub fn predict(&self) -> Result<Tensor> {
        Ok(self.logits()?.argmax(1)?.to_dtype(DType::U32)?)
    }
}
