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
