//! The error type of `ca-hires`.

use std::path::PathBuf;

/// Everything that can go wrong in `ca-hires`. Every message names the
/// value, tensor or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum HiresError {
    /// A construction argument holds a value the model cannot use.
    #[error("invalid high-resolution model: {0}")]
    InvalidConfig(#[from] ca_core::InvalidValue),
    /// A tensor handed to the encoder, the decoder or the model has the
    /// wrong shape.
    #[error(transparent)]
    Shape(#[from] ca_core::ShapeError),
    /// A checkpoint file could not be read or written, or does not match.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// From the cell rule.
    #[error(transparent)]
    Core(#[from] ca_core::CoreError),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`HiresError`].
pub type Result<T> = std::result::Result<T, HiresError>;
