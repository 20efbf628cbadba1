//! Numerical safety through the real `train_pets` binary: an absurd
//! learning rate without gradient normalization drives the loss to NaN;
//! every such step is reported and skipped, the run stops with a clear
//! message and a non-zero exit code, and the checkpoint on disk is the one
//! of the last good step: it loads and its weights are finite.

mod support;

use candle_core::Device;
use cellseg::ca_core::io::config_from_metadata;
use cellseg::ca_core::CellRule;
use cellseg::ca_model::Trainable;
use cellseg::ca_sched::{checkpoint_metadata, Trainer};
use support::{checkpoint_step, command, run, temp_dir, text};

fn all_finite(rule: &CellRule) -> bool {
    rule.named_params().iter().all(|p| {
        p.var
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("weights")
            .iter()
            .all(|x| x.is_finite())
    })
}

#[test]
fn a_forced_nan_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("nan");
    let out = run(command(
        &bin,
        dir.path(),
        &[
            "--lr",
            "1e30",
            "--grad-norm",
            "none",
            "--checkpoint-every",
            "1",
            "--steps",
            "40",
        ],
    ));
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("training diverged") && stderr.contains("last good checkpoint"),
        "{all}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let skipped = stdout
        .matches("loss is not finite; the update was skipped")
        .count();
    assert!(skipped >= 1, "{all}");
    assert!(
        !stdout.contains("trained "),
        "the run must not finish: {all}"
    );

    // The checkpoint is that of the last step with a finite loss.
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("metrics");
    let records: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let last_good = records
        .iter()
        .filter(|r| r["loss"].is_number())
        .filter_map(|r| r["step"].as_u64())
        .max()
        .expect("at least one good step");
    let last_logged = records.iter().filter_map(|r| r["step"].as_u64()).max();
    assert!(last_logged > Some(last_good), "{metrics}");
    let checkpoint = dir.path().join("checkpoint.safetensors");
    assert_eq!(checkpoint_step(&checkpoint), last_good);

    // It loads, whole, with finite weights; so does the model file.
    let meta = checkpoint_metadata(&checkpoint).expect("metadata");
    let config = config_from_metadata(&meta, &checkpoint).expect("config");
    let rule = CellRule::new(config, 0, &Device::Cpu).expect("rule");
    let trainer = Trainer::resume(rule, &checkpoint, 36).expect("resume");
    assert!(all_finite(trainer.model()), "checkpoint weights");
    let model = CellRule::load(dir.path().join("model.safetensors"), &Device::Cpu).expect("model");
    assert!(all_finite(&model), "model weights");
}
