//! The evaluation protocols and `segment` on the bundled synthetic fixture
//! with a tiny untrained rule at 16x16 (and a high-resolution model with an
//! 8x8 state): each writes its files, with the
//! expected rows, columns and picture sizes.

use std::path::{Path, PathBuf};

use ca_core::{CellConfig, CellRule};
use ca_data::Split;
use ca_hires::HiresModel;
use candle_core::Device;
use cellseg::ca_eval::pets::FIXTURE_DIR;
use cellseg::ca_eval::protocols::{self, EvalSet, RunOptions};
use cellseg::ca_viz::plot::PLOT_SIZE;
use cellseg::ca_viz::segment::{segment, write_outputs, OutputPaths, SegmentOptions};
use cellseg::report;
use image::AnimationDecoder;

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
        assert_eq!(paths.len(), 2, "{}: {paths:?}", out.name);
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
fn protocols_reject_bad_values() {
    let (rule, set, opts) = (rule(), set(), opts());
    let e = protocols::shift(&rule, &set, &opts, 6, 2).unwrap_err();
    assert!(e.to_string().contains("shift step '6'"), "{e}");
    let e = protocols::shift(&rule, &set, &opts, 2, 16).unwrap_err();
    assert!(e.to_string().contains("invalid shift '16'"), "{e}");
    let e = protocols::uncertainty(&rule, &set, &opts, 1, 0).unwrap_err();
    assert!(e.to_string().contains("runs '1'"), "{e}");
    let e = protocols::stability(&rule, &set, &RunOptions { batch: 0, ..opts }).unwrap_err();
    assert!(e.to_string().contains("batch '0'"), "{e}");
    let e = EvalSet::open(&fixture(), Split::Test, SIZE, Some(0)).unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
}

fn fixture_photo() -> (PathBuf, image::RgbImage) {
    let dir = fixture().join("images");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let path = names[0].clone();
    let photo = ca_data::load_rgb(&path).unwrap();
    (path, photo)
}

#[test]
fn segment_writes_maps_at_photo_size_and_a_two_row_gif() {
    let (path, photo) = fixture_photo();
    let options = SegmentOptions {
        size: SIZE,
        native: false,
        steps: 5,
        seed: 0,
        frame_every: Some(2),
        frame_scale: 2,
    };
    let seg = segment(&rule(), &photo, &options).unwrap();
    assert_eq!(seg.grid, (SIZE, SIZE));
    let steps: Vec<usize> = seg.frames.iter().map(|f| f.0).collect();
    assert_eq!(steps, [1, 2, 4, 5]);
    let dir = out_dir("segment");
    let paths = OutputPaths::in_dir(&dir, &path, Some(dir.join("evolution.gif")));
    write_outputs(&seg, &photo, &paths, 50).unwrap();
    assert_eq!(image_size(&paths.classes), photo.dimensions());
    assert_eq!(image_size(&paths.overlay), photo.dimensions());
    let file = std::fs::File::open(dir.join("evolution.gif")).unwrap();
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file)).unwrap();
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 4);
    let side = 2 * SIZE as u32;
    assert_eq!(frames[0].buffer().dimensions(), (side, 2 * side));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segment_native_runs_on_the_photo_grid() {
    let (_, photo) = fixture_photo();
    let small = image::imageops::resize(&photo, 20, 12, image::imageops::FilterType::Triangle);
    let options = SegmentOptions {
        size: SIZE,
        native: true,
        steps: 2,
        seed: 0,
        frame_every: None,
        frame_scale: 1,
    };
    let seg = segment(&rule(), &small, &options).unwrap();
    assert_eq!(seg.grid, (20, 12));
    assert_eq!(seg.classes.len(), 240);
    assert!(seg.frames.is_empty());
    let f = seg.class_fractions(3);
    assert!((f.iter().sum::<f64>() - 1.0).abs() < 1e-9);
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
fn hires_model() -> HiresModel {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        env_channels: 8,
        ..CellConfig::default()
    };
    HiresModel::new(config, 1, 3, &Device::Cpu).unwrap()
}

#[test]
fn protocols_run_a_high_resolution_model_at_image_resolution() {
    let (model, set, opts) = (hires_model(), set(), opts());
    let stability = protocols::stability(&model, &set, &opts).unwrap();
    assert_eq!(stability.table.rows.len(), 4);
    assert!(stability
        .table
        .rows
        .iter()
        .all(|r| r[1..].iter().all(|v| v.is_nan() || (0.0..=1.0).contains(v))));
    let shifted = protocols::shift(&model, &set, &opts, 3, 2).unwrap();
    assert_eq!(shifted.table.rows.len(), 4);
    let norms = protocols::norms(&model, &set, &opts).unwrap();
    assert!(norms.table.rows.iter().all(|r| r[1] > 0.0 && r[2] > 0.0));
    let spread = protocols::uncertainty(&model, &set, &opts, 2, 1).unwrap();
    // The maps are at the image's resolution, not the state's.
    assert_eq!(spread.maps.len(), 1);
    assert_eq!(spread.maps[0].majority.len(), SIZE * SIZE);
    assert_eq!(spread.maps[0].prob_variance.len(), SIZE * SIZE);
    // The plain and the high-resolution models differ on the same data.
    let plain = protocols::stability(&rule(), &set, &opts).unwrap();
    assert_ne!(
        format!("{:?}", plain.table),
        format!("{:?}", stability.table)
    );
}

#[test]
fn segment_runs_a_high_resolution_model_on_a_smaller_state() {
    let (_, photo) = fixture_photo();
    let model = hires_model();
    let options = SegmentOptions {
        size: SIZE,
        native: false,
        steps: 3,
        seed: 0,
        frame_every: Some(1),
        frame_scale: 2,
    };
    let seg = segment(&model, &photo, &options).unwrap();
    assert_eq!((seg.grid, seg.state_grid), ((16, 16), (8, 8)));
    assert_eq!(seg.classes.len(), 256);
    // Both rows of a frame are at the pixel grid.
    let side = 2 * SIZE as u32;
    assert_eq!(seg.frames[0].1.dimensions(), (side, 2 * side));
    let small = image::imageops::resize(&photo, 20, 13, image::imageops::FilterType::Triangle);
    let native = SegmentOptions {
        native: true,
        frame_every: None,
        ..options
    };
    let seg = segment(&model, &small, &native).unwrap();
    assert_eq!((seg.grid, seg.state_grid), ((20, 13), (10, 7)));
    assert_eq!(seg.classes.len(), 260);
}

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
