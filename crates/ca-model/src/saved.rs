//! Model files of either kind: one function loads whatever model a file
//! holds (a plain cell rule or a high-resolution model), keyed by its
//! metadata, and one writes any [`Trainable`] with the image size it was
//! trained at.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ca_core::io::{config_from_metadata, parse_safetensors, read_file, write_safetensors_atomic};
use ca_core::CellRule;
use ca_hires::{hires_levels, HiresModel};
use ca_unet::{UNet, UNET_KEY};
use candle_core::Device;

use crate::error::{ModelError, Result};
use crate::trainable::Trainable;

/// A model of either kind behind one shared pointer: what
/// [`load_model`] returns. Cloning shares the weights.
pub type AnyModel = Arc<dyn Trainable + Send + Sync>;

/// Metadata key of a model file: the square image size in pixels it was
/// trained at (files without it are read as trained at
/// [`DEFAULT_STATE_SIZE`] cells times `2^levels`).
pub const IMAGE_SIZE_KEY: &str = "ca.image_size";

/// The key [`IMAGE_SIZE_KEY`] had in files written before every key took
/// the `ca.` prefix; still read.
pub const LEGACY_IMAGE_SIZE_KEY: &str = "cellseg.image_size";

/// The state grid side assumed for model files that do not record their
/// training size: the paper's 48.
pub const DEFAULT_STATE_SIZE: usize = 48;

/// A fresh model of the architecture described by `meta` (a model file's
/// or a training checkpoint's metadata), with weights drawn from `seed`:
/// high-resolution when `meta` has [`ca_hires::HIRES_KEY`], a plain rule
/// otherwise. `path` names the source in errors.
pub fn model_from_metadata(
    meta: &HashMap<String, String>,
    path: &Path,
    seed: u64,
    device: &Device,
) -> Result<AnyModel> {
    let config = config_from_metadata(meta, path)?;
    Ok(match hires_levels(meta, path)? {
        Some(levels) => Arc::new(HiresModel::new(config, levels, seed, device)?),
        None => Arc::new(CellRule::new(config, seed, device)?),
    })
}

/// Reads a model file of either kind (written by [`save_model`],
/// [`CellRule::save`] or [`HiresModel::save`]) onto `device`, and the
/// square image size in pixels it was trained at: the file's
/// [`IMAGE_SIZE_KEY`] (or [`LEGACY_IMAGE_SIZE_KEY`]), else
/// [`DEFAULT_STATE_SIZE`] `* 2^levels`.
pub fn load_model(path: impl AsRef<Path>, device: &Device) -> Result<(AnyModel, usize)> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (_, meta) = parse_safetensors(&bytes, path)?;
    if meta.contains_key(UNET_KEY) {
        return Err(ModelError::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "a U-Net baseline ('{UNET_KEY}' metadata), not a colony: `evaluate stability` \
                 measures it (load it with ca_model::load_unet); segment, serve and the \
                 other protocols run colonies"
            ),
        });
    }
    let model: AnyModel = match hires_levels(&meta, path)? {
        Some(_) => Arc::new(HiresModel::from_safetensors_bytes(&bytes, path, device)?),
        None => Arc::new(CellRule::from_safetensors_bytes(&bytes, path, device)?),
    };
    let factor = 1 << model.levels();
    let key = [IMAGE_SIZE_KEY, LEGACY_IMAGE_SIZE_KEY]
        .into_iter()
        .find(|k| meta.contains_key(*k));
    let size = match key {
        None => DEFAULT_STATE_SIZE * factor,
        Some(key) => {
            let v = &meta[key];
            v.parse::<usize>()
                .ok()
                .filter(|&s| s > 0 && s % factor == 0)
                .ok_or_else(|| ModelError::BadFile {
                    path: path.to_path_buf(),
                    reason: format!(
                        "metadata '{key}' = '{v}' is not a positive multiple of {factor}"
                    ),
                })?
        }
    };
    Ok((model, size))
}

/// Writes `model` to `path` atomically, with the square image size in
/// pixels it was trained at (metadata [`IMAGE_SIZE_KEY`]), so that
/// [`load_model`] needs no size from the user.
pub fn save_model<M: Trainable + ?Sized>(model: &M, path: &Path, image_size: usize) -> Result<()> {
    save_model_noted(model, path, image_size, [])
}

/// [`save_model`] with `notes` added to the metadata (keys that start with
/// `ca.` and that no loader reads, e.g. [`BEST_SCORE_KEY`]).
pub fn save_model_noted<M: Trainable + ?Sized>(
    model: &M,
    path: &Path,
    image_size: usize,
    notes: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    let tensors = model
        .named_params()
        .into_iter()
        .map(|p| (p.name, p.var.as_tensor().clone()))
        .collect();
    let mut meta = model.metadata();
    meta.insert(IMAGE_SIZE_KEY.into(), image_size.to_string());
    meta.extend(notes);
    Ok(write_safetensors_atomic(path, tensors, meta)?)
}

/// Writes the U-Net baseline `model` to `path` atomically with its
/// training image size in pixels ([`IMAGE_SIZE_KEY`]) and `notes` (keys
/// that start with `ca.`), for [`load_unet`].
pub fn save_unet(
    model: &UNet,
    path: &Path,
    image_size: usize,
    notes: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    let (tensors, mut meta) = model.to_safetensors_parts();
    meta.insert(IMAGE_SIZE_KEY.into(), image_size.to_string());
    meta.extend(notes);
    Ok(write_safetensors_atomic(path, tensors, meta)?)
}

