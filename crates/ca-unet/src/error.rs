//! The error type of `ca-unet`.

use std::path::PathBuf;

/// Everything that can go wrong in `ca-unet`. Every message names the
/// value, tensor or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    /// A [`crate::UNetConfig`] field holds a value the model cannot use.
    #[error("invalid U-Net config: {0}")]
    InvalidConfig(#[from] ca_core::InvalidValue),
    /// A tensor handed to the model has the wrong shape.
    #[error(transparent)]
    Shape(#[from] ca_core::ShapeError),
    /// A model file could not be read or written, or does not match.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// From `ca-core` (standardisation, file helpers).
    #[error(transparent)]
    Core(#[from] ca_core::CoreError),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`UNetError`].
pub type Result<T> = std::result::Result<T, UNetError>;
