//! The error type of `ca-core`.

use std::path::PathBuf;

/// Everything that can go wrong in `ca-core`. Every message names the value,
/// tensor or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A [`crate::CellConfig`] field holds a value the rule cannot use.
    #[error("invalid cell config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, printed.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A tensor handed to the rule or the colony has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// A checkpoint file could not be read or written, or does not match.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor of a rule's parameters is missing, has a shape other than
    /// the config needs, or is not f32 on the rule's device.
    #[error("rule tensor '{name}': {reason}")]
    Param {
        /// The tensor's name (as in a safetensors file, with the prefix of
        /// the var builder it came from, if any).
        name: String,
        /// What is wrong with it, with both shapes for a shape mismatch.
        reason: String,
    },
    /// A model built around the rule (e.g. an encoder and decoder) failed
    /// for a reason of its own, in its words.
    #[error("{0}")]
    Model(String),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`CoreError`].
pub type Result<T> = std::result::Result<T, CoreError>;

impl CoreError {
    /// `(field, value, reason)` when this is an invalid-config error (of a
    /// [`crate::CellConfig`] field), e.g. for a command line that names
    /// the flag that set the field; `None` for every other error.
    pub fn invalid_field(&self) -> Option<(&'static str, String, String)> {
        match self {
            CoreError::InvalidConfig {
                field,
                value,
                reason,
            } => Some((field, value.clone(), reason.to_string())),
            _ => None,
        }
    }
}
