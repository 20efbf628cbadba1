//! Model files: a round trip keeps every tensor and the outputs; files of
//! another kind or shape are refused with errors that name the file and the
//! tensor or key.

mod common;

use std::collections::HashMap;

use ca_core::io::{write_safetensors_atomic, CONFIG_KEY};
use ca_core::{CellConfig, CellRule};
use ca_hires::{hires_levels, HiresError, HiresModel, HIRES_KEY};
use candle_core::{Device, Tensor};
use common::{max_diff, small_config, small_model, temp_dir, uniform};

#[test]
fn round_trip_keeps_tensors_config_and_outputs() {
    let dir = temp_dir("roundtrip");
    for levels in 1..=3 {
        let model = small_model(levels, 40 + levels as u64);
        let path = dir.path().join(format!("hires{levels}.safetensors"));
        model.save(&path).unwrap();
        let loaded = HiresModel::load(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.levels(), levels);
        assert_eq!(loaded.config(), model.config());
        assert_eq!(loaded.param_count(), model.param_count());
        let (a, b) = (model.named_params(), loaded.named_params());
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(p.name, q.name);
            assert_eq!(
                max_diff(p.var.as_tensor(), q.var.as_tensor()),
                0.0,
                "{}",
                p.name
            );
        }
        let images = uniform(&[1, 3, 35, 35], 1);
        let env = (
            model.environment(&images).unwrap(),
            loaded.environment(&images).unwrap(),
        );
        assert_eq!(max_diff(&env.0, &env.1), 0.0);
        let (sh, sw) = model.state_size((35, 35));
        let state = uniform(&[1, 8, sh, sw], 2);
        let out = (
            model.logits(&state, (35, 35)).unwrap(),
            loaded.logits(&state, (35, 35)).unwrap(),
        );
        assert_eq!(max_diff(&out.0, &out.1), 0.0);
    }
}

#[test]
fn metadata_says_what_the_file_is() {
    let model = small_model(2, 0);
    let meta = model.metadata();
    let config: CellConfig = serde_json::from_str(&meta[CONFIG_KEY]).unwrap();
    assert_eq!(config.env_channels, 8);
    let p = std::path::Path::new("x");
    assert_eq!(hires_levels(&meta, p).unwrap(), Some(2));
    let plain = CellRule::new(CellConfig::default(), 0, &Device::Cpu).unwrap();
    assert_eq!(
        hires_levels(&plain.to_safetensors_parts().1, p).unwrap(),
        None
    );
}

fn load_err(path: &std::path::Path) -> String {
    let err = HiresModel::load(path, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, HiresError::Checkpoint { .. } | HiresError::Core(_)),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    msg
}

#[test]
fn mismatched_files_are_refused_with_the_file_named() {
    let dir = temp_dir("mismatch");

    // A plain rule is not a high-resolution model, and the other way round.
    let plain_path = dir.path().join("plain.safetensors");
    CellRule::new(CellConfig::default(), 0, &Device::Cpu)
        .unwrap()
        .save(&plain_path)
        .unwrap();
    assert!(load_err(&plain_path).contains(HIRES_KEY));
    let hires_path = dir.path().join("hires.safetensors");
    let model = small_model(1, 0);
    model.save(&hires_path).unwrap();
    let msg = CellRule::load(&hires_path, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("encoder.0") || msg.contains("classifier"),
        "{msg}"
    );

    let (tensors, meta) = model.to_safetensors_parts();
    let write = |name: &str, t: Vec<(String, Tensor)>, m: HashMap<String, String>| {
        let p = dir.path().join(name);
        write_safetensors_atomic(&p, t, m).unwrap();
        p
    };

    // The metadata says two levels, the tensors are of one.
    let mut m2 = meta.clone();
    m2.insert(HIRES_KEY.into(), r#"{"levels":2}"#.into());
    let msg = load_err(&write("levels.safetensors", tensors.clone(), m2));
    assert!(
        msg.contains("encoder.1.weight") && msg.contains("missing"),
        "{msg}"
    );

    // A decoder weight of the wrong shape.
    let bad_shape: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            let t = if n == "decoder.0.weight" {
                uniform(&[8, 4, 3, 3], 0)
            } else {
                t.clone()
            };
            (n.clone(), t)
        })
        .collect();
    let msg = load_err(&write("shape.safetensors", bad_shape, meta.clone()));
    assert!(
        msg.contains("decoder.0.weight") && msg.contains("[8, 4, 3, 3]"),
        "{msg}"
    );

    // A stray tensor.
    let mut stray = tensors.clone();
    stray.push(("encoder.7.bias".into(), uniform(&[8], 0)));
    let msg = load_err(&write("stray.safetensors", stray, meta.clone()));
    assert!(msg.contains("encoder.7.bias"), "{msg}");

    // A rule tensor missing.
    let missing: Vec<_> = tensors
        .iter()
        .filter(|(n, _)| n != "update.bias")
        .cloned()
        .collect();
    let msg = load_err(&write("missing.safetensors", missing, meta.clone()));
    assert!(msg.contains("update.bias"), "{msg}");

    // Levels out of range in the metadata.
    let mut m9 = meta;
    m9.insert(HIRES_KEY.into(), r#"{"levels":9}"#.into());
    let msg = load_err(&write("nine.safetensors", tensors, m9));
    assert!(msg.contains("levels"), "{msg}");
}

#[test]
fn construction_errors_name_the_value() {
    let rgb = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        ..CellConfig::default()
    };
    let msg = HiresModel::new(rgb, 1, 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("env_channels = 3"), "{msg}");
    let msg = HiresModel::new(small_config(), 4, 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("levels = 4"), "{msg}");
}