/// Reads a U-Net file (written by [`save_unet`]) onto `device` with the
/// square image size it was trained at; `None` when the file holds a
/// colony (no [`UNET_KEY`] metadata: [`load_model`] reads it).
pub fn load_unet(path: impl AsRef<Path>, device: &Device) -> Result<Option<(UNet, usize)>> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (_, meta) = parse_safetensors(&bytes, path)?;
    if !meta.contains_key(UNET_KEY) {
        return Ok(None);
    }
    let model = UNet::from_safetensors_bytes(&bytes, path, device)?;
    let size = match meta.get(IMAGE_SIZE_KEY) {
        None => DEFAULT_STATE_SIZE,
        Some(v) => {
            v.parse::<usize>()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| ModelError::BadFile {
                    path: path.to_path_buf(),
                    reason: format!("metadata '{IMAGE_SIZE_KEY}' = '{v}' is not a positive size"),
                })?
        }
    };
    Ok(Some((model, size)))
}

/// Metadata key of a model file kept as the best of its run on validation:
/// the score it was kept for (the mean IoU over classes at the last CA
/// step of the periodic validation).
pub const BEST_SCORE_KEY: &str = "ca.best.val_mean_iou";

/// Metadata key beside [`BEST_SCORE_KEY`]: the optimizer step it was
/// reached at.
pub const BEST_STEP_KEY: &str = "ca.best.step";

/// The `(score, step)` a best-model file records ([`BEST_SCORE_KEY`],
/// [`BEST_STEP_KEY`]); `None` when the file does not exist or records
/// none.
pub fn best_score(path: impl AsRef<Path>) -> Result<Option<(f64, u64)>> {
    let path = path.as_ref();
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_file(path)?;
    let (_, meta) = parse_safetensors(&bytes, path)?;
    let score = meta.get(BEST_SCORE_KEY).and_then(|v| v.parse::<f64>().ok());
    let step = meta.get(BEST_STEP_KEY).and_then(|v| v.parse::<u64>().ok());
    Ok(score.zip(step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ca_core::CellConfig;

    #[test]
    fn the_kind_follows_the_metadata() {
        let dir = std::env::temp_dir().join(format!("ca-model-saved-{}", std::process::id()));
        let path = dir.join("m.safetensors");
        let config = CellConfig {
            state_channels: 8,
            hidden_channels: 16,
            env_channels: 8,
            ..CellConfig::default()
        };
        let hires = HiresModel::new(config.clone(), 2, 0, &Device::Cpu).unwrap();
        hires.save(&path).unwrap();
        let (loaded, size) = load_model(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.levels(), 2);
        assert_eq!(size, DEFAULT_STATE_SIZE * 4, "no size recorded");
        assert_eq!(loaded.trainable_params(), hires.trainable_params());
        assert!(
            loaded.describe_params().contains("encoder")
                && loaded.describe_params().ends_with("levels 2"),
            "{}",
            loaded.describe_params()
        );
        save_model(&hires, &path, 96).unwrap();
        let (loaded, size) = load_model(&path, &Device::Cpu).unwrap();
        assert_eq!((loaded.levels(), size), (2, 96));
        let rebuilt = model_from_metadata(&hires.metadata(), &path, 1, &Device::Cpu).unwrap();
        assert_eq!(rebuilt.levels(), 2);
        assert_eq!(rebuilt.trainable_params(), hires.trainable_params());

        let plain = CellRule::new(
            CellConfig {
                env_channels: 3,
                ..config
            },
            0,
            &Device::Cpu,
        )
        .unwrap();
        plain.save(&path).unwrap();
        let (loaded, _) = load_model(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.levels(), 0);
        assert_eq!(loaded.rule().config().env_channels, 3);
        save_model(&plain, &path, 32).unwrap();
        let (_, size) = load_model(&path, &Device::Cpu).unwrap();
        assert_eq!(size, 32);
        assert!(
            CellRule::load(&path, &Device::Cpu).is_ok(),
            "extra metadata is ignored"
        );

        // Files written before the `ca.` prefix keep their size.
        let (tensors, mut meta) = plain.to_safetensors_parts();
        meta.insert(LEGACY_IMAGE_SIZE_KEY.into(), "40".into());
        write_safetensors_atomic(&path, tensors, meta).unwrap();
        assert_eq!(load_model(&path, &Device::Cpu).unwrap().1, 40);

        let (tensors, mut meta) = hires.to_safetensors_parts();
        meta.insert(IMAGE_SIZE_KEY.into(), "95".into());
        write_safetensors_atomic(&path, tensors, meta).unwrap();
        let err = load_model(&path, &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains(IMAGE_SIZE_KEY) && err.contains("'95'") && err.contains("m.safetensors"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_committed_models_still_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
        for name in ["pets48.safetensors", "pets48-small.safetensors"] {
            let (model, size) = load_model(root.join(name), &Device::Cpu).unwrap();
            assert_eq!((model.levels(), size), (0, 48), "{name}");
        }
    }
}
