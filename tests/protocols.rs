//! The evaluation protocols as `cellseg::report` writes them, on the
//! bundled synthetic fixture with a tiny untrained rule at 16x16: each
//! writes its files, with the expected rows, columns and picture sizes.
//! (The protocols alone: crates/ca-eval/tests; `segment`: crates/ca-viz/tests.)

use std::path::{Path, PathBuf};

use ca_core::{CellConfig, CellRule};
use ca_data::Split;
use candle_core::Device;
use cellseg::ca_eval::pets::FIXTURE_DIR;
use cellseg::ca_eval::protocols::{self, EvalSet, RunOptions};
use cellseg::ca_viz::plot::PLOT_SIZE;
use cellseg::report;

const SIZE: usize = 16;

fn rule() -> CellRule {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        ..CellConfig::default()
    };
    CellRule::new(config, 3, &Device::Cpu).unwrap()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE_DIR)
}

fn set() -> EvalSet {
    EvalSet::open(&fixture(), Split::Test, SIZE, Some(3)).unwrap()
}

fn opts() -> RunOptions {
    RunOptions {
        steps: 6,
        batch: 2,
        seed: 1,
        every: 2,
        target: 4,
        ensemble: 1,
    }
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cellseg-protocols-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The CSV's header and its rows, split at commas.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text
        .lines()
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>());
    let header = lines.next().unwrap();
    let rows: Vec<_> = lines.collect();
    for r in &rows {
        assert_eq!(
            r.len(),
            header.len(),
            "{}: ragged row {r:?}",
            path.display()
        );
    }
    (header, rows)
}

fn image_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn first_column(rows: &[Vec<String>]) -> Vec<String> {
    rows.iter().map(|r| r[0].clone()).collect()
}

