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
