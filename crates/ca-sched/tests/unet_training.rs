//! The U-Net baseline under the colonies' Learner: it learns bright
//! squares, validates with its one prediction at every CA step, keeps its
//! best model as a U-Net file, and refuses what it cannot do by name.

mod common;

use ca_sched::{
    AdamConfig, Fit, Learner, LearnerConfig, SchedError, TrainConfig, TrainData, UNetTrainer,
    UnrollConfig,
};
use ca_unet::{UNet, UNetConfig};
use candle_core::Device;

const SIZE: usize = 16;

/// The shared bright squares at this file's size.
fn squares(n: usize) -> common::Squares {
    common::Squares { n, size: SIZE }
}

fn unet() -> UNet {
    let config = UNetConfig {
        width: 4,
        ..UNetConfig::default()
    };
    UNet::new(config, 0, &Device::Cpu).unwrap()
}

fn schedule() -> TrainConfig {
    TrainConfig {
        unroll: UnrollConfig {
            batch: 4,
            pool_size: 4,
            target: 8,
            mini_unroll: 4,
            ..UnrollConfig::default()
        },
        optimizer: AdamConfig {
            learning_rate: 1e-2,
            ..AdamConfig::default()
        },
        loss: ca_sched::LossConfig {
            class_weights: Some(vec![1.0, 3.0, 1.0]),
            dice_weight: 1.0,
        },
        seed: 2,
        ..TrainConfig::default()
    }
}

#[test]
fn a_unet_learns_under_the_learner_and_keeps_its_best_model() {
    let (data, val) = (squares(12), squares(6));
    let dir = tempfile::tempdir().unwrap();
    let (last, best) = (
        dir.path().join("model.safetensors"),
        dir.path().join("model-best.safetensors"),
    );
    let settings = LearnerConfig {
        max_steps: 100,
        eval_every: 40,
        eval_steps: vec![2, 4, 8],
        eval_samples: 6,
        eval_batch: 4,
        gate_every: 0,
        ..LearnerConfig::default()
    };
    let trainer = UNetTrainer::new(unet(), schedule(), data.len()).unwrap();
    let before = trainer.evaluate(&val, &[8], 4, 0).unwrap().iou[0][1];
    let mut learner = Learner::from_trainer(trainer, &data, settings)
        .unwrap()
        .with_validation(&val)
        .with_model_file(&last, SIZE)
        .with_best_model_file(&best, SIZE)
        .unwrap();
    let mut losses = Vec::new();
    let mut validations = Vec::new();
    let summary = learner
        .fit(|e| {
            losses.push(e.report.loss.unwrap());
            if let Some(table) = e.validation {
                validations.push(table.clone());
            }
        })
        .unwrap();
    assert_eq!(summary.steps, 100);
    assert_eq!(validations.len(), 2, "at steps 40 and 80");
    for table in &validations {
        assert_eq!(table.steps, [2, 4, 8]);
        assert!(
            table.iou.iter().all(|row| row
                .iter()
                .zip(&table.iou[0])
                .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))),
            "one prediction, the same at every step: {:?}",
            table.iou
        );
    }
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let end: f32 = losses[90..].iter().sum::<f32>() / 10.0;
    assert!(end < 0.5 * first, "loss {first} -> {end}");
    let after = learner.evaluate(&val, &[8]).unwrap().iou[0][1];
    assert!(
        after > 0.8 && after > before,
        "object IoU {before} -> {after}"
    );

    // Both files are U-Net files with the training size; the best one
    // records its score, and a colony loader refuses them by name.
    let (_, size) = ca_model::load_unet(&last, &Device::Cpu).unwrap().unwrap();
    assert_eq!(size, SIZE);
    let (score, step) = ca_model::best_score(&best).unwrap().unwrap();
    assert_eq!(Some((score, step)), learner.best());
    assert!(ca_model::load_unet(&best, &Device::Cpu).unwrap().is_some());
    let refused = ca_model::load_model(&best, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("U-Net baseline") && refused.contains("model-best.safetensors"),
        "{refused}"
    );
}

#[test]
fn what_a_unet_cannot_do_is_refused_by_name() {
    let with_filters = TrainConfig {
        fixed_filters: true,
        ..schedule()
    };
    let err = UNetTrainer::new(unet(), with_filters, 4).err().unwrap();
    assert!(
        matches!(&err, SchedError::InvalidConfig(v) if v.name == "fixed_filters"),
        "{err}"
    );
    let err = UNetTrainer::new(unet(), schedule(), 0).err().unwrap();
    assert!(err.to_string().contains("no samples"), "{err}");
    let trainer = UNetTrainer::new(unet(), schedule(), 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = trainer
        .save_checkpoint(&dir.path().join("c.safetensors"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("no resumable checkpoint"), "{err}");
    let err = trainer.evaluate(&squares(2), &[0, 4], 2, 0).err().unwrap();
    assert!(err.to_string().contains("start at 1"), "{err}");
}
