//! The error type of `ca-eval`: every variant names the file or the value
//! that is wrong.

use std::path::PathBuf;

/// What went wrong in an evaluation, the adversarial procedure or a sweep.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file or directory could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An option or argument has a value the function cannot use.
    #[error("invalid {name} '{value}': {reason}")]
    Invalid {
        /// The option.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The cell rule or the colony failed (shapes, device).
    #[error(transparent)]
    Core(#[from] ca_core::CoreError),
    /// The evaluator or the training-data interface failed.
    #[error(transparent)]
    Sched(#[from] ca_sched::SchedError),
    /// Loading data failed.
    #[error(transparent)]
    Data(#[from] ca_data::DataError),
    /// A tensor operation failed.
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Results of `ca-eval`.
pub type Result<T> = std::result::Result<T, EvalError>;

impl EvalError {
    /// An [`EvalError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`EvalError::Invalid`] for option `name` with `value`.
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        EvalError::Invalid {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
