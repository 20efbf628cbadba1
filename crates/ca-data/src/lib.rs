//! Dataset loading for segmentation cellular automata: the Oxford-IIIT Pet
//! layout (`images/NAME.jpg`, `annotations/trimaps/NAME.png`,
//! `annotations/{trainval,test}.txt`), decoded by content, resized to a
//! square training size, cached in memory and served as candle batches
//! (images `[B, 3, S, S]` f32 in [0, 1], labels `[B, L, L]` u32), plus a
//! seeded generator of synthetic scenes in the same layout.
//!
//! Class ids: 0 background, 1 object, 2 boundary; see [`labels`] for the one
//! mapping from trimap values.
//!
//! ```no_run
//! use ca_data::{Augment, LoadOptions, PetsDataset, Split};
//! # fn main() -> Result<(), ca_data::DataError> {
//! let ds = PetsDataset::open("data/pets".as_ref(), Split::TrainVal, &LoadOptions::square(48))?;
//! for batch in ds.epoch_batches(32, 7, 0, Augment::default(), &candle_core::Device::Cpu)? {
//!     let batch = batch?;
//!     assert_eq!(batch.images.dims()[1..], [3, 48, 48]);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod hostile;
pub mod labels;
pub mod limits;
pub mod photo;
pub mod resize;
pub mod rng;
pub mod sequence;
pub mod split;
pub mod synth;
pub mod video;

pub use augment::{Augment, CropBox, Drawn, JitterFactors};
pub use batch::{epoch_order, Batch, EpochBatches};
pub use dataset::{
    image_path, trimap_path, LoadOptions, LoadPolicy, LoadReport, PetsDataset, Sample,
};
pub use decode::{decode_rgb, label_map_from_bytes, load_label_map, load_rgb};
pub use error::DataError;
pub use labels::{trimap_to_class, BACKGROUND, BOUNDARY, CLASS_NAMES, NUM_CLASSES, OBJECT};
pub use limits::{ImageLimits, LimitError};
pub use photo::{decode_photo, load_photo, PHOTO_FORMATS};
pub use rng::stream_rng;
pub use split::{breed_of, fold_mask, parse_split, read_split, validation_mask, Split, SplitEntry};
