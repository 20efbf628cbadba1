//! The image standardisation (issue 23, item 2) survives the model file for
//! both model kinds, is applied by the environment, and older files (and
//! configs without one) read the raw image.

mod common;

use common::max_diff;

use std::path::PathBuf;
use std::sync::Arc;

use ca_core::{CellConfig, CellModel, CellRule, ImageNorm};
use ca_hires::HiresModel;
use ca_model::{load_model, save_model, AnyModel};
use candle_core::{Device, Tensor};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ca-sched-image-norm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn norm() -> ImageNorm {
    ImageNorm::new([0.48, 0.44, 0.39], [0.25, 0.24, 0.26], 3.0).unwrap()
}

fn images(size: usize) -> Tensor {
    Tensor::rand(0f32, 1f32, (2, 3, size, size), &Device::Cpu).unwrap()
}

#[test]
fn plain_rule_round_trips_and_standardises() {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 8,
        image_norm: Some(norm()),
        ..CellConfig::default()
    };
    let rule = CellRule::new(config.clone(), 1, &Device::Cpu).unwrap();
    let path = temp_path("plain.safetensors");
    save_model(&rule, &path, 12).unwrap();
    let (loaded, size) = load_model(&path, &Device::Cpu).unwrap();
    assert_eq!(size, 12);
    assert_eq!(loaded.rule().config(), &config);
    let x = images(12);
    let expected = norm().apply(&x).unwrap();
    assert_eq!(max_diff(&loaded.environment(&x).unwrap(), &expected), 0.0);
    // Not the identity: the raw image is a different environment.
    assert!(max_diff(&loaded.environment(&x).unwrap(), &x) > 0.1);
}

#[test]
fn high_resolution_model_standardises_before_its_encoder() {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 8,
        env_channels: ca_hires::ENV_CHANNELS,
        image_norm: Some(norm()),
        ..CellConfig::default()
    };
    let model = HiresModel::new(config.clone(), 1, 2, &Device::Cpu).unwrap();
    // The same seed without the norm: the same encoder weights.
    let raw_config = CellConfig {
        image_norm: None,
        ..config.clone()
    };
    let raw = HiresModel::new(raw_config, 1, 2, &Device::Cpu).unwrap();
    let path = temp_path("hires.safetensors");
    save_model(&model, &path, 16).unwrap();
    let (loaded, _) = load_model(&path, &Device::Cpu).unwrap();
    assert_eq!(loaded.rule().config(), &config);
    let x = images(16);
    // The raw model's encoder on the standardised image, by hand.
    let expected = raw.environment(&norm().apply(&x).unwrap()).unwrap();
    assert!(max_diff(&loaded.environment(&x).unwrap(), &expected) < 1e-6);
}

#[test]
fn files_without_a_norm_read_the_raw_image() {
    // The small cell committed on 2026-12-02, before image standardisation.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models/raw-image-2026-12-02.safetensors");
    let (model, size): (AnyModel, usize) = load_model(&path, &Device::Cpu).unwrap();
    assert_eq!(model.rule().config().image_norm, None);
    let x = images(size);
    assert_eq!(max_diff(&model.environment(&x).unwrap(), &x), 0.0);
    let fresh: AnyModel = Arc::new(CellRule::new(CellConfig::default(), 0, &Device::Cpu).unwrap());
    // The committed models are trained on the standardised image.
    let committed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/pets48.safetensors");
    let (model, _): (AnyModel, usize) = load_model(&committed, &Device::Cpu).unwrap();
    assert!(model.rule().config().image_norm.is_some());
    assert_eq!(max_diff(&fresh.environment(&x).unwrap(), &x), 0.0);
}

#[test]
fn an_invalid_norm_in_a_file_is_an_error_naming_the_field() {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 8,
        ..CellConfig::default()
    };
    let rule = CellRule::new(config, 1, &Device::Cpu).unwrap();
    let path = temp_path("good.safetensors");
    save_model(&rule, &path, 12).unwrap();
    // Rewrite the config with a zero standard deviation.
    let bytes = std::fs::read(&path).unwrap();
    let (tensors, mut meta) = ca_core::io::read_tensors(&bytes, &path, &Device::Cpu).unwrap();
    let tensors = tensors.into_iter().collect();
    let key = ca_core::io::CONFIG_KEY.to_string();
    let json = meta[&key].trim_end_matches('}').to_string()
        + r#","image_norm":{"mean":[0.5,0.5,0.5],"std":[0.2,0.0,0.2],"gain":3.0}}"#;
    meta.insert(key, json);
    let bad = temp_path("bad.safetensors");
    ca_core::io::write_safetensors_atomic(&bad, tensors, meta).unwrap();
    let err = match load_model(&bad, &Device::Cpu) {
        Ok(_) => panic!("a zero standard deviation must not load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("image_norm.std"), "{err}");
}
