//! Helpers shared by the tests that run the real example binaries
//! (`train_pets` and, for the device flag, all of them).
//!
//! The binary is the one `cargo test --release` (or `cargo build --release
//! --examples`, as `.ci/run` does first) puts in `<target>/<profile>/examples/`,
//! beside the `deps/` folder that holds the test binary. When it is absent
//! the test prints that it skipped, and fails when `CI=true`.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `train_pets` example binary, or `None` (with a printed note) when it
/// has not been built; panics under `CI=true`, where it must exist.
pub fn train_pets() -> Option<PathBuf> {
    example("train_pets")
}

/// The example binary `name`, or `None` (with a printed note) when it has
/// not been built; panics under `CI=true`, where it must exist.
pub fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        return Some(bin);
    }
    let note = format!(
        "{} not found: build it with `cargo build --release --examples`",
        bin.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{note}");
    }
    eprintln!("skipped: {note}");
    None
}

/// A fresh, empty directory for one test, removed on drop.
pub use tempfile::TempDir;

/// A fresh, empty directory `$TMPDIR/cellseg-NAME-XXXXXX` for one test.
pub fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("cellseg-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// A small, fast configuration on the bundled synthetic fixture: 16x16
/// images, state 8, hidden 16, batch 4, K 4, T 8, no periodic evaluation.
pub const SMALL: &[&str] = &[
    "--size",
    "16",
    "--state",
    "8",
    "--hidden",
    "16",
    "--batch",
    "4",
    "--mini-unroll",
    "4",
    "--target",
    "8",
    "--eval-every",
    "0",
];

/// A `train_pets` command on the fixture (no `--data`, `$CA_PETS_DIR`
/// cleared) writing to `out`, with `extra` and those flags of [`SMALL`]
/// that `extra` does not give.
pub fn command(bin: &Path, out: &Path, extra: &[&str]) -> Command {
    let given = |flag: &str| extra.iter().any(|e| e.split('=').next() == Some(flag));
    let mut cmd = Command::new(bin);
    cmd.env_remove("CA_PETS_DIR")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for pair in SMALL.chunks(2) {
        if !given(pair[0]) {
            cmd.args(pair);
        }
    }
    cmd.arg("--out").arg(out).args(extra);
    cmd
}

/// Runs a command to its end and returns its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.output().expect("start train_pets")
}

/// stdout and stderr of a finished run, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The photos of the bundled synthetic set, sorted by name (paths
/// relative to the repository root, the tests' working directory).
pub fn fixture_photos() -> Vec<PathBuf> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir("fixtures/pets-synthetic/images")
        .expect("the bundled fixture")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    photos.sort();
    photos
}

/// The step counter stored in a training checkpoint.
pub fn checkpoint_step(path: &Path) -> u64 {
    let meta = cellseg::ca_sched::checkpoint_metadata(path)
        .unwrap_or_else(|e| panic!("checkpoint does not load: {e}"));
    let state: serde_json::Value =
        serde_json::from_str(&meta[cellseg::ca_sched::TRAIN_STATE_KEY]).expect("train state JSON");
    state["step"].as_u64().expect("a step counter")
}
