//! The error type of `ca-core`, and the error shapes every crate of the
//! workspace shares ([`PathError`], [`InvalidValue`], [`ShapeError`]): each
//! crate keeps one error enum of its own and wraps these, so a file, a
//! rejected value or a tensor shape reads the same wherever it fails.

use std::path::PathBuf;

/// A file or directory that could not be read, written or created.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PathError {
    /// The file or directory.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

impl PathError {
    /// The error of `source` on `path`.
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PathError {
            path: path.into(),
            source,
        }
    }
}

/// A value that a config field, an option or an argument cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} = {value}: {reason}")]
pub struct InvalidValue {
    /// The field, option or flag.
    pub name: &'static str,
    /// Its value, printed.
    pub value: String,
    /// Why it is rejected.
    pub reason: String,
}

impl InvalidValue {
    /// `name` may not be `value`, because `reason`.
    pub fn new(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        InvalidValue {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The constructors of the shared shapes for every error type that wraps
/// them (`From<PathError>` and `From<InvalidValue>`), so that no crate
/// writes its own: `EvalError::io(path, e)`, `VizError::invalid("--at", 0,
/// "must be positive")`.
pub trait ErrorShapes: From<PathError> + From<InvalidValue> {
    /// The error of `source` on `path`, as a [`PathError`].
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PathError::new(path, source).into()
    }

    /// Option `name` may not be `value`, because `reason`, as an
    /// [`InvalidValue`].
    fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        InvalidValue::new(name, value, reason).into()
    }
}

impl<E: From<PathError> + From<InvalidValue>> ErrorShapes for E {}

/// A tensor argument of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: expected shape {expected}, got {got:?}")]
pub struct ShapeError {
    /// Which argument.
    pub what: &'static str,
    /// The expected shape, in words.
    pub expected: String,
    /// The shape received.
    pub got: Vec<usize>,
}

impl ShapeError {
    /// `what` should have been `expected` and is `got`.
    pub fn new(what: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        ShapeError {
            what,
            expected: expected.into(),
            got: got.to_vec(),
        }
    }
}

/// Everything that can go wrong in `ca-core`. Every message names the value,
/// tensor or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A [`crate::CellConfig`] field holds a value the rule cannot use.
    #[error("invalid cell config: {0}")]
    InvalidConfig(#[from] InvalidValue),
    /// A tensor handed to the rule or the colony has the wrong shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A checkpoint file could not be read or written, or does not match.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor of a rule's parameters (or of a model built around the
    /// rule, read by [`crate::var_builder_tensor`]) is missing, has a shape
    /// other than the config needs, or is not f32 on the rule's device.
    #[error("tensor '{name}': {reason}")]
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
    /// The field, value and reason of an invalid-config error (of a
    /// [`crate::CellConfig`] field), e.g. for a command line that names
    /// the flag that set the field; `None` for every other error.
    pub fn invalid_field(&self) -> Option<&InvalidValue> {
        match self {
            CoreError::InvalidConfig(v) => Some(v),
            _ => None,
        }
    }
}
