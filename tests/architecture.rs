//! `docs/ARCHITECTURE.md` lists the workspace's crate graph; this test
//! reads the real one from `cargo metadata` and fails when they differ
//! (issue 25: the drawing had drifted to edges that did not exist).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The edges listed in the `crate -> depends on` block of the document.
fn documented() -> Graph {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    let mut graph = Graph::new();
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("crate ") && line.contains("-> depends on") {
            in_block = true;
            continue;
        }
        if in_block && line.starts_with("```") {
            break;
        }
        if !in_block {
            continue;
        }
        let (name, rest) = line.split_once("->").expect("`crate -> deps   job`");
        // The dependencies end where the two-space gap before the job starts.
        let deps = rest.trim_start().split("  ").next().unwrap_or_default();
        let deps: BTreeSet<String> = deps
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "(none)")
            .map(str::to_string)
            .collect();
        graph.insert(name.trim().to_string(), deps);
    }
    assert!(
        !graph.is_empty(),
        "no crate graph block in docs/ARCHITECTURE.md"
    );
    graph
}

/// The normal (not dev, not build) dependencies between workspace crates.
fn actual() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(*d))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_documented_crate_graph_is_the_real_one() {
    assert_eq!(documented(), actual());
}

#[test]
fn loading_or_running_a_model_needs_no_trainer() {
    // Issue 36: ca-viz and ca-serve load and run models through ca-model;
    // only the tools that train or evaluate splits depend on ca-sched.
    let graph = actual();
    for user in [
        "ca-model", "ca-viz", "ca-serve", "ca-hires", "ca-data", "ca-core",
    ] {
        let deps = graph
            .get(user)
            .unwrap_or_else(|| panic!("{user} is a workspace crate"));
        assert!(
            !deps.contains("ca-sched"),
            "{user} depends on ca-sched: {deps:?}"
        );
    }
}

/// The files under `dir` whose name ends in `.rs`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A library runs no example by its build path (issue 25 point 2): a
/// caller says where a program is.
#[test]
fn no_library_names_a_build_folder() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).expect("crates folder") {
        rust_files(&krate.expect("crate").path().join("src"), &mut files);
    }
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "found only {} sources", files.len());
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("readable source");
            ["target/release", "target/debug"]
                .iter()
                .any(|p| text.contains(p))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "{offenders:?}");
}
