//! Bad checkpoints and nonsense flags: every one is a clear error (non-zero
//! exit, a message naming the file or the value), never a panic, and a
//! failed `--resume` leaves the checkpoint on disk byte for byte as it was.
//!
//! The library half checks `CellRule::load`, `checkpoint_metadata` and
//! `Trainer::resume` on files a real `train_pets` run wrote; the process
//! half runs the `train_pets` binary (see `support::train_pets`).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};
use cellseg::ca_core::io::CONFIG_KEY;
use cellseg::ca_core::{CellConfig, CellRule};
use cellseg::ca_sched::{checkpoint_metadata, Trainer};
use support::{command, run, temp_dir, text, TempDir};

/// Runs a short training into `dir` and returns the training checkpoint
/// and the model file it wrote.
fn trained(bin: &Path, dir: &TempDir) -> (PathBuf, PathBuf) {
    let out = run(command(
        bin,
        dir.path(),
        &["--steps", "2", "--checkpoint-every", "1"],
    ));
    assert!(out.status.success(), "{}", text(&out));
    (
        dir.path().join("checkpoint.safetensors"),
        dir.path().join("model.safetensors"),
    )
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// The tensors and metadata of a safetensors file.
fn read_parts(path: &Path) -> (Vec<(String, Tensor)>, HashMap<String, String>) {
    let bytes = std::fs::read(path).expect("read");
    let (st, meta) = cellseg::ca_core::io::parse_safetensors(&bytes, path).expect("parse");
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.load(&Device::Cpu).expect("tensor")))
        .collect();
    (tensors, meta)
}

/// The config of the checkpoints `trained` writes, with another state size.
fn other_config() -> CellConfig {
    CellConfig {
        state_channels: 12,
        hidden_channels: 16,
        ..CellConfig::default()
    }
}

/// The bad files every loader must reject, written into `dir` from a good
/// checkpoint `good`: (file name, what its error must mention).
fn bad_files(dir: &TempDir, good: &Path) -> Vec<(PathBuf, &'static str)> {
    let bytes = std::fs::read(good).expect("read good");
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").expect("write");

    let (tensors, mut meta) = read_parts(good);
    let no_meta = dir.path().join("no-metadata.safetensors");
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, &no_meta).expect("write without metadata");
    // The tensors of one config under the metadata of another.
    let other = dir.path().join("other-config.safetensors");
    meta.insert(
        CONFIG_KEY.to_string(),
        serde_json::to_string(&other_config()).expect("json"),
    );
    cellseg::ca_core::io::write_safetensors_atomic(&other, tensors, meta).expect("write");

    let directory = dir.path().join("directory.safetensors");
    std::fs::create_dir(&directory).expect("mkdir");
    vec![
        (truncated, "not a valid safetensors file"),
        (empty, "not a valid safetensors file"),
        (no_meta, "metadata"),
        (other, "shape"),
        (dir.path().join("missing.safetensors"), "cannot read"),
        (directory, "is a directory"),
    ]
}

#[test]
fn bad_model_and_training_checkpoints_are_clear_library_errors() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cli-errors-lib");
    let (checkpoint, model) = trained(&bin, &dir);
    assert!(CellRule::load(&model, &Device::Cpu).is_ok());
    for (path, needle) in bad_files(&dir, &model) {
        let name = file_name(&path);
        let err = CellRule::load(&path, &Device::Cpu)
            .expect_err("bad file must not load")
            .to_string();
        assert!(
            err.contains(&name) && err.contains(needle),
            "CellRule::load({name}): {err}"
        );
    }
    let dir = temp_dir("cli-errors-lib-train");
    for (path, needle) in bad_files(&dir, &checkpoint) {
        let name = file_name(&path);
        let err = match checkpoint_metadata(&path) {
            Err(e) => e.to_string(),
            // The other-config file keeps its training metadata; resuming
            // it must then fail on the tensor shapes.
            Ok(meta) => {
                let config = cellseg::ca_core::io::config_from_metadata(&meta, &path)
                    .expect("config in metadata");
                let rule = CellRule::new(config, 0, &Device::Cpu).expect("rule");
                Trainer::resume(rule, &path, 36)
                    .err()
                    .expect("must not resume")
                    .to_string()
            }
        };
        assert!(
            err.contains(&name) && err.contains(needle),
            "resume({name}): {err}"
        );
    }
    // A good training checkpoint into a model of another config.
    let rule = CellRule::new(other_config(), 0, &Device::Cpu).expect("rule");
    let err = Trainer::resume(rule, &checkpoint, 36)
        .err()
        .expect("another config must not resume")
        .to_string();
    assert!(
        err.contains("checkpoint.safetensors") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn a_failed_resume_is_an_error_and_leaves_the_checkpoint_unchanged() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cli-errors-resume");
    let (good, _) = trained(&bin, &dir);
    let files = bad_files(&dir, &good);
    for (bad, needle) in files {
        let out_dir = temp_dir(&format!("cli-errors-resume-{}", file_name(&bad)));
        let target = out_dir.path().join("checkpoint.safetensors");
        let before: Option<Vec<u8>> = if bad.is_dir() {
            std::fs::create_dir(&target).expect("mkdir");
            None
        } else if bad.exists() {
            std::fs::copy(&bad, &target).expect("copy");
            Some(std::fs::read(&target).expect("read"))
        } else {
            None
        };
        let out = run(command(&bin, out_dir.path(), &["--resume", "--steps", "4"]));
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("checkpoint.safetensors") && stderr.contains(needle),
            "{all}"
        );
        assert!(!stderr.contains("panicked"), "{all}");
        match before {
            Some(bytes) => assert_eq!(std::fs::read(&target).expect("still there"), bytes),
            None if bad.is_dir() => assert!(target.is_dir()),
            None => assert!(!target.exists(), "a failed resume created {target:?}"),
        }
        assert!(
            !out_dir.path().join("model.safetensors").exists(),
            "a failed resume wrote a model"
        );
    }
}

