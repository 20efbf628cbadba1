//! Training a coarse-to-fine colony: fresh slots run the coarse levels with
//! gradients (their ages count those steps), pooled slots go on at the full
//! grid, and schedules a cascade cannot train are refused by name.

mod common;

use ca_core::{Cascade, CellConfig, CellRule};
use ca_sched::{
    AdamConfig, CurriculumConfig, SchedError, TrainConfig, TrainData, Trainer, UnrollConfig,
};
use candle_core::Device;

const SIZE: usize = 12;

/// The shared bright squares at this file's size.
fn squares(n: usize) -> common::Squares {
    common::Squares { n, size: SIZE }
}

fn rule(cascade: Option<Cascade>) -> CellRule {
    let cfg = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        cascade,
        ..CellConfig::default()
    };
    CellRule::new(cfg, 1, &Device::Cpu).unwrap()
}

fn schedule() -> TrainConfig {
    TrainConfig {
        unroll: UnrollConfig {
            batch: 4,
            pool_size: 8,
            mini_unroll: 4,
            target: 12,
            ..UnrollConfig::default()
        },
        optimizer: AdamConfig {
            learning_rate: 3e-3,
            ..AdamConfig::default()
        },
        seed: 3,
        ..TrainConfig::default()
    }
}

fn cascade() -> Cascade {
    Cascade::from_sides(&[3, 6, 12], &[4, 4, 4]).unwrap()
}

#[test]
fn fresh_slots_age_by_the_coarse_steps_and_the_loss_falls() {
    let data = squares(10);
    let mut t = Trainer::new(rule(Some(cascade())), schedule(), data.len()).unwrap();
    let r = t.train_step(&data).unwrap();
    // Every slot of the first step is fresh: 8 coarse steps, then K = 4.
    let aged: Vec<usize> = t.pool().slots.iter().map(|s| s.age).collect();
    assert!(
        aged.iter().filter(|&&a| a == 12).count() >= 1,
        "ages after one step: {aged:?}"
    );
    assert!(aged.iter().all(|&a| a == 0 || a == 12), "{aged:?}");
    assert!(r.loss.is_some(), "fresh slots past T0 count at once");
    let losses: Vec<f32> = (0..80)
        .filter_map(|_| t.train_step(&data).unwrap().loss)
        .collect();
    let n = losses.len();
    let first: f32 = losses[..8].iter().sum::<f32>() / 8.0;
    let last: f32 = losses[n - 8..].iter().sum::<f32>() / 8.0;
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
}

#[test]
fn schedules_a_cascade_cannot_train_are_refused_by_name() {
    for (cfg, field) in [
        (
            TrainConfig {
                unroll: UnrollConfig {
                    full_unroll: true,
                    ..schedule().unroll
                },
                ..schedule()
            },
            "full_unroll",
        ),
        (
            TrainConfig {
                curriculum: CurriculumConfig {
                    full_unroll_fraction: 0.3,
                },
                ..schedule()
            },
            "full_unroll_fraction",
        ),
        (
            TrainConfig {
                unroll: UnrollConfig {
                    target: 8,
                    ..schedule().unroll
                },
                ..schedule()
            },
            "target",
        ),
    ] {
        let err = Trainer::new(rule(Some(cascade())), cfg, 10).err().unwrap();
        match err {
            SchedError::InvalidConfig(ca_core::InvalidValue { name: f, .. }) => {
                assert_eq!(f, field)
            }
            e => panic!("expected an invalid config, got {e}"),
        }
    }
}
