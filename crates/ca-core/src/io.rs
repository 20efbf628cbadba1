//! Reading and writing safetensors files: the helpers behind every model
//! file of the workspace (a [`crate::CellRule`], a high-resolution model, a
//! training checkpoint), with errors that name the file and the tensor, and
//! atomic writes (temporary file, fsync, rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

use crate::config::CellConfig;
use crate::error::{CoreError, Result};

/// Metadata key holding the JSON of the [`CellConfig`].
pub const CONFIG_KEY: &str = "ca.cell_config";
/// Metadata key naming the file format.
pub const FORMAT_KEY: &str = "ca.format";
/// The value of [`FORMAT_KEY`] this version writes and reads.
pub const FORMAT: &str = "ca-core/1";

/// A [`CoreError::Checkpoint`] about `path`.
pub(crate) fn bad(path: &Path, reason: impl Into<String>) -> CoreError {
    CoreError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks that tensor `name`, read from `path`, has shape `expected` and
/// dtype f32; the error names the file, the tensor and what differs.
pub fn check_tensor(path: &Path, name: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.dims() != expected {
        return Err(bad(
            path,
            format!(
                "tensor '{name}' has shape {:?}, the model needs {expected:?}",
                t.dims()
            ),
        ));
    }
    if t.dtype() != DType::F32 {
        return Err(bad(
            path,
            format!("tensor '{name}' is {:?}, not f32", t.dtype()),
        ));
    }
    Ok(())
}

/// Reads a whole file, with errors that name it (missing, a directory, ...).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        return Err(bad(path, "is a directory, not a checkpoint file"));
    }
    std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))
}

/// Parses safetensors bytes and returns the file and its metadata map
/// (empty when the file has none).
pub fn parse_safetensors<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(path, format!("unreadable safetensors header: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    Ok((st, meta))
}

/// Every tensor of safetensors bytes, by name, on `device`, and the
/// metadata map; `path` names the source in errors.
pub fn read_tensors(
    bytes: &[u8],
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let (st, meta) = parse_safetensors(bytes, path)?;
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let t = view
                .load(device)
                .map_err(|e| bad(path, format!("tensor '{name}': {e}")))?;
            Ok((name, t))
        })
        .collect::<Result<_>>()?;
    Ok((tensors, meta))
}

/// The [`CellConfig`] stored in a checkpoint's metadata.
pub fn config_from_metadata(meta: &HashMap<String, String>, path: &Path) -> Result<CellConfig> {
    let json = meta.get(CONFIG_KEY).ok_or_else(|| {
        bad(
            path,
            format!("no '{CONFIG_KEY}' metadata: not a checkpoint written by ca-core"),
        )
    })?;
    serde_json::from_str(json).map_err(|e| {
        bad(
            path,
            format!("metadata '{CONFIG_KEY}' is not a cell config: {e}"),
        )
    })
}

/// Writes tensors and metadata to `path` through a temporary file in the
/// same directory, synced, then renamed over `path`.
pub fn write_safetensors_atomic(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    meta: HashMap<String, String>,
) -> Result<()> {
    let bytes = safetensors::serialize(tensors, Some(meta))
        .map_err(|e| bad(path, format!("cannot serialize: {e}")))?;
    write_bytes_atomic(path, &sorted_header(bytes))
}

/// The same safetensors bytes with every key of the JSON header in sorted
/// order. The serializer writes the metadata from a `HashMap`, in an order
/// that changes from run to run; sorting makes equal tensors and metadata
/// give equal files. Bytes that do not parse as expected are returned as
/// they are (they come from the serializer, so this does not happen).
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    use std::collections::BTreeMap;
    type Header = BTreeMap<String, BTreeMap<String, serde_json::Value>>;
    let Some(len) = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .and_then(|b| usize::try_from(u64::from_le_bytes(b)).ok())
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    let Ok(sorted) = serde_json::from_slice::<Header>(header).and_then(|h| serde_json::to_vec(&h))
    else {
        return bytes;
    };
    if sorted.len() > len {
        return bytes;
    }
    let mut out = bytes;
    out[8..8 + sorted.len()].copy_from_slice(&sorted);
    out[8 + sorted.len()..8 + len].fill(b' ');
    out
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        bad(path, format!("cannot write: {e}"))
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}
