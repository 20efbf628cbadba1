//! The error type of the crate: every message names the file or the value
//! that is wrong.

use std::path::PathBuf;

/// Everything that can go wrong while reading, checking, batching or writing
/// Oxford-IIIT Pet style data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read or written.
    #[error(transparent)]
    Io(#[from] ca_core::PathError),

    /// The dataset root has no `annotations/` directory.
    #[error("{}: no annotations/ directory, so this is not an Oxford-IIIT Pet layout", root.display())]
    NoAnnotations {
        /// The dataset root that was given.
        root: PathBuf,
    },

    /// The split file (`annotations/trainval.txt` or `annotations/test.txt`) is missing.
    #[error("{}: split file not found", path.display())]
    MissingSplit {
        /// The split file that was expected.
        path: PathBuf,
    },

    /// A line of a split file is not `NAME CLASSID SPECIES BREEDID`.
    #[error("{}:{line}: malformed split line {text:?}: {reason}", path.display())]
    MalformedLine {
        /// The split file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The line as read (without its line ending).
        text: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A name appears twice in a split file.
    #[error("{}:{line}: duplicate name {name:?} (first listed on line {first_line})", path.display())]
    DuplicateName {
        /// The split file.
        path: PathBuf,
        /// The 1-based line of the repeated entry.
        line: usize,
        /// The repeated name.
        name: String,
        /// The 1-based line where the name was first listed.
        first_line: usize,
    },

    /// A split file lists no sample at all.
    #[error("{}: split file lists no samples", path.display())]
    EmptySplit {
        /// The split file.
        path: PathBuf,
    },

    /// No listed sample could be loaded (every one was skipped).
    #[error("{}: none of the {skipped} listed samples could be loaded", path.display())]
    NoSamples {
        /// The split file.
        path: PathBuf,
        /// How many samples were skipped.
        skipped: usize,
    },

    /// The image of a listed sample does not exist.
    #[error("{}: missing image for sample {name:?}", path.display())]
    MissingImage {
        /// The sample name.
        name: String,
        /// The image path that was expected.
        path: PathBuf,
    },

    /// The trimap of a listed sample does not exist.
    #[error("{}: missing trimap for sample {name:?}", path.display())]
    MissingTrimap {
        /// The sample name.
        name: String,
        /// The trimap path that was expected.
        path: PathBuf,
    },

    /// A file exists but cannot be decoded as an image (empty, truncated,
    /// unknown format, ...).
    #[error("{}: cannot decode image: {reason}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },

    /// An image's header declares dimensions over the
    /// [`crate::ImageLimits`] (checked before decoding).
    #[error("{}: image over the limits, not decoded: {source}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit it is over.
        #[source]
        source: crate::limits::LimitError,
    },

    /// A trimap holds a value other than 1, 2 or 3.
    #[error("{}: trimap value {value} at (x={x}, y={y}) is not 1 (pet), 2 (background) or 3 (boundary)", path.display())]
    TrimapValue {
        /// The trimap file.
        path: PathBuf,
        /// The offending raw value.
        value: u16,
        /// Column of the first offending pixel.
        x: u32,
        /// Row of the first offending pixel.
        y: u32,
    },

    /// A trimap is stored in a form that has no single value per pixel
    /// (e.g. a colour image whose channels differ).
    #[error("{}: unsupported trimap: {reason}", path.display())]
    UnsupportedTrimap {
        /// The trimap file.
        path: PathBuf,
        /// Why it is not usable.
        reason: String,
    },

    /// The image and the trimap of one sample have different sizes.
    #[error(
        "sample {name:?}: image {} is {}x{} but trimap {} is {}x{}",
        image_path.display(), image_size.0, image_size.1,
        trimap_path.display(), trimap_size.0, trimap_size.1
    )]
    SizeMismatch {
        /// The sample name.
        name: String,
        /// The image file.
        image_path: PathBuf,
        /// The image size as (width, height).
        image_size: (u32, u32),
        /// The trimap file.
        trimap_path: PathBuf,
        /// The trimap size as (width, height).
        trimap_size: (u32, u32),
    },

    /// An option has a value that cannot work (the name is e.g.
    /// `image_size`).
    #[error("invalid option {0}")]
    InvalidOption(#[from] ca_core::InvalidValue),

    /// A sample index is outside the dataset.
    #[error("sample index {index} is out of range for a dataset of {len} samples")]
    IndexOutOfRange {
        /// The index that was asked for.
        index: usize,
        /// The number of samples.
        len: usize,
    },

    /// An image could not be encoded or written (synthetic data generation).
    #[error("{}: cannot encode image: {reason}", path.display())]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// What the encoder reported.
        reason: String,
    },

    /// Building a candle tensor failed.
    #[error("building a tensor failed: {0}")]
    Tensor(#[from] candle_core::Error),
}
