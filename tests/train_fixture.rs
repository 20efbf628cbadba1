//! A short training on the bundled synthetic fixture, through the same glue
//! `train_pets` uses: the loss falls, and the test-split IoU beats that of
//! predicting the majority class everywhere.

use std::path::Path;

use ca_core::{CellConfig, CellRule};
use ca_data::{Augment, LoadOptions, PetsDataset, Split};
use ca_sched::{evaluate_iou, majority_mean_iou, AdamConfig, TrainConfig, Trainer, UnrollConfig};
use candle_core::Device;
use cellseg::ca_eval::pets::{PetsTrainData, FIXTURE_DIR};

#[test]
fn training_on_the_fixture_lowers_the_loss_and_beats_the_majority_class() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE_DIR);
    let options = LoadOptions::square(24);
    let train = PetsTrainData {
        dataset: PetsDataset::open(&root, Split::TrainVal, &options).unwrap(),
        augment: Augment::default(),
    };
    let test = PetsTrainData {
        dataset: PetsDataset::open(&root, Split::Test, &options).unwrap(),
        augment: Augment::none(),
    };
    let rule = CellRule::new(
        CellConfig {
            state_channels: 12,
            hidden_channels: 24,
            ..CellConfig::default()
        },
        0,
        &Device::Cpu,
    )
    .unwrap();
    let schedule = TrainConfig {
        unroll: UnrollConfig {
            batch: 8,
            pool_size: 8,
            mini_unroll: 5,
            target: 15,
            ..UnrollConfig::default()
        },
        optimizer: AdamConfig {
            learning_rate: 2e-3,
            ..AdamConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(rule, schedule, train.dataset.len()).unwrap();
    let losses: Vec<f32> = (0..80)
        .filter_map(|_| trainer.train_step(&train).unwrap().loss)
        .collect();
    let n = losses.len();
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[n - 10..]));
    // Seeds 0-4 of rule and schedule: the loss ratio is 0.75-0.82, the mean
    // IoU 0.330-0.357 against 0.193 for the majority class (background,
    // 58% of the test pixels).
    assert!(last < 0.85 * first, "loss {first} -> {last}");
    let iou = evaluate_iou(trainer.model(), &test, &[15], 12, 0).unwrap();
    let at = iou.at(15).unwrap();
    let mean_iou = at.iter().sum::<f64>() / at.len() as f64;
    let baseline = majority_mean_iou(&test, at.len(), &Device::Cpu).unwrap();
    assert!(
        mean_iou > baseline + 0.07,
        "mean IoU {mean_iou:.3} (per class {at:?}), majority class {baseline:.3}"
    );
}
