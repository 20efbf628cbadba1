//! A segmentation model of either kind, a plain cell rule or a
//! high-resolution one (encoder, rule, decoder), chosen by what a file's
//! metadata says: the programs (`train_pets`, ...) hold a [`Model`] and need
//! no flag to tell the kinds apart.

use std::collections::HashMap;
use std::path::Path;

use ca_core::{
    config_from_metadata, parse_safetensors, read_file, write_safetensors_atomic, CellConfig,
    CellRule, NamedParam,
};
use ca_hires::{hires_levels, HiresModel, MAX_LEVELS};
use ca_sched::SegModel;
use candle_core::{Device, Tensor};

use crate::flags::FlagError;

/// Metadata key of a model file: the square image size in pixels it was
/// trained at (written by `train_pets`; files without it are read as
/// trained at [`DEFAULT_STATE_SIZE`] cells times `2^levels`).
pub const IMAGE_SIZE_KEY: &str = "cellseg.image_size";

/// The state grid side assumed for model files that do not record their
/// training size: the paper's 48.
pub const DEFAULT_STATE_SIZE: usize = 48;

/// A plain cell rule or a high-resolution model.
#[derive(Debug, Clone)]
pub enum Model {
    /// One cell per pixel; the rule's classifier makes the logits.
    Plain(CellRule),
    /// A state grid `2^levels` times smaller than the image.
    Hires(HiresModel),
}

impl Model {
    /// A fresh model of the architecture described by `meta` (a model
    /// file's or a training checkpoint's metadata), with weights drawn from
    /// `seed`: high-resolution when `meta` has [`ca_hires::HIRES_KEY`],
    /// plain otherwise. `path` names the source in errors.
    pub fn from_metadata(
        meta: &HashMap<String, String>,
        path: &Path,
        seed: u64,
        device: &Device,
    ) -> ca_hires::Result<Self> {
        let config = config_from_metadata(meta, path)?;
        Ok(match hires_levels(meta, path)? {
            Some(levels) => Model::Hires(HiresModel::new(config, levels, seed, device)?),
            None => Model::Plain(CellRule::new(config, seed, device)?),
        })
    }

    /// Reads a file written by [`CellRule::save`], [`HiresModel::save`] or
    /// [`Model::save_trained`], whichever it is.
    pub fn load(path: &Path, device: &Device) -> ca_hires::Result<Self> {
        Ok(Self::load_trained(path, device)?.0)
    }

    /// [`Model::load`], and the square image size in pixels the model was
    /// trained at: the file's [`IMAGE_SIZE_KEY`], else
    /// [`DEFAULT_STATE_SIZE`] `* 2^levels`.
    pub fn load_trained(path: &Path, device: &Device) -> ca_hires::Result<(Self, usize)> {
        let bytes = read_file(path)?;
        let (_, meta) = parse_safetensors(&bytes, path)?;
        let model = match hires_levels(&meta, path)? {
            Some(_) => Model::Hires(HiresModel::from_safetensors_bytes(&bytes, path, device)?),
            None => Model::Plain(CellRule::from_safetensors_bytes(&bytes, path, device)?),
        };
        let size = match meta.get(IMAGE_SIZE_KEY) {
            None => DEFAULT_STATE_SIZE << model.levels(),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|&s| s > 0 && s % (1 << model.levels()) == 0)
                .ok_or_else(|| ca_hires::HiresError::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "metadata '{IMAGE_SIZE_KEY}' = '{v}' is not a positive multiple of {}",
                        1 << model.levels()
                    ),
                })?,
        };
        Ok((model, size))
    }

    /// Writes the model to `path` atomically.
    pub fn save(&self, path: &Path) -> ca_hires::Result<()> {
        match self {
            Model::Plain(rule) => Ok(rule.save(path)?),
            Model::Hires(model) => model.save(path),
        }
    }

    /// Writes the model to `path` atomically with the square image size in
    /// pixels it was trained at (metadata [`IMAGE_SIZE_KEY`]), so that
    /// [`Model::load_trained`] needs no size from the user.
    pub fn save_trained(&self, path: &Path, image_size: usize) -> ca_hires::Result<()> {
        let (tensors, mut meta) = match self {
            Model::Plain(rule) => rule.to_safetensors_parts(),
            Model::Hires(model) => model.to_safetensors_parts(),
        };
        meta.insert(IMAGE_SIZE_KEY.into(), image_size.to_string());
        Ok(write_safetensors_atomic(path, tensors, meta)?)
    }

    /// The cell rule's config.
    pub fn config(&self) -> &CellConfig {
        SegModel::rule(self).config()
    }

    /// Stride-2 levels between image and state (0 for a plain model).
    pub fn levels(&self) -> usize {
        match self {
            Model::Plain(_) => 0,
            Model::Hires(model) => model.levels(),
        }
    }

    /// Parameters the optimizer updates.
    pub fn trainable_params(&self) -> usize {
        match self {
            Model::Plain(rule) => rule.param_count().trainable(),
            Model::Hires(model) => model.param_count().trainable(),
        }
    }

    /// One line on the parts' parameter counts.
    pub fn describe_params(&self) -> String {
        match self {
            Model::Plain(rule) => {
                let c = rule.param_count();
                format!(
                    "rule {}, reset gate {}, classifier {}",
                    c.rule, c.reset_gate, c.classifier
                )
            }
            Model::Hires(model) => {
                let c = model.param_count();
                format!(
                    "rule {}, reset gate {}, encoder {}, decoder {}, levels {}",
                    c.rule,
                    c.reset_gate,
                    c.encoder,
                    c.decoder,
                    model.levels()
                )
            }
        }
    }
}

