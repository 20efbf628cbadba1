//! Saving and loading a [`UNet`] as one safetensors file.
//!
//! Tensors: every entry of [`UNet::named_params`] under its name, running
//! statistics included. Metadata: [`UNET_KEY`] (the [`UNetConfig`] as
//! JSON; its presence is what tells a loader that a file is a U-Net, see
//! [`unet_config`]) and [`ca_core::io::FORMAT_KEY`] = [`UNET_FORMAT`].

use std::collections::HashMap;
use std::path::Path;

use ca_core::io::{check_tensor, read_file, read_tensors, write_safetensors_atomic, FORMAT_KEY};
use candle_core::{Device, Tensor};

use crate::error::{Result, UNetError};
use crate::model::{UNet, UNetConfig};

/// Metadata key holding the JSON of the [`UNetConfig`].
pub const UNET_KEY: &str = "ca.unet";
/// The value of [`ca_core::io::FORMAT_KEY`] in a U-Net file.
pub const UNET_FORMAT: &str = "ca-unet/1";

fn bad(path: &Path, reason: impl Into<String>) -> UNetError {
    UNetError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The config stored in a file's metadata: `Some` for a U-Net, `None`
/// when the file has no [`UNET_KEY`] (another kind of model). The error
/// names the file and the key when the entry is not a valid config.
pub fn unet_config(meta: &HashMap<String, String>, path: &Path) -> Result<Option<UNetConfig>> {
    let Some(json) = meta.get(UNET_KEY) else {
        return Ok(None);
    };
    let config: UNetConfig = serde_json::from_str(json).map_err(|e| {
        bad(
            path,
            format!("metadata '{UNET_KEY}' = {json} is not a U-Net config: {e}"),
        )
    })?;
    config
        .validate()
        .map_err(|e| bad(path, format!("metadata '{UNET_KEY}': {e}")))?;
    Ok(Some(config))
}

impl UNet {
    /// The metadata of a model file: [`UNET_KEY`] and the format.
    pub fn metadata(&self) -> HashMap<String, String> {
        // A validated config (finite statistics) always serializes.
        let json = serde_json::to_string(self.config()).expect("a valid config serializes");
        HashMap::from([
            (UNET_KEY.to_string(), json),
            (FORMAT_KEY.to_string(), UNET_FORMAT.to_string()),
        ])
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

    /// Reads a model written by [`UNet::save`] onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        Self::from_safetensors_bytes(&read_file(path)?, path, device)
    }

    /// Parses a model from the bytes of a safetensors file, which must hold
    /// exactly the tensors of the config in its metadata (names, shapes,
    /// f32); `path` only names the source in errors.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Self> {
        let (mut tensors, meta) = read_tensors(bytes, path, device)?;
        let config = unet_config(&meta, path)?
            .ok_or_else(|| bad(path, format!("no '{UNET_KEY}' metadata: not a U-Net file")))?;
        let model = UNet::new(config, 0, device)?;
        for p in model.named_params() {
            let t = tensors.remove(&p.name).ok_or_else(|| {
                bad(
                    path,
                    format!("tensor '{}' is missing (the config needs it)", p.name),
                )
            })?;
            check_tensor(path, &p.name, &t, p.var.dims())?;
            p.var.set(&t)?;
        }
        if let Some(extra) = tensors.keys().min() {
            return Err(bad(
                path,
                format!("tensor '{extra}' is not part of a U-Net of this config"),
            ));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn small() -> UNetConfig {
        UNetConfig {
            width: 3,
            ..UNetConfig::default()
        }
    }

    #[test]
    fn round_trip_gives_the_same_logits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unet.safetensors");
        let model = UNet::new(small(), 5, &Device::Cpu).unwrap();
        let images = Tensor::rand(0f32, 1.0, (2, 3, 16, 16), &Device::Cpu).unwrap();
        model.forward_train(&images).unwrap(); // non-trivial running statistics
        model.save(&path).unwrap();
        let loaded = UNet::load(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.config(), model.config());
        let (a, b) = (
            model.forward(&images).unwrap(),
            loaded.forward(&images).unwrap(),
        );
        let (a, b) = (a.flatten_all().unwrap(), b.flatten_all().unwrap());
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    }

    /// The error of loading the model's file with `edit` applied to its
    /// tensors.
    fn load_edited(edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edited.safetensors");
        let (mut tensors, meta) = UNet::new(small(), 0, &Device::Cpu)
            .unwrap()
            .to_safetensors_parts();
        edit(&mut tensors);
        write_safetensors_atomic(&path, tensors, meta).unwrap();
        let msg = UNet::load(&path, &Device::Cpu).err().unwrap().to_string();
        assert!(msg.contains("edited.safetensors"), "{msg}");
        msg
    }

    #[test]
    fn missing_tensor_is_named() {
        let msg = load_edited(|t| t.retain(|(n, _)| n != "dec1.bn.running_var"));
        assert!(msg.contains("'dec1.bn.running_var' is missing"), "{msg}");
    }

    #[test]
    fn wrong_shape_names_tensor_and_both_shapes() {
        let msg = load_edited(|t| {
            let up = t.iter_mut().find(|(n, _)| n == "up1.weight").unwrap();
            up.1 = Tensor::zeros((6, 6, 3, 3), DType::F32, &Device::Cpu).unwrap();
        });
        assert!(
            msg.contains("'up1.weight'")
                && msg.contains("[6, 6, 3, 3]")
                && msg.contains("[6, 6, 2, 2]"),
            "{msg}"
        );
    }

    #[test]
    fn metadata_parses_or_names_file_and_key() {
        let p = Path::new("m.safetensors");
        let mut meta = HashMap::new();
        assert_eq!(unet_config(&meta, p).unwrap(), None);
        let model = UNet::new(small(), 0, &Device::Cpu).unwrap();
        assert_eq!(unet_config(&model.metadata(), p).unwrap(), Some(small()));
        for json in ["x", r#"{"width":0,"classes":3,"image_norm":null}"#] {
            meta.insert(UNET_KEY.to_string(), json.to_string());
            let msg = unet_config(&meta, p).unwrap_err().to_string();
            assert!(
                msg.contains("m.safetensors") && msg.contains(UNET_KEY),
                "{msg}"
            );
        }
    }
}
