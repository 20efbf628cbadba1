//! Saving and loading a rule as safetensors, with its [`CellConfig`] in the
//! file's metadata so that loading needs no other input.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::config::CellConfig;
use crate::error::Result;
use crate::io::{
    bad, check_tensor, config_from_metadata, read_file, read_tensors, write_safetensors_atomic,
    CONFIG_KEY, FORMAT, FORMAT_KEY,
};
use crate::params::{param_shapes, CellParams};
use crate::rule::CellRule;

/// How [`CellRule::from_safetensors_slice`] names its source in errors.
const BYTES_SOURCE: &str = "<bytes>";

impl CellRule {
    /// The tensors of the rule with their safetensors names, and the
    /// metadata that describes them.
    ///
    /// # Shapes
    ///
    /// Those of [`crate::param_shapes`], in its order, f32.
    pub fn to_safetensors_parts(&self) -> (Vec<(String, Tensor)>, HashMap<String, String>) {
        let tensors = self
            .params()
            .named()
            .into_iter()
            .map(|p| (p.name, p.var.as_tensor().clone()))
            .collect();
        let mut meta = HashMap::new();
        meta.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
        meta.insert(
            CONFIG_KEY.to_string(),
            serde_json::to_string(self.config()).expect("a CellConfig always serializes"),
        );
        (tensors, meta)
    }

    /// Writes the rule to `path` atomically: a temporary file beside it,
    /// then a rename, so a crash never leaves a half-written checkpoint.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (tensors, meta) = self.to_safetensors_parts();
        write_safetensors_atomic(path, tensors, meta)
    }

    /// Reads a rule written by [`CellRule::save`] onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        Self::from_safetensors_bytes(&bytes, path, device)
    }

    /// Parses a rule from the bytes of a safetensors file written by
    /// [`CellRule::save`] (e.g. embedded with `include_bytes!` or received
    /// over the network), onto `device`; errors name the source `<bytes>`.
    pub fn from_safetensors_slice(bytes: &[u8], device: &Device) -> Result<Self> {
        Self::from_safetensors_bytes(bytes, Path::new(BYTES_SOURCE), device)
    }

    /// Parses a rule from the bytes of a safetensors file; `path` only names
    /// the source in errors.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Self> {
        let (tensors, meta) = read_tensors(bytes, path, device)?;
        let config = config_from_metadata(&meta, path)?;
        Self::from_named_tensors(config, &tensors, path, device)
    }

    /// Builds a rule from named tensors that must be exactly those the
    /// config needs (names and shapes, f32); `path` names the source in
    /// errors.
    pub fn from_named_tensors(
        config: CellConfig,
        tensors: &HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
    ) -> Result<Self> {
        config
            .validate()
            .map_err(|e| bad(path, format!("config in metadata: {e}")))?;
        let shapes = param_shapes(&config);
        let mut ordered = Vec::with_capacity(shapes.len());
        for (name, shape, _, _) in &shapes {
            let t = tensors.get(name).ok_or_else(|| {
                bad(
                    path,
                    format!("tensor '{name}' is missing (the config needs it)"),
                )
            })?;
            check_tensor(path, name, t, shape)?;
            ordered.push(t.clone());
        }
        if let Some(extra) = tensors
            .keys()
            .find(|k| !shapes.iter().any(|(n, ..)| n == *k))
        {
            return Err(bad(
                path,
                format!("tensor '{extra}' is not part of a rule with this config"),
            ));
        }
        let params = CellParams::from_tensors(&config, ordered)?;
        CellRule::from_params(config, params, device)
    }
}
