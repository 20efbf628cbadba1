//! `train_pets`'s default recipe is the one chosen on the validation split
//! (docs/RESULTS.md), and `--paper` gives the paper's settings back: read
//! from the training config a one-step run stores in its checkpoint.

mod support;

use serde_json::Value;
use support::{command, run, temp_dir, text};

/// The training config stored by a one-step run with `extra` flags.
fn stored_config(name: &str, extra: &[&str]) -> Option<Value> {
    stored(name, extra).map(|(train, _)| train)
}

/// The training config and the cell config stored by a one-step run with
/// `extra` flags.
fn stored(name: &str, extra: &[&str]) -> Option<(Value, Value)> {
    let bin = support::train_pets()?;
    let dir = temp_dir(name);
    let mut args = vec!["--steps", "1"];
    args.extend_from_slice(extra);
    let out = run(command(&bin, dir.path(), &args));
    assert!(out.status.success(), "{}", text(&out));
    let meta = cellseg::ca_sched::checkpoint_metadata(&dir.path().join("checkpoint.safetensors"))
        .expect("a training checkpoint");
    let state: Value =
        serde_json::from_str(&meta[cellseg::ca_sched::TRAIN_STATE_KEY]).expect("train state");
    let cell: Value =
        serde_json::from_str(&meta[cellseg::ca_core::io::CONFIG_KEY]).expect("cell config");
    Some((state["config"].clone(), cell))
}

#[test]
fn the_image_is_standardised_by_default_and_raw_with_paper() {
    let Some((_, cell)) = stored("norm-default", &[]) else {
        return;
    };
    let norm = &cell["image_norm"];
    assert_eq!(norm["gain"], 3.0, "{cell}");
    assert_eq!(norm["mean"].as_array().map(Vec::len), Some(3), "{cell}");
    let Some((_, paper)) = stored("norm-paper", &["--paper"]) else {
        return;
    };
    assert_eq!(paper.get("image_norm"), None, "{paper}");
    let Some((_, raw)) = stored("norm-off", &["--image-norm", "false"]) else {
        return;
    };
    assert_eq!(raw.get("image_norm"), None, "{raw}");
    let Some((_, gain)) = stored("norm-gain", &["--image-gain", "1.5"]) else {
        return;
    };
    assert_eq!(gain["image_norm"]["gain"], 1.5, "{gain}");
}

#[test]
fn the_default_recipe_has_every_chosen_lever_on() {
    let Some(c) = stored_config("recipe-default", &[]) else {
        return;
    };
    assert_eq!(c["learning_rate"], 2e-3);
    assert_eq!(c["class_weights"], serde_json::json!([0.7, 1.0, 3.0]));
    assert_eq!(c["dice_weight"], 1.0);
    assert_eq!(c["zero_update_init"], true);
    assert_eq!(c["lr_schedule"], "cosine");
    assert_eq!(c["warmup_steps"], 20);
    assert_eq!(c["ema_decay"], 0.99);
    assert_eq!(c["full_unroll_fraction"], 0.0);
}

#[test]
fn paper_restores_the_papers_settings() {
    let Some(c) = stored_config("recipe-paper", &["--paper"]) else {
        return;
    };
    assert_eq!(c["learning_rate"], 3e-4);
    assert_eq!(c["class_weights"], Value::Null);
    assert_eq!(c["dice_weight"], 0.0);
    assert_eq!(c["zero_update_init"], false);
    assert_eq!(c["lr_schedule"], "constant");
    assert_eq!(c["warmup_steps"], 0);
    assert_eq!(c["ema_decay"], Value::Null);
}

#[test]
fn paper_refuses_a_lever_flag_beside_it() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("recipe-conflict");
    let out = run(command(
        &bin,
        dir.path(),
        &["--paper", "--ema", "0.5", "--steps", "1"],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'--paper' cannot be used with '--ema"),
        "{stderr}"
    );
}
