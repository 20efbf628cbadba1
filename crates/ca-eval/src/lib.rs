//! # ca-eval: evaluating segmentation cellular automata
//!
//! What the project measures, as data (tables and records, never pictures:
//! drawing them is `ca-viz`'s job, and neither crate depends on the other):
//!
//! - [`protocols`]: the paper's long-run experiments on any
//!   [`ca_core::CellModel`] and any split (stability far past the training
//!   target, image switching, shifts, state and logit norms, the spread of
//!   stochastic runs), each returning [`protocols::Table`]s and a
//!   [`protocols::Chart`] naming what a plot of it shows; IoU comes from
//!   `ca-sched`'s one evaluator, [`ca_sched::iou_over_time`];
//! - [`adversarial`]: the paper's Appendix A.2 procedure, a perturbation of
//!   a grayed-out region optimised through the unrolled steps;
//! - [`probe`]: whether a model reads the image (its maps of a photo
//!   against those of the photo shuffled and of a grey image), and the
//!   frames of a probe picture;
//! - [`pets`]: the Oxford-IIIT Pet loader (`ca-data`) as `ca-sched`
//!   training data, and where the data live by default;
//! - [`sweep`]: equal-CPU-budget recipe sweeps over `train_pets` in
//!   single-threaded lanes, ranked by the median validation object IoU.
//!
//! Images are `[3, S, S]` f32 values in `[0, 1]`, labels `[S, S]` class ids
//! (0 background, 1 object, 2 boundary).
#![warn(missing_docs)]

pub mod adversarial;
pub mod error;
pub mod pets;
pub mod probe;
pub mod protocols;
pub mod sweep;

pub use error::{EvalError, Result};
