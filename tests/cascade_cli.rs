//! `train_pets --levels/--level-steps`: the cascade is stored in the model
//! and the checkpoint, a cascade run resumes with its levels, and a resume
//! or a fresh run with levels that do not fit is refused naming the flag.

mod support;

use serde_json::Value;
use support::{checkpoint_step, command, run, temp_dir, text};

/// On the 16-pixel fixture with T = 8 ([`support::SMALL`]).
const LEVELS: [&str; 4] = ["--levels", "4,8,16", "--level-steps", "2,2,4"];

fn cell_config(path: &std::path::Path) -> Value {
    let meta = cellseg::ca_sched::checkpoint_metadata(path).expect("a checkpoint");
    serde_json::from_str(&meta[cellseg::ca_core::io::CONFIG_KEY]).expect("cell config")
}

#[test]
fn a_cascade_checkpoint_resumes_with_its_levels() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("cascade-resume");
    let mut args = vec!["--steps", "2", "--checkpoint-every", "1"];
    args.extend_from_slice(&LEVELS);
    let out = run(command(&bin, dir.path(), &args));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1/4 x 2, 1/2 x 2"), "{}", text(&out));
    let ckpt = dir.path().join("checkpoint.safetensors");
    let levels = &cell_config(&ckpt)["cascade"]["levels"];
    assert_eq!(levels[0]["factor"], 4, "{levels}");
    assert_eq!(levels[1]["steps"], 2, "{levels}");
    let model = cellseg::ca_core::CellRule::load(
        dir.path().join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .expect("the model loads");
    assert_eq!(
        model.config().cascade.as_ref().map(|c| c.coarse_steps()),
        Some(4)
    );

    // Resumed without the flags: the checkpoint's levels, two more steps.
    let out = run(command(&bin, dir.path(), &["--resume", "--steps", "4"]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(checkpoint_step(&ckpt), 4);
    assert!(cell_config(&ckpt)["cascade"].is_object());

    // Other levels on resume are refused, and the checkpoint is kept.
    let before = std::fs::read(&ckpt).unwrap();
    let out = run(command(
        &bin,
        dir.path(),
        &[
            "--resume",
            "--steps",
            "6",
            "--levels",
            "8,16",
            "--level-steps",
            "4,4",
        ],
    ));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--levels"), "{}", text(&out));
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
}

#[test]
fn levels_that_do_not_fit_are_refused_naming_the_flag() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    for (args, needle) in [
        (
            vec!["--levels", "4,8,32", "--level-steps", "2,2,4"],
            "--levels",
        ),
        (
            vec!["--levels", "4,8,16", "--level-steps", "2,2,3"],
            "--level-steps",
        ),
        (vec!["--levels", "5,16", "--level-steps", "4,4"], "--levels"),
        (
            vec!["--levels", "4,8,16", "--level-steps", "2,0,6"],
            "--level-steps",
        ),
        (vec!["--levels", "4,8,16"], "--level-steps"),
        (
            vec![
                "--levels",
                "4,8,16",
                "--level-steps",
                "2,2,4",
                "--full-unroll",
            ],
            "full_unroll",
        ),
    ] {
        let dir = temp_dir("cascade-bad");
        let mut all = vec!["--steps", "1"];
        all.extend_from_slice(&args);
        let out = run(command(&bin, dir.path(), &all));
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{args:?}: {}", text(&out));
    }
}
