//! The error type of the facade's tools (`render`, `plot`, `protocols`,
//! `segment`): every variant names the file or the value that is wrong.

use std::path::PathBuf;

/// What went wrong in a tool of the facade.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A file or directory could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
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
    /// An option or argument has a value the tool cannot use.
    #[error("invalid {name} '{value}': {reason}")]
    Invalid {
        /// The option.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The cell rule failed (shapes, checkpoint, device).
    #[error(transparent)]
    Core(#[from] ca_core::CoreError),
    /// The model (high-resolution parts, checkpoint) failed.
    #[error(transparent)]
    Hires(#[from] ca_hires::HiresError),
    /// A scheduler function (model interface, evaluation) failed.
    #[error(transparent)]
    Sched(#[from] ca_sched::SchedError),
    /// Loading data failed.
    #[error(transparent)]
    Data(#[from] ca_data::DataError),
    /// A tensor operation failed.
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Results of the facade's tools.
pub type Result<T> = std::result::Result<T, ToolError>;

impl ToolError {
    /// An [`ToolError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ToolError::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`ToolError::Invalid`] for option `name` with `value`.
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        ToolError::Invalid {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
