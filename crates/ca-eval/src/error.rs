//! The error type of `ca-eval`: every variant names the file or the value
//! that is wrong.

/// What went wrong in an evaluation, the adversarial procedure or a sweep.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file or directory could not be read, written or created.
    #[error(transparent)]
    Io(#[from] ca_core::PathError),
    /// An option or argument has a value the function cannot use.
    #[error("invalid {} '{}': {}", .0.name, .0.value, .0.reason)]
    Invalid(#[from] ca_core::InvalidValue),
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
