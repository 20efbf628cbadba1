//! The error type of `ca-sched`.

use std::path::PathBuf;

/// Everything that can go wrong while training or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// A [`crate::TrainConfig`] field holds a value training cannot use.
    #[error("invalid training config: {0}")]
    InvalidConfig(#[from] ca_core::InvalidValue),
    /// The loss was NaN or infinite for too many steps in a row.
    #[error("training diverged: the loss was not finite for {count} steps in a row (last at step {step}); the last good checkpoint is kept")]
    Diverged {
        /// Consecutive non-finite steps.
        count: usize,
        /// The optimizer step of the last one.
        step: u64,
    },
    /// A training checkpoint could not be read or written, or does not match.
    #[error("training checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The data source failed (its own error kept as the source, e.g. a
    /// `ca_data::DataError` naming the file), or the data do not fit the
    /// evaluation or the loss (a message).
    #[error("data: {0}")]
    Data(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An I/O error on a named file.
    #[error(transparent)]
    Io(#[from] ca_core::PathError),
    /// From the cell rule.
    #[error(transparent)]
    Core(#[from] ca_core::CoreError),
    /// From a model or metrics file.
    #[error(transparent)]
    Model(#[from] ca_model::ModelError),
    /// From a high-resolution model (building or loading it).
    #[error(transparent)]
    Hires(#[from] ca_hires::HiresError),
    /// From the U-Net baseline.
    #[error(transparent)]
    UNet(#[from] ca_unet::UNetError),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`SchedError`].
pub type Result<T> = std::result::Result<T, SchedError>;

impl SchedError {
    /// A [`SchedError::Data`] of `error` (any error type, or a message).
    pub fn data(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SchedError::Data(error.into())
    }

    /// The field, value and reason of an invalid-config error (of a
    /// [`crate::TrainConfig`], [`crate::AdamConfig`] or
    /// [`crate::LearnerConfig`] field), e.g. for a command line that names
    /// the flag that set the field; `None` for every other error.
    pub fn invalid_field(&self) -> Option<&ca_core::InvalidValue> {
        match self {
            SchedError::InvalidConfig(v) => Some(v),
            _ => None,
        }
    }
}
