//! Saving and loading a [`HiresModel`] as one safetensors file.
//!
//! Tensors: the rule's under their usual names (`perceive.weight`, ...;
//! no classifier), `encoder.{k}.weight|bias`, `decoder.{k}.weight|bias`.
//! Metadata: [`ca_core::io::CONFIG_KEY`] (the cell config, `env_channels = 8`),
//! [`HIRES_KEY`] (`{"levels": n}`) and [`ca_core::io::FORMAT_KEY`] =
//! [`HIRES_FORMAT`]. The [`HIRES_KEY`] entry is what tells a loader that a
//! file is a high-resolution model ([`hires_levels`]).

use std::collections::HashMap;
use std::path::Path;

use ca_core::io::{
    check_tensor, config_from_metadata, read_file, read_tensors, write_safetensors_atomic,
    FORMAT_KEY,
};
use ca_core::{CellConfig, CellRule};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{HiresError, Result};
use crate::layers::{check_levels, decoder_shapes, encoder_shapes, pair_up, Decoder, Encoder};
use crate::model::HiresModel;

/// Metadata key holding the JSON of the high-resolution settings.
pub const HIRES_KEY: &str = "ca.hires";
/// The value of [`ca_core::io::FORMAT_KEY`] in a high-resolution model file.
pub const HIRES_FORMAT: &str = "ca-hires/1";

/// What [`HIRES_KEY`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct HiresMeta {
    levels: usize,
}

fn bad(path: &Path, reason: impl Into<String>) -> HiresError {
    HiresError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The number of levels stored in a file's metadata: `Some(levels)` for a
/// high-resolution model, `None` when the file has no [`HIRES_KEY`] (a
/// plain cell rule, or a training checkpoint of one).
pub fn hires_levels(meta: &HashMap<String, String>, path: &Path) -> Result<Option<usize>> {
    let Some(json) = meta.get(HIRES_KEY) else {
        return Ok(None);
    };
    let parsed: HiresMeta = serde_json::from_str(json).map_err(|e| {
        bad(
            path,
            format!("metadata '{HIRES_KEY}' = {json} is not {{\"levels\": N}}: {e}"),
        )
    })?;
    check_levels(parsed.levels).map_err(|e| bad(path, format!("metadata '{HIRES_KEY}': {e}")))?;
    Ok(Some(parsed.levels))
}

/// Checks that the file at `path` (metadata `meta`) holds a model with
/// `levels` stride-2 levels (0: a plain rule), e.g. before resuming a
/// training checkpoint into a model built from a command line; the error
/// names the file and both counts.
pub fn expect_levels(meta: &HashMap<String, String>, path: &Path, levels: usize) -> Result<()> {
    let stored = hires_levels(meta, path)?.unwrap_or(0);
    if stored != levels {
        return Err(bad(
            path,
            format!(
                "holds a model with {stored} stride-2 levels (0: plain), {levels} were asked for; \
                 resume with the image and state sizes of that run"
            ),
        ));
    }
    Ok(())
}

impl HiresModel {
    /// The metadata of a model file: config, levels and format.
    pub fn metadata(&self) -> HashMap<String, String> {
        let mut meta = self.rule().to_safetensors_parts().1;
        meta.insert(FORMAT_KEY.to_string(), HIRES_FORMAT.to_string());
        meta.insert(
            HIRES_KEY.to_string(),
            serde_json::to_string(&HiresMeta {
                levels: self.levels(),
            })
            .expect("two integers always serialize"),
        );
        meta
    }

    /// The tensors with their safetensors names, and the metadata.
    pub fn to_safetensors_parts(&self) -> (Vec<(String, Tensor)>, HashMap<String, String>) {
        let tensors = self
            .named_params()
            .into_iter()
            .map(|p| (p.name, p.var.as_tensor().clone()))
            .collect();
        (tensors, self.metadata())
    }

    /// Writes the model to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (tensors, meta) = self.to_safetensors_parts();
        Ok(write_safetensors_atomic(path, tensors, meta)?)
    }

    /// Reads a model written by [`HiresModel::save`] onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        Self::from_safetensors_bytes(&read_file(path)?, path, device)
    }

    /// Parses a model from the bytes of a safetensors file; `path` only
    /// names the source in errors.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Self> {
        let (tensors, meta) = read_tensors(bytes, path, device)?;
        let config = config_from_metadata(&meta, path)?;
        let levels = hires_levels(&meta, path)?.ok_or_else(|| {
            bad(
                path,
                format!(
                    "no '{HIRES_KEY}' metadata: a plain cell rule, not a high-resolution model (load it with CellRule::load)"
                ),
            )
        })?;
        Self::from_named_tensors(config, levels, tensors, path, device)
    }

    /// Builds a model from named tensors that must be exactly those of a
    /// model with `config` and `levels` (names, shapes, f32); `path` names
    /// the source in errors.
    pub fn from_named_tensors(
        config: CellConfig,
        levels: usize,
        mut tensors: HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
    ) -> Result<Self> {
        check_levels(levels).map_err(|e| bad(path, e.to_string()))?;
        let encoder = take_layers(&mut tensors, &encoder_shapes(levels), path)?;
        let decoder = take_layers(
            &mut tensors,
            &decoder_shapes(levels, config.state_channels, config.num_classes),
            path,
        )?;
        if let Some(extra) = tensors
            .keys()
            .find(|k| k.starts_with("encoder.") || k.starts_with("decoder."))
        {
            return Err(bad(
                path,
                format!("tensor '{extra}' is not part of a model with {levels} levels"),
            ));
        }
        for name in ["classifier.weight", "classifier.bias"] {
            if tensors.contains_key(name) {
                return Err(bad(
                    path,
                    format!(
                        "tensor '{name}' is not part of a high-resolution model (its decoder makes the logits)"
                    ),
                ));
            }
        }
        let (s, c) = (config.state_channels, config.num_classes);
        tensors.insert(
            "classifier.weight".into(),
            Tensor::zeros((c, s), DType::F32, device)?,
        );
        tensors.insert(
            "classifier.bias".into(),
            Tensor::zeros(c, DType::F32, device)?,
        );
        let rule = CellRule::from_named_tensors(config, &tensors, path, device)?;
        HiresModel::from_parts(
            Encoder::from_layers(encoder),
            rule,
            Decoder::from_layers(decoder),
        )
        .map_err(|e| bad(path, e.to_string()))
    }
}

