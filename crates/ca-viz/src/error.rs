//! The error type of `ca-viz`: every variant names the file or the value
//! that is wrong.

use std::path::PathBuf;

/// What went wrong while drawing or writing a picture, a plot or a curve.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    /// A file or directory could not be read, written or created.
    #[error(transparent)]
    Io(#[from] ca_core::PathError),
    /// An image could not be encoded or written.
    #[error("cannot write image {path}: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: image::ImageError,
    },
    /// A plot could not be drawn.
    #[error("cannot draw plot {path}: {reason}")]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// What the plotting library said.
        reason: String,
    },
    /// An option or argument has a value the function cannot use.
    #[error("invalid {} '{}': {}", .0.name, .0.value, .0.reason)]
    Invalid(#[from] ca_core::InvalidValue),
    /// The model failed (shapes, device).
    #[error(transparent)]
    Core(#[from] ca_core::CoreError),
    /// A tensor operation failed.
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Results of `ca-viz`.
pub type Result<T> = std::result::Result<T, VizError>;