impl SegModel for Model {
    fn rule(&self) -> &CellRule {
        match self {
            Model::Plain(rule) => rule,
            Model::Hires(model) => model.rule(),
        }
    }

    fn environment(&self, images: &Tensor) -> ca_sched::Result<Tensor> {
        match self {
            Model::Plain(rule) => SegModel::environment(rule, images),
            Model::Hires(model) => SegModel::environment(model, images),
        }
    }

    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> ca_sched::Result<Tensor> {
        match self {
            Model::Plain(rule) => SegModel::logits(rule, state, out_size),
            Model::Hires(model) => SegModel::logits(model, state, out_size),
        }
    }

    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
        match self {
            Model::Plain(rule) => SegModel::state_size(rule, image_size),
            Model::Hires(model) => SegModel::state_size(model, image_size),
        }
    }

    fn named_params(&self) -> Vec<NamedParam> {
        match self {
            Model::Plain(rule) => SegModel::named_params(rule),
            Model::Hires(model) => SegModel::named_params(model),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            Model::Plain(rule) => SegModel::metadata(rule),
            Model::Hires(model) => SegModel::metadata(model),
        }
    }
}

/// The number of stride-2 levels `k` with `image_size = state_size * 2^k`,
/// `k` in `1..=3`, from `--image-size` and `--state-size`; the error names
/// the flags and the values.
pub fn levels_for(image_size: usize, state_size: usize) -> Result<usize, FlagError> {
    let error = |reason: String| FlagError {
        flag: "--image-size",
        value: format!("{image_size} --state-size {state_size}"),
        reason,
    };
    if image_size == 0 || state_size == 0 {
        return Err(error("both must be at least 1".into()));
    }
    (1..=MAX_LEVELS)
        .find(|&k| state_size << k == image_size)
        .ok_or_else(|| {
            let factors: Vec<String> = (1..=MAX_LEVELS)
                .map(|k| (state_size << k).to_string())
                .collect();
            error(format!(
                "the image size must be the state size times 2, 4 or 8 ({}); for a plain model with one cell per pixel use --size",
                factors.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_from_sizes() {
        assert_eq!(levels_for(96, 48), Ok(1));
        assert_eq!(levels_for(192, 48), Ok(2));
        assert_eq!(levels_for(384, 48), Ok(3));
        let msg = levels_for(100, 48).unwrap_err().to_string();
        assert!(
            msg.starts_with("--image-size 100 --state-size 48:") && msg.contains("96, 192, 384"),
            "{msg}"
        );
        assert!(levels_for(48, 48).is_err());
        assert!(levels_for(768, 48).is_err());
        assert!(levels_for(0, 0).is_err());
    }

    #[test]
    fn the_kind_follows_the_metadata() {
        let dir = std::env::temp_dir().join(format!("cellseg-model-{}", std::process::id()));
        let path = dir.join("m.safetensors");
        let config = CellConfig {
            state_channels: 8,
            hidden_channels: 16,
            env_channels: 8,
            ..CellConfig::default()
        };
        let hires = Model::Hires(HiresModel::new(config.clone(), 2, 0, &Device::Cpu).unwrap());
        hires.save(&path).unwrap();
        let (loaded, size) = Model::load_trained(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.levels(), 2);
        assert_eq!(size, DEFAULT_STATE_SIZE * 4, "no size recorded");
        hires.save_trained(&path, 96).unwrap();
        let (loaded, size) = Model::load_trained(&path, &Device::Cpu).unwrap();
        assert_eq!((loaded.levels(), size), (2, 96));
        let rebuilt = Model::from_metadata(&hires.metadata(), &path, 1, &Device::Cpu).unwrap();
        assert_eq!(rebuilt.levels(), 2);
        assert_eq!(rebuilt.trainable_params(), hires.trainable_params());

        let plain = Model::Plain(
            CellRule::new(
                CellConfig {
                    env_channels: 3,
                    ..config
                },
                0,
                &Device::Cpu,
            )
            .unwrap(),
        );
        plain.save(&path).unwrap();
        let loaded = Model::load(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.levels(), 0);
        assert_eq!(loaded.config().env_channels, 3);
        plain.save_trained(&path, 32).unwrap();
        let (_, size) = Model::load_trained(&path, &Device::Cpu).unwrap();
        assert_eq!(size, 32);
        assert!(
            CellRule::load(&path, &Device::Cpu).is_ok(),
            "extra metadata is ignored"
        );

        let (tensors, mut meta) = match &hires {
            Model::Hires(m) => m.to_safetensors_parts(),
            Model::Plain(_) => unreachable!(),
        };
        meta.insert(IMAGE_SIZE_KEY.into(), "95".into());
        write_safetensors_atomic(&path, tensors, meta).unwrap();
        let err = Model::load_trained(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(IMAGE_SIZE_KEY) && err.contains("'95'") && err.contains("m.safetensors"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