#[test]
fn resume_refuses_the_flags_the_checkpoint_overrides() {
    // Issue 25: `--resume --lr 1e-4` resumed with the checkpoint's schedule
    // and ignored --lr without a word.
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cli-errors-resume-flags");
    let (checkpoint, _) = trained(&bin, &dir);
    let before = std::fs::read(&checkpoint).expect("the checkpoint");
    let out = run(command(
        &bin,
        dir.path(),
        &["--resume", "--steps", "4", "--lr", "1e-4", "--state", "12"],
    ));
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("--lr 0.0001 (the checkpoint has 0.002)")
            && all.contains("--state 12 (the checkpoint has 8)")
            && all.contains("would be ignored"),
        "{all}"
    );
    assert_eq!(std::fs::read(&checkpoint).expect("still there"), before);
    // The same flags again (the small ones `command` adds match the
    // checkpoint) and the learner's own settings are fine.
    let out = run(command(
        &bin,
        dir.path(),
        &["--resume", "--steps", "3", "--eval-every", "0"],
    ));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_restarted_resume_starts_a_stage_with_the_typed_unroll() {
    // Issue 37 item 6: a second stage on the target's unroll (paper Fig.
    // 7b) from a trained run, its pool kept; before, `--mini-unroll` on a
    // resume was refused like any schedule flag.
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cli-errors-next-stage");
    let (checkpoint, _) = trained(&bin, &dir);
    let stage = |extra: &[&str]| {
        let mut args = vec!["--resume", "--eval-every", "0"];
        args.extend_from_slice(extra);
        run(command(&bin, dir.path(), &args))
    };
    let stored = || {
        let meta = checkpoint_metadata(&checkpoint).expect("a checkpoint");
        cellseg::ca_sched::checkpoint_schedule(&meta, &checkpoint).expect("its schedule")
    };
    // Beyond the target: an error naming the flag, the checkpoint kept.
    let before = std::fs::read(&checkpoint).expect("the checkpoint");
    let out = stage(&["--steps", "4", "--restart-schedule", "--mini-unroll", "9"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("--mini-unroll 9: must be between 1 and the target (8)"),
        "{all}"
    );
    assert_eq!(std::fs::read(&checkpoint).expect("still there"), before);
    let out = stage(&[
        "--steps",
        "4",
        "--restart-schedule",
        "--mini-unroll",
        "8",
        "--lr",
        "5e-4",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("next stage") && all.contains("K 8, lr 0.0005"),
        "{all}"
    );
    let config = stored();
    assert_eq!(config.unroll.mini_unroll, 8);
    assert_eq!(config.optimizer.learning_rate, 5e-4);
    // The untyped stage settings are the checkpoint's.
    assert_eq!(config.lr_schedule.floor, 0.05);
    // The stage is the run's schedule now: a plain resume goes on with it
    // (the small flags' `--mini-unroll 4` replaced by the stage's value).
    let out = stage(&["--steps", "5", "--mini-unroll", "8"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("K 8 T 8"), "{}", text(&out));
}

#[test]
fn nonsense_flags_are_clear_errors() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cli-errors-flags");
    let cases: &[(&[&str], &str)] = &[
        (&["--size", "0"], "--size 0: must be at least 1"),
        (&["--batch", "0"], "--batch 0: must be at least 1"),
        (
            &["--mini-unroll", "9"],
            "--mini-unroll 9: must be between 1 and the target (8)",
        ),
        (
            &["--checkpoint-every", "0"],
            "--checkpoint-every 0: must be at least 1",
        ),
        (&["--state", "0"], "--state 0: must be at least 1"),
        (
            &["--cpu-minutes", "0"],
            "--cpu-minutes 0: must be positive and finite",
        ),
        (
            &["--pool", "2"],
            "--pool 2: must be at least the batch size (4)",
        ),
        (&["--lr=-1"], "--lr -1: must be positive and finite"),
        (&["--p-image", "2"], "--p-image 2: must lie in [0, 1]"),
        (&["--device", "tpu"], "unknown device 'tpu'"),
        (&["--device", "cuda:x"], "unknown device 'cuda:x'"),
        (
            &["--grad-norm", "clip:-1"],
            "--grad-norm clip:-1: the clip norm must be positive",
        ),
        (&["--size=-3"], "-3"),
        (&["--steps", "many"], "many"),
        (&["--perception", "fft"], "fft"),
        (&["--class-weights", "1,2"], "'1,2': give 3 weights"),
        (&["--ema", "1.5"], "--ema 1.5: must lie in [0, 1)"),
        (
            &["--lr-schedule", "step:0"],
            "--lr-schedule step:0: needs at least one drop",
        ),
        (&["--val-fraction", "1"], "val_fraction"),
        (&["--val-fold", "5/5"], "val_fold = 5/5"),
        (&["--val-fold", "2"], "'2': expected K/N"),
        (
            &["--val-fold", "0/5", "--val-fraction", "0.2"],
            "cannot be used with",
        ),
        (&["--jitter", "2"], "jitter"),
        (&["--min-crop", "0"], "min_crop"),
        (&["--curriculum", "2"], "--curriculum 2: must lie in [0, 1]"),
        (&["--lr-floor", "2"], "--lr-floor 2: must lie in [0, 1]"),
        (
            &["--dice-weight=-1"],
            "--dice-weight -1: must be finite and non-negative",
        ),
    ];
    for (flags, needle) in cases {
        let mut args = flags.to_vec();
        args.extend(["--steps", "1"].iter().filter(|_| flags[0] != "--steps"));
        let out = run(command(&bin, dir.path(), &args));
        let all = text(&out);
        let code = out.status.code();
        // 1: rejected by train_pets; 2: rejected by the argument parser.
        assert!(matches!(code, Some(1) | Some(2)), "{flags:?}: {all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{flags:?}: {all}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {all}");
        assert!(
            !dir.path().join("checkpoint.safetensors").exists(),
            "{flags:?} wrote a checkpoint"
        );
    }
    // Flags are checked before the data are read.
    let out = run(command(
        &bin,
        dir.path(),
        &["--batch", "0", "--data", "/nonexistent/pets"],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--batch 0"), "{}", text(&out));
}

#[test]
fn a_data_directory_that_is_not_a_pets_layout_is_a_clear_error() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cli-errors-data");
    std::fs::create_dir_all(dir.path().join("data/images")).expect("mkdir");
    let data = dir.path().join("data");
    let out = run(command(
        &bin,
        &dir.path().join("out"),
        &["--data", data.to_str().expect("utf-8 path"), "--steps", "1"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no annotations/"), "{}", text(&out));
}

/// Copies the files of `src` (two levels deep) into `dst`.
fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).expect("copy");
        }
    }
}

#[test]
fn a_broken_image_stops_a_strict_run_and_is_skipped_by_a_lenient_one() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cli-errors-lenient");
    let data = dir.path().join("data");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(cellseg::ca_eval::pets::FIXTURE_DIR),
        &data,
    );
    let split = std::fs::read_to_string(data.join("annotations/trainval.txt")).expect("split");
    let name = split
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .and_then(|l| l.split_whitespace().next())
        .expect("a listed sample")
        .to_string();
    let image = data.join("images").join(format!("{name}.jpg"));
    let bytes = std::fs::read(&image).expect("image");
    std::fs::write(&image, &bytes[..bytes.len() / 2]).expect("truncate");
    let data_arg = data.to_str().expect("utf-8 path");

    let strict = run(command(
        &bin,
        &dir.path().join("strict"),
        &["--data", data_arg, "--steps", "1"],
    ));
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict));
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        stderr.contains(&format!("{name}.jpg")) && stderr.contains("truncated JPEG"),
        "{}",
        text(&strict)
    );

    let lenient = run(command(
        &bin,
        &dir.path().join("lenient"),
        &["--data", data_arg, "--steps", "1", "--lenient"],
    ));
    assert!(lenient.status.success(), "{}", text(&lenient));
    let stdout = String::from_utf8_lossy(&lenient.stdout);
    assert!(
        stdout.contains("skipped 1") && stdout.contains(&format!("{name}.jpg")),
        "{}",
        text(&lenient)
    );
}