#[test]
fn iou_protocols_write_csv_and_plot() {
    let (rule, set, opts) = (rule(), set(), opts());
    let outputs = [
        protocols::stability(&rule, &set, &opts).unwrap(),
        protocols::switching(&rule, &set, &opts, 2).unwrap(),
        protocols::shift(&rule, &set, &opts, 3, 2).unwrap(),
    ];
    let dir = out_dir("iou");
    for out in &outputs {
        let paths = report::write_protocol(out, &set, &dir).unwrap();
        // Stability also writes the standard errors of its IoUs.
        let tables = if out.name == "stability" { 3 } else { 2 };
        assert_eq!(paths.len(), tables, "{}: {paths:?}", out.name);
        if out.name == "stability" {
            let (header, rows) = read_csv(&dir.join("stability_stderr.csv"));
            assert_eq!(
                header,
                [
                    "step",
                    "stderr_background",
                    "stderr_object",
                    "stderr_boundary"
                ]
            );
            assert_eq!(first_column(&rows), ["1", "2", "4", "6"]);
            for v in rows.iter().flat_map(|r| &r[1..]) {
                let v: f64 = v.parse().unwrap();
                assert!(v.is_nan() || (0.0..0.5).contains(&v), "standard error {v}");
            }
        }
        let (header, rows) = read_csv(&dir.join(format!("{}.csv", out.name)));
        assert_eq!(
            header,
            [
                "step",
                "iou_background",
                "iou_object",
                "iou_boundary",
                "iou_mean"
            ]
        );
        assert_eq!(first_column(&rows), ["1", "2", "4", "6"], "{}", out.name);
        for r in &rows {
            for v in &r[1..] {
                let v: f64 = v.parse().unwrap();
                assert!(
                    v.is_nan() || (0.0..=1.0).contains(&v),
                    "{}: IoU {v}",
                    out.name
                );
            }
        }
        assert_eq!(
            image_size(&dir.join(format!("{}.png", out.name))),
            PLOT_SIZE
        );
    }
    // Same seed, same numbers.
    let again = protocols::stability(&rule, &set, &opts).unwrap();
    assert_eq!(
        format!("{:?}", again.table),
        format!("{:?}", outputs[0].table)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn norms_protocol_writes_csv_and_plot() {
    let set = set();
    let out = protocols::norms(&rule(), &set, &RunOptions { every: 1, ..opts() }).unwrap();
    let dir = out_dir("norms");
    report::write_protocol(&out, &set, &dir).unwrap();
    let (header, rows) = read_csv(&dir.join("norms.csv"));
    assert_eq!(
        header,
        [
            "step",
            "state_l1",
            "logits_l1",
            "state_change_l1",
            "logits_change_l1",
            "prediction_change"
        ]
    );
    assert_eq!(rows.len(), 6);
    for r in &rows {
        let v: Vec<f64> = r.iter().map(|c| c.parse().unwrap()).collect();
        assert!(v[1] > 0.0 && v[2] > 0.0, "norms must be positive: {v:?}");
        assert!((0.0..=1.0).contains(&v[5]));
    }
    assert_eq!(image_size(&dir.join("norms.png")), PLOT_SIZE);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn uncertainty_protocol_writes_tables_plot_and_maps() {
    let set = set();
    let out = protocols::uncertainty(&rule(), &set, &opts(), 3, 2).unwrap();
    let dir = out_dir("uncertainty");
    report::write_protocol(&out, &set, &dir).unwrap();
    let (header, rows) = read_csv(&dir.join("uncertainty.csv"));
    assert_eq!(header, ["step", "prob_variance", "disagreement"]);
    assert_eq!(first_column(&rows), ["1", "2", "4", "6"]);
    let (header, rows) = read_csv(&dir.join("uncertainty_samples.csv"));
    assert_eq!(
        header,
        ["index", "prob_variance", "disagreement", "pixel_accuracy"]
    );
    assert_eq!(first_column(&rows), ["0", "1", "2"]);
    for r in &rows {
        let var: f64 = r[1].parse().unwrap();
        assert!((0.0..=2.0 / 3.0).contains(&var), "variance {var}");
    }
    assert_eq!(image_size(&dir.join("uncertainty.png")), PLOT_SIZE);
    let side = (SIZE * 4) as u32;
    for i in 0..2 {
        let map = dir.join(format!("uncertainty_map_{i}.png"));
        assert_eq!(image_size(&map), (3 * side, side));
    }
    assert!(!dir.join("uncertainty_map_2.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn written_tables_read_back_and_compare() {
    let (rule, set, opts) = (rule(), set(), opts());
    let dir = out_dir("compare");
    let a = protocols::stability(&rule, &set, &opts).unwrap();
    report::write_protocol(&a, &set, &dir).unwrap();
    let back = protocols::Table::read_csv(&dir.join("stability.csv")).unwrap();
    assert_eq!(back.columns, a.table.columns);
    assert_eq!(back.rows.len(), a.table.rows.len());
    let tables = vec![("a".to_string(), back.clone()), ("b".to_string(), back)];
    let plot = report::compare(&tables, "iou_object", "t".into()).unwrap();
    assert_eq!(plot.series.len(), 2);
    let png = dir.join("compare.png");
    plot.save(&png).unwrap();
    assert_eq!(image_size(&png), PLOT_SIZE);
    let e = report::compare(&tables, "nope", "t".into()).unwrap_err();
    assert!(e.to_string().contains("'nope'"), "{e}");
    std::fs::write(dir.join("bad.csv"), "step,x\n1,2,3\n").unwrap();
    let e = protocols::Table::read_csv(&dir.join("bad.csv")).unwrap_err();
    assert!(e.to_string().contains("data line 1 has 3 values"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny untrained high-resolution model: one stride-2 level, so a 16x16
/// image runs an 8x8 state.
/// One evaluator: training's IoU (`ca_sched::evaluate_iou` on the training
/// data type) and `evaluate stability` (the protocols on an `EvalSet`) give
/// the same figures for the same model, samples, seed and steps.
#[test]
fn training_and_evaluate_report_the_same_iou() {
    let ds =
        ca_data::PetsDataset::open(&fixture(), Split::Test, &ca_data::LoadOptions::square(SIZE))
            .unwrap();
    let set = EvalSet::from_dataset(&ds, None).unwrap();
    let data = cellseg::ca_eval::pets::PetsTrainData {
        dataset: ds,
        augment: ca_data::Augment::none(),
    };
    let model = rule();
    let opts = RunOptions {
        steps: 6,
        batch: 2,
        seed: 1,
        every: 2,
        target: 4,
        ensemble: 1,
    };
    let stability = protocols::stability(&model, &set, &opts).unwrap();
    let steps = [2, 4, 6];
    let trained = ca_sched::evaluate_iou(&model, &data, &steps, opts.batch, opts.seed).unwrap();
    for (k, &t) in steps.iter().enumerate() {
        let row = stability
            .table
            .rows
            .iter()
            .find(|r| r[0] == t as f64)
            .unwrap();
        for c in 0..3 {
            let (a, b) = (row[1 + c], trained.iou[k][c]);
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "step {t} class {c}: {a} vs {b}"
            );
        }
    }
}