/// Removes the tensors of `shapes` from `tensors`, checking names, shapes
/// and dtype, and pairs them into layers.
fn take_layers(
    tensors: &mut HashMap<String, Tensor>,
    shapes: &[(String, Vec<usize>)],
    path: &Path,
) -> Result<Vec<ca_core::Layer>> {
    let mut ordered = Vec::with_capacity(shapes.len());
    for (name, shape) in shapes {
        let t = tensors.remove(name).ok_or_else(|| {
            bad(
                path,
                format!("tensor '{name}' is missing (the config and '{HIRES_KEY}' need it)"),
            )
        })?;
        check_tensor(path, name, &t, shape)?;
        ordered.push(t);
    }
    pair_up(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_metadata_parses_or_names_the_key() {
        let p = Path::new("m.safetensors");
        let mut meta = HashMap::new();
        assert_eq!(hires_levels(&meta, p).unwrap(), None);
        meta.insert(HIRES_KEY.to_string(), r#"{"levels":2}"#.to_string());
        assert_eq!(hires_levels(&meta, p).unwrap(), Some(2));
        meta.insert(HIRES_KEY.to_string(), r#"{"levels":9}"#.to_string());
        let msg = hires_levels(&meta, p).unwrap_err().to_string();
        assert!(
            msg.contains("m.safetensors") && msg.contains("levels"),
            "{msg}"
        );
        meta.insert(HIRES_KEY.to_string(), "x".to_string());
        let msg = hires_levels(&meta, p).unwrap_err().to_string();
        assert!(msg.contains(HIRES_KEY), "{msg}");
    }
}
