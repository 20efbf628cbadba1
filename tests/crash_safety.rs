//! Crash safety: a real `train_pets` process on the synthetic fixture is
//! killed with SIGKILL at seeded random moments, some of them while it
//! writes a checkpoint, and resumed each time with `--resume`. After every
//! kill the checkpoint loads (metadata, the whole training state, the model
//! file), its step counter never goes back, and at most one checkpoint
//! interval of the steps the process logged is lost; the run that goes to
//! the end leaves no temporary file.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use cellseg::ca_core::io::config_from_metadata;
use cellseg::ca_core::CellRule;
use cellseg::ca_sched::{checkpoint_metadata, Trainer};
use rand::{rngs::StdRng, Rng, SeedableRng};
use support::{checkpoint_step, command, temp_dir};

/// Steps of the whole run: with kills every 20-200 ms, rng seeds 20-27 give
/// 3-7 kills (2-6 of them inside a write) before the run ends.
const STEPS: u64 = 60;
const ROUNDS: usize = 12;
/// Trainval samples of the bundled fixture.
const TRAIN_SAMPLES: usize = 36;

/// Names of the temporary files of atomic writes in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read out dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// The largest step logged in `metrics.jsonl` after byte `from` (whole
/// lines only: a line cut by the kill does not count).
fn last_logged_step(metrics: &Path, from: usize) -> Option<u64> {
    let bytes = std::fs::read(metrics).unwrap_or_default();
    let text = String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_u64())
        .max()
}

/// Waits until the child has logged its first step (past byte `from` of
/// `metrics`, so that a slow start on a loaded machine does not eat the
/// delay), then `delay`, then, when `on_write`, until an atomic write is
/// under way (a temporary file appears; at most another 500 ms), and kills
/// the child. Returns false when the child had already finished.
fn kill_later(
    child: &mut Child,
    (dir, metrics, from): (&Path, &Path, u64),
    delay: Duration,
    on_write: bool,
) -> bool {
    let started = Instant::now();
    while std::fs::metadata(metrics).map_or(0, |m| m.len()) <= from
        && started.elapsed() < Duration::from_secs(120)
    {
        if child.try_wait().expect("poll child").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let start = Instant::now();
    let deadline = delay + Duration::from_millis(if on_write { 500 } else { 0 });
    while start.elapsed() < deadline {
        if start.elapsed() >= delay && on_write && !temp_files(dir).is_empty() {
            break;
        }
        if child.try_wait().expect("poll child").is_some() {
            return false;
        }
        let watching = on_write && start.elapsed() >= delay;
        std::thread::sleep(Duration::from_micros(if watching { 50 } else { 2000 }));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");
    true
}

/// Everything a resumed run reads must load.
fn assert_loads(dir: &Path) {
    let checkpoint = dir.join("checkpoint.safetensors");
    let meta = checkpoint_metadata(&checkpoint).expect("checkpoint metadata");
    let config = config_from_metadata(&meta, &checkpoint).expect("config");
    let rule = CellRule::new(config, 0, &Device::Cpu).expect("rule");
    Trainer::resume(rule, &checkpoint, TRAIN_SAMPLES).expect("whole training state");
    // The model file is written just after the checkpoint: a kill between
    // the first two writes leaves none yet.
    let model = dir.join("model.safetensors");
    if model.exists() {
        CellRule::load(&model, &Device::Cpu).expect("model file");
    }
}

#[test]
fn sigkill_at_random_moments_loses_at_most_one_checkpoint_interval() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("crash");
    let checkpoint = dir.path().join("checkpoint.safetensors");
    let metrics = dir.path().join("metrics.jsonl");
    let mut rng = StdRng::seed_from_u64(20);
    let mut saved: Option<u64> = None;
    let mut kills_in_write = 0;
    let steps = STEPS.to_string();
    for round in 0..ROUNDS {
        // Every other round writes a checkpoint at every step and is killed
        // as soon as a write is seen under way.
        let on_write = round % 2 == 0;
        let every = if on_write { 1 } else { 5 };
        let every_arg = every.to_string();
        let mut args = vec![
            "--steps",
            &steps,
            "--checkpoint-every",
            every_arg.as_str(),
            "--seed",
            "3",
        ];
        if checkpoint.exists() {
            args.push("--resume");
        }
        let from = std::fs::metadata(&metrics).map_or(0, |m| m.len());
        let mut child = command(&bin, dir.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start train_pets");
        let delay = Duration::from_millis(rng.random_range(20..200));
        if !kill_later(&mut child, (dir.path(), &metrics, from), delay, on_write) {
            break; // finished before the kill
        }
        let leftovers = temp_files(dir.path());
        if !leftovers.is_empty() {
            kills_in_write += 1;
            for name in leftovers {
                std::fs::remove_file(dir.path().join(&name)).expect("remove temp file");
            }
        }
        let logged = last_logged_step(&metrics, from as usize);
        if !checkpoint.exists() {
            assert!(
                logged.is_none_or(|s| s <= every),
                "round {round}: no checkpoint after logging step {logged:?}"
            );
            continue;
        }
        assert_loads(dir.path());
        let step = checkpoint_step(&checkpoint);
        println!("round {round}: every {every}, logged {logged:?}, checkpoint at {step}");
        assert!(
            saved.is_none_or(|s| step >= s),
            "round {round}: the step went back from {saved:?} to {step}"
        );
        if let Some(logged) = logged {
            assert!(
                logged.saturating_sub(step) <= every,
                "round {round}: logged step {logged}, checkpoint at {step}, every {every}"
            );
        }
        saved = Some(step);
    }
    println!("{kills_in_write} of the kills landed inside a checkpoint write");
    assert!(
        kills_in_write > 0,
        "no kill landed inside a checkpoint write"
    );

    // A last run (resumed, unless no checkpoint survived) goes to the end.
    let mut args = vec!["--steps", steps.as_str(), "--seed", "3"];
    if checkpoint.exists() {
        args.push("--resume");
    }
    let out = command(&bin, dir.path(), &args)
        .output()
        .expect("run train_pets");
    assert!(out.status.success(), "{}", support::text(&out));
    assert_loads(dir.path());
    assert!(dir.path().join("model.safetensors").exists());
    assert_eq!(checkpoint_step(&checkpoint), STEPS);
    let leftovers = temp_files(dir.path());
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
