//! Every example takes `--device cpu|cuda[:N]` (parsed by
//! `cellseg::device::parse_device`) and rejects a bad value with a clear
//! error before doing any work: an unknown device, a bad ordinal, and, in a
//! build without the `cuda` feature, any CUDA device.
//!
//! Runs the example binaries that `cargo build --release --examples` (as
//! `.ci/run` does first) puts beside the test binary's `deps/` folder; when
//! they are absent the test prints that it skipped, and fails when
//! `CI=true`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each example with the arguments that come before its flags (the
/// subcommand of `evaluate`).
const EXAMPLES: &[(&str, &[&str])] = &[
    ("adversarial", &[]),
    ("evaluate", &["stability"]),
    ("hires_timing", &[]),
    ("params", &[]),
    ("segment", &[]),
    ("step_timing", &[]),
    ("train_pets", &[]),
    ("unroll_memory", &[]),
];

/// The built example binaries, or `None` (with a printed note) when one is
/// missing; panics under `CI=true`, where they must exist.
fn examples() -> Option<Vec<(PathBuf, &'static [&'static str])>> {
    EXAMPLES
        .iter()
        .map(|&(name, pre)| support::example(name).map(|bin| (bin, pre)))
        .collect()
}

/// Runs `bin pre.. --device value` and asserts that it fails with exit code
/// 2 (the argument parser's) and `needle` on stderr, without a panic.
fn rejects(bin: &Path, pre: &[&str], value: &str, needle: &str) {
    let out = Command::new(bin)
        .args(pre)
        .args(["--device", value])
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("{} --device {value}: {stderr}", bin.display());
    assert_eq!(out.status.code(), Some(2), "{what}");
    assert!(stderr.contains(needle), "{what}");
    assert!(!stderr.contains("panicked"), "{what}");
}

#[test]
fn every_example_rejects_bad_devices_clearly() {
    let Some(examples) = examples() else {
        return;
    };
    for (bin, pre) in &examples {
        rejects(bin, pre, "tpu", "unknown device 'tpu'");
        rejects(bin, pre, "cuda:x", "unknown device 'cuda:x'");
        rejects(bin, pre, "cuda:-1", "unknown device 'cuda:-1'");
        if !cfg!(feature = "cuda") {
            for value in ["cuda", "cuda:0", "cuda:3"] {
                rejects(bin, pre, value, "built without CUDA");
            }
        }
    }
}
