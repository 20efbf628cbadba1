//! `evaluate --split val|train` reads the same validation split that
//! `train_pets` holds out, and `--breeds` / `--exclude-breeds` filter it;
//! run on the bundled fixture with the committed model.

mod support;

use std::path::Path;
use std::process::Command;

use support::{example, temp_dir, text, TempDir};

/// Runs `evaluate stability` for 2 CA steps with `args` and returns the
/// number of samples it reports, or its stderr when it fails.
fn samples(bin: &Path, out: &TempDir, args: &[&str]) -> Result<usize, String> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pets-synthetic");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pets48.safetensors");
    let o = Command::new(bin)
        .arg("stability")
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&fixture)
        .args(["--steps", "2", "--out"])
        .arg(out.path())
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run evaluate");
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let all = text(&o);
    let line = all
        .lines()
        .find(|l| l.starts_with("model "))
        .unwrap_or_else(|| panic!("no model line: {all}"));
    // "model PATH (plain), N NAME samples at ..."
    let n = line
        .split("), ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sample count: {line}"));
    Ok(n)
}

#[test]
fn validation_and_training_parts_partition_trainval_and_breeds_filter() {
    let Some(bin) = example("evaluate") else {
        return;
    };
    let out = temp_dir("evaluate-splits");
    let all = samples(&bin, &out, &["--split", "trainval"]).unwrap();
    let val = samples(&bin, &out, &["--split", "val"]).unwrap();
    let train = samples(&bin, &out, &["--split", "train"]).unwrap();
    assert_eq!(val + train, all);
    assert!(val > 0 && val * 100 < all * 30, "{val} of {all}");
    // The same split every run.
    assert_eq!(samples(&bin, &out, &["--split", "val"]).unwrap(), val);
    // Per breed: the two fixture breeds add up to the whole.
    let cats = samples(&bin, &out, &["--split", "val", "--breeds", "synth-cat"]).unwrap();
    let not_cats = samples(
        &bin,
        &out,
        &["--split", "val", "--exclude-breeds", "synth-cat"],
    )
    .unwrap();
    assert_eq!(cats + not_cats, val);
    assert!(cats > 0 && not_cats > 0, "{cats} + {not_cats}");
    let err = samples(&bin, &out, &["--split", "val", "--breeds", "nonesuch"]).unwrap_err();
    assert!(err.contains("no validation samples left"), "{err}");
    let err = samples(&bin, &out, &["--split", "val", "--val-fraction", "1"]).unwrap_err();
    assert!(err.contains("val_fraction"), "{err}");
}
