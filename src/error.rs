//! The error type of the command-line glue: every variant names the file
//! or the value that is wrong.

/// What went wrong while drawing what an evaluation measured.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An option, argument or record has a value the tool cannot use.
    #[error("invalid {} '{}': {}", .0.name, .0.value, .0.reason)]
    Invalid(#[from] ca_core::InvalidValue),
    /// An evaluation, the adversarial procedure or a sweep failed.
    #[error(transparent)]
    Eval(#[from] ca_eval::EvalError),
    /// A picture, a plot or a curve could not be drawn or written.
    #[error(transparent)]
    Viz(#[from] ca_viz::VizError),
}

/// Results of the command-line glue.
pub type Result<T> = std::result::Result<T, ToolError>;

impl ToolError {
    /// A [`ToolError::Invalid`] for option `name` with `value`.
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        ca_core::InvalidValue::new(name, value, reason).into()
    }
}

/// The end of a command-line program's `main`: on an error, prints
/// `error: ...` to stderr and exits with status 1 (a clean message, not a
/// panic's backtrace); on success returns.
pub fn exit_on_error<E: std::fmt::Display>(result: std::result::Result<(), E>) {
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
