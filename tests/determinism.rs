//! Determinism on CPU: the same seed gives bit-identical weights and the
//! same IoU, whatever the number of rayon threads; another seed gives other
//! ones. Once through the library (`Trainer` on the bundled fixture), once
//! through the `train_pets` binary (the bytes of `model.safetensors`).

mod support;

use std::path::Path;

use ca_core::{CellConfig, CellRule};
use ca_data::{Augment, LoadOptions, PetsDataset, Split};
use ca_model::{IouTable, Trainable};
use ca_sched::{evaluate_iou, AdamConfig, TrainConfig, Trainer, UnrollConfig};
use candle_core::Device;
use cellseg::ca_eval::pets::{PetsTrainData, FIXTURE_DIR};
use cellseg::{ca_core, ca_data, ca_sched};
use support::{command, run, temp_dir, text};

fn split(split: Split, augment: Augment) -> PetsTrainData {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE_DIR);
    PetsTrainData {
        dataset: PetsDataset::open(&root, split, &LoadOptions::square(16)).expect("fixture"),
        augment,
    }
}

/// Trains 12 steps from `seed` and returns every weight's bits and the
/// test IoU.
fn train(seed: u64, train: &PetsTrainData, test: &PetsTrainData) -> (Vec<Vec<u32>>, IouTable) {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        ..CellConfig::default()
    };
    let rule = CellRule::new(config, seed, &Device::Cpu).expect("rule");
    let schedule = TrainConfig {
        unroll: UnrollConfig {
            batch: 4,
            pool_size: 6,
            mini_unroll: 4,
            target: 8,
            ..UnrollConfig::default()
        },
        optimizer: AdamConfig {
            learning_rate: 3e-3,
            ..AdamConfig::default()
        },
        seed,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(rule, schedule, train.dataset.len()).expect("trainer");
    for _ in 0..12 {
        trainer.train_step(train).expect("step");
    }
    let bits = trainer
        .model()
        .named_params()
        .iter()
        .map(|p| {
            let v = p.var.flatten_all().and_then(|t| t.to_vec1::<f32>());
            v.expect("weights").iter().map(|x| x.to_bits()).collect()
        })
        .collect();
    let iou = evaluate_iou(trainer.model(), test, &[8, 16], 6, 1).expect("iou");
    (bits, iou)
}

#[test]
fn same_seed_same_bits_other_seed_other_weights() {
    let train_set = split(Split::TrainVal, Augment::default());
    let test_set = split(Split::Test, Augment::none());
    let (a, iou_a) = train(7, &train_set, &test_set);
    let (b, iou_b) = train(7, &train_set, &test_set);
    assert!(a == b, "same seed, different weights");
    assert_eq!(iou_a.iou, iou_b.iou);
    let (c, iou_c) = train(8, &train_set, &test_set);
    assert!(a != c, "another seed gave the same weights");
    assert_ne!(iou_a.iou, iou_c.iou);
}

#[test]
fn train_pets_is_bit_reproducible_across_thread_counts() {
    let Some(bin) = support::train_pets() else {
        return;
    };
    let dir = temp_dir("determinism");
    let model = |name: &str, seed: &str, threads: &str| -> (Vec<u8>, String) {
        let out_dir = dir.path().join(name);
        let mut cmd = command(&bin, &out_dir, &["--steps", "15", "--seed", seed]);
        cmd.env("RAYON_NUM_THREADS", threads);
        let out = run(cmd);
        assert!(out.status.success(), "{}", text(&out));
        let iou = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("CA steps:"))
            .collect::<Vec<_>>()
            .join("\n");
        let bytes = std::fs::read(out_dir.join("model.safetensors")).expect("model");
        (bytes, iou)
    };
    let (one, iou_one) = model("a", "5", "1");
    let (again, iou_again) = model("b", "5", "1");
    let (three, iou_three) = model("c", "5", "3");
    let (other, _) = model("d", "6", "1");
    assert!(one == again, "same seed, different model files");
    assert_eq!(iou_one, iou_again);
    assert!(
        one == three,
        "1 and 3 rayon threads gave different model files"
    );
    assert_eq!(iou_one, iou_three);
    assert!(one != other, "another seed gave the same model file");
}
