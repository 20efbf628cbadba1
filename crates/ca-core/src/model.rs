//! [`CellModel`]: what a colony needs from a segmentation model built
//! around one cell rule, so that a plain rule (one cell per pixel) and a
//! model with an encoder and a decoder (a smaller state grid) evolve
//! through the same [`crate::Colony`] and the same evaluation.

use std::rc::Rc;
use std::sync::Arc;

use candle_core::Tensor;

use crate::error::{CoreError, Result};
use crate::image_norm::standardise;
use crate::rule::CellRule;

/// A segmentation model around one cell rule: the environment the cells
/// read, the rule that evolves their state, and the class logits read off
/// the state.
///
/// Images are `[B, 3, H, W]` f32 with pixel values in `[0, 1]`.
///
/// # Shapes
///
/// - images `[B, 3, H, W]` -> environment `[B, E, h, w]`, with
///   `(h, w) = state_size((H, W))` and `E = rule().config().env_channels`;
/// - state `[B, S, h, w]` -> logits `[B, classes, H', W']` at the label
///   size `(H', W')` asked for.
pub trait CellModel {
    /// The cell rule that evolves the state.
    fn rule(&self) -> &CellRule;

    /// The environment `[B, E, h, w]` the cells see, from images
    /// `[B, 3, H, W]` in `[0, 1]`: the images (standardised when the
    /// config has an [`crate::ImageNorm`]) for a plain rule,
    /// an encoder's output for a high-resolution model.
    fn environment(&self, images: &Tensor) -> Result<Tensor>;

    /// Class logits `[B, classes, H', W']` from the state `[B, S, h, w]`,
    /// where `out_size = (H', W')` is the label resolution. It is passed in
    /// because the state grid alone does not fix it: behind a stride-2
    /// encoder, images of 95 and 96 pixels both give a 48-cell state.
    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor>;

    /// The state grid `(h, w)` in cells for images of `(H, W)` pixels.
    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize);
}

/// One cell per pixel: the environment is the image (standardised when
/// the config has an [`crate::ImageNorm`]), the rule's 1x1 classifier
/// makes the logits.
impl CellModel for CellRule {
    fn rule(&self) -> &CellRule {
        self
    }

    fn environment(&self, images: &Tensor) -> Result<Tensor> {
        standardise(self.config().image_norm.as_ref(), images)
    }

    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor> {
        let (_, _, h, w) = state.dims4()?;
        if (h, w) != out_size {
            return Err(CoreError::Shape(crate::ShapeError {
                what: "labels of a plain CA (one cell per pixel)",
                expected: format!("[{h}, {w}] (the state grid)"),
                got: vec![out_size.0, out_size.1],
            }));
        }
        CellRule::logits(self, state)
    }

    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
        image_size
    }
}

macro_rules! forward_cell_model {
    ($($ptr:ty),*) => {$(
        /// Forwards to the model pointed to, so a colony can borrow or
        /// share its model.
        impl<M: CellModel + ?Sized> CellModel for $ptr {
            fn rule(&self) -> &CellRule {
                (**self).rule()
            }
            fn environment(&self, images: &Tensor) -> Result<Tensor> {
                (**self).environment(images)
            }
            fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor> {
                (**self).logits(state, out_size)
            }
            fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
                (**self).state_size(image_size)
            }
        }
    )*};
}

forward_cell_model!(&M, Box<M>, Rc<M>, Arc<M>);

/// A model whose class logits are averaged over `factor x factor` blocks
/// of pixels: its prediction on a label grid `factor` times coarser than
/// the images, e.g. a 96/48 high-resolution model scored on the 48x48
/// label maps of the 48/48 models. Everything else is the inner model's.
///
/// # Shapes
///
/// For images `[B, 3, H, W]` (`H`, `W` multiples of `factor`), the logits
/// are `[B, classes, H / factor, W / factor]`.
#[derive(Debug, Clone)]
pub struct Downsampled<M: CellModel> {
    inner: M,
    factor: usize,
}

impl<M: CellModel> Downsampled<M> {
    /// `inner` predicting on a grid `factor` (at least 1) times coarser.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a factor of 0.
    pub fn new(inner: M, factor: usize) -> Result<Self> {
        if factor == 0 {
            return Err(CoreError::InvalidConfig(crate::InvalidValue::new(
                "factor",
                0,
                "must be at least 1",
            )));
        }
        Ok(Downsampled { inner, factor })
    }
}

impl<M: CellModel> CellModel for Downsampled<M> {
    fn rule(&self) -> &CellRule {
        self.inner.rule()
    }

    fn environment(&self, images: &Tensor) -> Result<Tensor> {
        self.inner.environment(images)
    }

    /// The inner model's logits at `out_size` (the images' size),
    /// averaged over `factor x factor` blocks.
    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor> {
        let logits = self.inner.logits(state, out_size)?;
        let f = self.factor;
        if f == 1 {
            return Ok(logits);
        }
        if !out_size.0.is_multiple_of(f) || !out_size.1.is_multiple_of(f) {
            return Err(CoreError::Shape(crate::ShapeError {
                what: "images of a downsampled prediction",
                expected: format!("sides that are multiples of {f}"),
                got: vec![out_size.0, out_size.1],
            }));
        }
        Ok(logits.avg_pool2d(f)?)
    }

    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
        self.inner.state_size(image_size)
    }
}
