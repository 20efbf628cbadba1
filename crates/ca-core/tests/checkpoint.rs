//! Saving and loading rules: round trips and clear errors for bad files.

use std::path::PathBuf;

use ca_core::io::{write_safetensors_atomic, CONFIG_KEY};
use ca_core::{CellConfig, CellRule, Norm, Perception};
use candle_core::{Device, Tensor};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ca-core-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn round_trip_keeps_config_and_every_tensor() {
    let dir = temp_dir("round-trip");
    for cfg in [
        CellConfig::default(),
        CellConfig {
            perception: Perception::RandomDepthwise,
            norm: Norm::Batch,
            reset_gate: false,
            hidden_layers: 3,
            ..CellConfig::default()
        },
    ] {
        let rule = CellRule::new(cfg.clone(), 3, &Device::Cpu).unwrap();
        let path = dir.join("rule.safetensors");
        rule.save(&path).unwrap();
        let back = CellRule::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.config(), &cfg);
        for (a, b) in rule.params().named().iter().zip(back.params().named()) {
            assert_eq!(a.name, b.name);
            assert_eq!(values(a.var.as_tensor()), values(b.var.as_tensor()));
            assert_eq!(a.trainable, b.trainable);
        }
    }
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

fn load_err(path: &std::path::Path) -> String {
    CellRule::load(path, &Device::Cpu).unwrap_err().to_string()
}

#[test]
fn bad_files_give_clear_errors_naming_the_file() {
    let dir = temp_dir("bad");
    let good = dir.join("good.safetensors");
    CellRule::new(CellConfig::default(), 0, &Device::Cpu)
        .unwrap()
        .save(&good)
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(&truncated);
    assert!(
        msg.contains("truncated.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );

    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_err(&empty).contains("empty.safetensors"));

    let missing = dir.join("missing.safetensors");
    let msg = load_err(&missing);
    assert!(
        msg.contains("missing.safetensors") && msg.contains("cannot read"),
        "{msg}"
    );

    let msg = load_err(&dir);
    assert!(msg.contains("directory"), "{msg}");

    // No metadata: written by plain candle.
    let plain = dir.join("plain.safetensors");
    let t = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&[("x".to_string(), t)].into_iter().collect(), &plain).unwrap();
    let msg = load_err(&plain);
    assert!(
        msg.contains(CONFIG_KEY) && msg.contains("plain.safetensors"),
        "{msg}"
    );

    // Tensors of one config with the metadata of another.
    let other = CellRule::new(
        CellConfig {
            hidden_channels: 64,
            ..CellConfig::default()
        },
        0,
        &Device::Cpu,
    )
    .unwrap();
    let (tensors, _) = other.to_safetensors_parts();
    let (_, meta) = CellRule::new(CellConfig::default(), 0, &Device::Cpu)
        .unwrap()
        .to_safetensors_parts();
    let mismatched = dir.join("mismatched.safetensors");
    write_safetensors_atomic(&mismatched, tensors, meta).unwrap();
    let msg = load_err(&mismatched);
    assert!(
        msg.contains("perceive.weight") && msg.contains("shape"),
        "{msg}"
    );

    // A config that fails validation.
    let (tensors, mut meta) = other.to_safetensors_parts();
    meta.insert(
        CONFIG_KEY.into(),
        meta[CONFIG_KEY].replace("\"update_prob\":0.5", "\"update_prob\":2.0"),
    );
    let invalid = dir.join("invalid.safetensors");
    write_safetensors_atomic(&invalid, tensors, meta).unwrap();
    let msg = load_err(&invalid);
    assert!(msg.contains("update_prob"), "{msg}");
}

#[test]
fn a_failed_save_leaves_the_old_file_intact() {
    let dir = temp_dir("atomic");
    let path = dir.join("rule.safetensors");
    let rule = CellRule::new(CellConfig::default(), 0, &Device::Cpu).unwrap();
    rule.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Saving into a path whose parent is a file fails and touches nothing.
    let bad = path.join("nested.safetensors");
    assert!(rule.save(&bad).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn saving_the_same_rule_gives_the_same_bytes() {
    // The metadata map's order is random per map; the file must not be.
    let dir = temp_dir("same-bytes");
    let rule = CellRule::new(CellConfig::default(), 3, &Device::Cpu).unwrap();
    let path = dir.join("rule.safetensors");
    rule.save(&path).unwrap();
    let first = std::fs::read(&path).unwrap();
    for _ in 0..8 {
        rule.save(&path).unwrap();
        assert!(std::fs::read(&path).unwrap() == first, "bytes changed");
    }
    let loaded = CellRule::load(&path, &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), rule.config());
    std::fs::remove_dir_all(&dir).unwrap();
}
