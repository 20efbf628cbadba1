//! The error type of `ca-model`.

use std::path::PathBuf;

/// What can go wrong while reading or writing a model file or a metrics
/// file: every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file whose contents do not make a model.
    #[error("model file {path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A metrics file with a malformed line, or a record that cannot be
    /// written.
    #[error("metrics {0}")]
    Metrics(String),
    /// An I/O error on a named file.
    #[error(transparent)]
    Io(#[from] ca_core::PathError),
    /// From the cell rule (reading a plain model).
    #[error(transparent)]
    Core(#[from] ca_core::CoreError),
    /// From a high-resolution model (building or reading it).
    #[error(transparent)]
    Hires(#[from] ca_hires::HiresError),
    /// From a U-Net file.
    #[error(transparent)]
    UNet(#[from] ca_unet::UNetError),
}

/// `Result` with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
