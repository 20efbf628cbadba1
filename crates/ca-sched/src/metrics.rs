//! A JSON-lines metrics file per run: one object per line, appended.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, SchedError};

/// Appends JSON objects, one per line, to a file.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending (created if absent), so a resumed run
    /// continues the same file.
    pub fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SchedError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one record as a line and flushes it.
    pub fn write(&mut self, record: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{record}")
            .and_then(|_| self.file.flush())
            .map_err(|source| SchedError::Io {
                path: self.path.clone(),
                source,
            })
    }
}
