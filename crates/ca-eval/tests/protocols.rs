//! The evaluation protocols on the bundled synthetic fixture with a tiny
//! untrained rule at 16x16 and a high-resolution model with an 8x8 state:
//! bad values refused with the value named, every protocol run at the
//! image's resolution. (Their files and plots: the root's tests/protocols.rs.)

use std::path::{Path, PathBuf};

use ca_core::{CellConfig, CellRule};
use ca_data::Split;
use ca_eval::pets::FIXTURE_DIR;
use ca_eval::protocols::{self, EvalSet, RunOptions};
use ca_hires::HiresModel;
use candle_core::Device;

const SIZE: usize = 16;

fn rule() -> CellRule {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        ..CellConfig::default()
    };
    CellRule::new(config, 3, &Device::Cpu).unwrap()
}

fn hires_model() -> HiresModel {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        env_channels: 8,
        ..CellConfig::default()
    };
    HiresModel::new(config, 1, 3, &Device::Cpu).unwrap()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(FIXTURE_DIR)
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

/// `--ensemble`: the IoU curves average the probabilities of several
/// colonies per image (one member is the plain curve, row for row);
/// protocols of single runs refuse it by name.
#[test]
fn iou_curves_take_an_ensemble_and_single_run_protocols_refuse_it() {
    let (rule, set, opts) = (rule(), set(), opts());
    let plain = protocols::stability(&rule, &set, &opts).unwrap();
    let one = protocols::stability(
        &rule,
        &set,
        &RunOptions {
            ensemble: 1,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(plain.table.rows, one.table.rows);
    let three = RunOptions {
        ensemble: 3,
        ..opts.clone()
    };
    let averaged = protocols::stability(&rule, &set, &three).unwrap();
    assert_eq!(averaged.table.columns, plain.table.columns);
    assert_eq!(averaged.table.rows.len(), plain.table.rows.len());
    assert!(averaged
        .table
        .rows
        .iter()
        .flat_map(|row| &row[1..])
        .all(|v| v.is_nan() || (0.0..=1.0).contains(v)));
    assert_ne!(
        averaged.table.rows, plain.table.rows,
        "three colonies vote differently"
    );
    let switching = protocols::switching(&rule, &set, &three, 3).unwrap();
    assert_eq!(switching.table.rows.len(), plain.table.rows.len());
    for e in [
        protocols::norms(&rule, &set, &three).err().unwrap(),
        protocols::uncertainty(&rule, &set, &three, 2, 0)
            .err()
            .unwrap(),
        protocols::stability(
            &rule,
            &set,
            &RunOptions {
                ensemble: 0,
                ..opts
            },
        )
        .err()
        .unwrap(),
    ] {
        assert!(e.to_string().contains("ensemble"), "{e}");
    }
}

/// `evaluate anytime`: a row for the fixed step count, then one per
/// setting, each with its mean steps inside the setting's bounds.
#[test]
fn anytime_compares_settling_rules_with_the_fixed_count() {
    let (rule, set, opts) = (rule(), set(), opts());
    let settings = [
        ca_core::Settling {
            max_change: 0.5,
            window: 1,
            min_steps: 2,
            max_steps: 9,
            smoothing: 0.0,
        },
        ca_core::Settling {
            max_change: 0.0,
            window: 2,
            min_steps: 3,
            max_steps: 5,
            smoothing: 0.5,
        },
    ];
    let out = protocols::anytime(&rule, &set, &opts, &settings).unwrap();
    assert_eq!(out.name, "anytime");
    assert_eq!(out.table.columns[0], "mean_steps");
    assert_eq!(out.table.rows.len(), 3);
    // One value per column, the smoothing in its own.
    assert!(out
        .table
        .rows
        .iter()
        .all(|r| r.len() == out.table.columns.len()));
    // Sorted by mean steps; the fixed count is the row without a rule.
    let steps = out.table.column("mean_steps").unwrap();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    let rule_of = |window: f64| {
        let k = out.table.column("window").unwrap();
        out.table.rows[k
            .iter()
            .position(|&w| w == window || (w.is_nan() && window.is_nan()))
            .unwrap()]
        .clone()
    };
    assert_eq!(rule_of(f64::NAN)[0], opts.target as f64);
    assert!((2.0..=9.0).contains(&rule_of(1.0)[0]));
    assert!((3.0..=5.0).contains(&rule_of(2.0)[0]));
    assert_eq!((rule_of(1.0)[5], rule_of(2.0)[5]), (0.0, 0.5));
    let bad = ca_core::Settling {
        window: 0,
        ..settings[0]
    };
    let e = protocols::anytime(&rule, &set, &opts, &[bad])
        .err()
        .unwrap();
    assert!(e.to_string().contains("window"), "{e}");
}

/// `evaluate video`: one row per steps-per-frame with each motion's object
/// and boundary IoU, the cold colony's beside; a still "video" carried
/// with T steps a frame is the plain colony stepping on.
#[test]
fn video_compares_the_carried_colony_with_a_cold_one() {
    use ca_data::sequence::Motion;
    let (rule, set, opts) = (rule(), set(), opts());
    let motions = [
        ("still", Motion::Brightness { per_frame: 0.0 }),
        (
            "pan",
            Motion::Pan {
                pixels_per_frame: 1.0,
                zoom: 1.5,
            },
        ),
    ];
    let out = protocols::video(&rule, &set, &opts, &motions, 3, &[1, 4]).unwrap();
    assert_eq!(
        out.table.columns,
        [
            "steps_per_frame",
            "iou_object_still",
            "iou_boundary_still",
            "iou_object_pan",
            "iou_boundary_pan"
        ]
    );
    assert_eq!(out.table.rows.len(), 2);
    assert_eq!((out.table.rows[0][0], out.table.rows[1][0]), (1.0, 4.0));
    let (_, cold) = &out.extra_tables[0];
    assert_eq!(cold.rows[0][0], opts.target as f64);
    // Still frames, 4 steps each after T = 4: the carried colony at frames
    // 1 and 2 is the plain colony at steps 8 and 12.
    let plain = protocols::stability(
        &rule,
        &set,
        &RunOptions {
            steps: 12,
            every: 4,
            ..opts.clone()
        },
    )
    .unwrap();
    let at = |t: f64, col: usize| plain.table.rows.iter().find(|r| r[0] == t).unwrap()[col];
    let want = (at(8.0, 2) + at(12.0, 2)) / 2.0;
    assert!(
        (out.table.rows[1][1] - want).abs() < 1e-12,
        "{} vs {want}",
        out.table.rows[1][1]
    );
    // Frame by frame: frames 1 and 2, the still motion's K = 4 column the
    // plain colony at steps 8 and 12; the averages of the frames are the
    // summary's.
    let (name, frames) = &out.extra_tables[1];
    assert_eq!(name, "frames");
    assert_eq!(frames.columns.len(), 1 + 2 * 2 * 3);
    assert_eq!(frames.columns[3], "iou_object_still_k4");
    assert_eq!(frames.columns[12], "iou_boundary_pan_k4");
    let k4: Vec<f64> = frames.rows.iter().map(|r| r[3]).collect();
    assert_eq!(
        frames.rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
        [1.0, 2.0]
    );
    assert!((k4[0] - at(8.0, 2)).abs() < 1e-12 && (k4[1] - at(12.0, 2)).abs() < 1e-12);
    let pan_cold = frames
        .columns
        .iter()
        .position(|c| c == "iou_object_pan_cold")
        .unwrap();
    let mean = (frames.rows[0][pan_cold] + frames.rows[1][pan_cold]) / 2.0;
    assert!((mean - cold.rows[0][3]).abs() < 1e-12);
    for bad in [
        protocols::video(&rule, &set, &opts, &motions, 1, &[1]),
        protocols::video(&rule, &set, &opts, &motions, 3, &[0]),
    ] {
        let e = bad.err().unwrap().to_string();
        assert!(e.contains("frames") || e.contains("steps_per_frame"), "{e}");
    }
}

/// Issue 37 item 4: a high-resolution model scored on coarser labels (its
/// prediction averaged down by `Downsampled`): the prediction has the
/// label map's shape, and `stability` runs on labels of that size.
#[test]
fn a_downsampled_high_resolution_prediction_has_the_label_maps_shape() {
    use ca_core::{Colony, Downsampled};
    let model = hires_model();
    let halved = Downsampled::new(&model, 2).unwrap();
    let images = candle_core::Tensor::rand(0f32, 1.0, (2, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let mut colony = Colony::new(&halved, 2, SIZE, SIZE, 0).unwrap();
    let env = colony.environment(&images).unwrap();
    colony.evolve(&env, 2).unwrap();
    assert_eq!(colony.predict().unwrap().dims(), [2, SIZE / 2, SIZE / 2]);
    // The same as averaging the full-resolution logits over 2x2 blocks.
    let full = ca_core::CellModel::logits(&model, colony.state(), (SIZE, SIZE)).unwrap();
    let want = full.avg_pool2d(2).unwrap();
    let got = colony.logits().unwrap();
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "{diff}");
    // Stability on labels at half the image size.
    let mut set = set();
    set.labels = EvalSet::open(&fixture(), Split::Test, SIZE / 2, Some(3))
        .unwrap()
        .labels;
    let out = protocols::stability(&halved, &set, &opts()).unwrap();
    assert_eq!(out.table.rows.len(), 4);
    assert!(Downsampled::new(&model, 0).is_err());
    let odd = Downsampled::new(&model, 3).unwrap();
    let mut colony = Colony::new(&odd, 1, SIZE, SIZE, 0).unwrap();
    colony
        .evolve(&env.get(0).unwrap().unsqueeze(0).unwrap(), 1)
        .unwrap();
    let err = colony.logits().err().unwrap().to_string();
    assert!(err.contains("multiples of 3"), "{err}");
}

/// A table whose row does not match its header is refused before anything
/// is written (the anytime table once lost its smoothing column so).
#[test]
fn a_ragged_table_is_not_written() {
    let path = std::env::temp_dir().join(format!("ca-eval-ragged-{}.csv", std::process::id()));
    let table = protocols::Table {
        columns: vec!["a".into(), "b".into()],
        rows: vec![vec![1.0, 2.0], vec![3.0]],
    };
    let e = table.write_csv(&path).unwrap_err().to_string();
    assert!(
        e.contains("row 1 has 1 values for 2 columns") && e.contains("ca-eval-ragged"),
        "{e}"
    );
    assert!(!path.exists());
}
