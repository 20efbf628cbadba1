//! The U-Net baseline through the program (issue 37): `train --model unet`
//! trains it on the bundled fixture with the colonies' files, `evaluate
//! stability` measures its one prediction at every requested step with
//! the colonies' columns, and the colony-only settings and tools refuse it
//! by name.

mod support;

use std::process::{Command, Output};

use support::text;

fn cellseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellseg"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cellseg")
}

#[test]
fn a_unet_trains_and_is_evaluated_like_a_colony() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("unet");
    let run_s = run.to_str().unwrap();
    let out = cellseg(&[
        "train",
        "--model",
        "unet",
        "--width",
        "4",
        "--steps",
        "12",
        "--eval-every",
        "6",
        "--out",
        run_s,
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("model: U-Net width 4"), "{said}");
    assert!(said.contains("validation IoU over"), "{said}");
    for file in [
        "model.safetensors",
        "model-best.safetensors",
        "metrics.jsonl",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    assert!(!run.join("checkpoint.safetensors").exists());

    let eval = dir.path().join("eval");
    let model = run.join("model-best.safetensors");
    let out = cellseg(&[
        "evaluate",
        "stability",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "20",
        "--every",
        "10",
        "--out",
        eval.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(eval.join("stability.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,iou_background,iou_object,iou_boundary,iou_mean")
    );
    let rows: Vec<(&str, &str)> = lines.map(|l| l.split_once(',').unwrap()).collect();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ["1", "10", "20"]
    );
    assert!(rows.iter().all(|r| r.1 == rows[0].1), "{csv}");
    // Its ensemble is flip test-time augmentation: 2, and nothing else.
    let flipped = cellseg(&[
        "evaluate",
        "stability",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "20",
        "--every",
        "10",
        "--ensemble",
        "2",
        "--out",
        eval.to_str().unwrap(),
    ]);
    assert!(flipped.status.success(), "{}", text(&flipped));
    let three = cellseg(&[
        "evaluate",
        "stability",
        "--model",
        model.to_str().unwrap(),
        "--ensemble",
        "3",
        "--out",
        eval.to_str().unwrap(),
    ]);
    assert!(!three.status.success());
    assert!(
        text(&three).contains("flip test-time augmentation"),
        "{}",
        text(&three)
    );

    // Colony tools name what the file is.
    let image = support::fixture_photos()[0].clone();
    let out = cellseg(&[
        "segment",
        "--model",
        model.to_str().unwrap(),
        image.to_str().unwrap(),
        "--out",
        dir.path().join("seg").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("a U-Net baseline"), "{}", text(&out));
}

#[test]
fn colony_settings_with_a_unet_are_refused_by_name() {
    for (args, needle) in [
        (
            vec!["--levels", "8,16,32", "--level-steps", "20,10,10"],
            "--levels",
        ),
        (vec!["--resume"], "--resume"),
        (vec!["--width", "0"], "--width 0"),
        (vec!["--width", "1000"], "--width 1000"),
    ] {
        let mut all = vec!["train", "--model", "unet", "--out", "/nonexistent/never"];
        all.extend(args);
        let out = cellseg(&all);
        let said = text(&out);
        assert!(!out.status.success(), "{all:?}: {said}");
        assert!(said.contains(needle), "{all:?}: {said}");
        assert!(!said.contains("panicked"), "{said}");
    }
}

/// `evaluate stability --label-size`: scored on coarser labels, refused
/// where it does not divide `--size` and by every other protocol.
#[test]
fn label_size_scores_on_coarser_labels_and_is_refused_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("eval");
    let ok = cellseg(&[
        "evaluate",
        "stability",
        "--model",
        "models/pets48.safetensors",
        "--size",
        "64",
        "--label-size",
        "32",
        "--steps",
        "4",
        "--every",
        "4",
        "--limit",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("labels at 32x32"), "{}", text(&ok));
    assert!(out_dir.join("stability.csv").exists());
    for (args, needle) in [
        (
            vec!["stability", "--size", "64", "--label-size", "24"],
            "must divide the image size 64",
        ),
        (
            vec!["switching", "--label-size", "24"],
            "only `evaluate stability` of a colony",
        ),
    ] {
        let mut all = vec!["evaluate"];
        all.extend(args);
        all.extend([
            "--model",
            "models/pets48.safetensors",
            "--out",
            "/nonexistent/never",
        ]);
        let out = cellseg(&all);
        assert!(!out.status.success());
        assert!(text(&out).contains(needle), "{all:?}: {}", text(&out));
    }
}
