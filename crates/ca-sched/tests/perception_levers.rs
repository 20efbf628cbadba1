//! The perception levers of issue 23 item 3: the initial scale of the
//! perception weights that read the state and the image, and a learning
//! rate of its own for the perception layer.

use ca_core::{CellConfig, CellRule, Perception};
use ca_sched::{TrainConfig, TrainData, Trainer};
use candle_core::{Device, Tensor};

const SIZE: usize = 8;

/// Half-bright images whose right half is the object.
struct Halves;

impl TrainData for Halves {
    fn len(&self) -> usize {
        4
    }

    fn batch(&self, items: &[(usize, u64)], device: &Device) -> ca_sched::Result<(Tensor, Tensor)> {
        let b = items.len();
        let img: Vec<f32> = (0..b * 3 * SIZE * SIZE)
            .map(|i| if i % SIZE >= SIZE / 2 { 0.9 } else { 0.1 })
            .collect();
        let lab: Vec<u32> = (0..b * SIZE * SIZE)
            .map(|i| u32::from(i % SIZE >= SIZE / 2))
            .collect();
        Ok((
            Tensor::from_vec(img, (b, 3, SIZE, SIZE), device)?,
            Tensor::from_vec(lab, (b, SIZE, SIZE), device)?,
        ))
    }
}

fn rule(perception: Perception) -> CellRule {
    let cfg = CellConfig {
        state_channels: 4,
        hidden_channels: 8,
        perception,
        ..CellConfig::default()
    };
    CellRule::new(cfg, 2, &Device::Cpu).unwrap()
}

fn schedule() -> TrainConfig {
    TrainConfig {
        batch: 2,
        pool_size: 2,
        mini_unroll: 2,
        target: 3,
        learning_rate: 1e-2,
        zero_update_init: false,
        warmup_steps: 0,
        ..TrainConfig::default()
    }
}

fn weights(t: &Trainer<CellRule>, name: &str) -> Vec<f32> {
    let p = t.model().params().named();
    let p = p.iter().find(|p| p.name == name).expect(name);
    p.var.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn the_state_and_image_parts_of_the_perception_start_at_their_own_scale() {
    for (perception, name, per_input) in [
        (Perception::Conv3x3, "perceive.weight", 9),
        (Perception::Depthwise, "pointwise.weight", 1),
    ] {
        let plain = Trainer::new(rule(perception), schedule(), 4).unwrap();
        let cfg = TrainConfig {
            perception_init_scale: [0.5, 3.0],
            ..schedule()
        };
        let scaled = Trainer::new(rule(perception), cfg, 4).unwrap();
        let (a, b) = (weights(&plain, name), weights(&scaled, name));
        let inputs = 4 + 3;
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            let input = (k / per_input) % inputs;
            let f = if input < 4 { 0.5 } else { 3.0 };
            assert!((x * f - y).abs() < 1e-6, "{name}[{k}]: {x} * {f} != {y}");
        }
        // Other layers are untouched.
        assert_eq!(
            weights(&plain, "update.weight"),
            weights(&scaled, "update.weight")
        );
    }
}

#[test]
fn the_perception_steps_at_its_own_learning_rate() {
    let step = |scale: f64| {
        let cfg = TrainConfig {
            perception_lr_scale: scale,
            ..schedule()
        };
        let mut t = Trainer::new(rule(Perception::Conv3x3), cfg, 4).unwrap();
        let before = (weights(&t, "perceive.weight"), weights(&t, "update.weight"));
        t.train_step(&Halves).unwrap();
        let after = (weights(&t, "perceive.weight"), weights(&t, "update.weight"));
        let moved = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).sum()
        };
        (moved(&before.0, &after.0), moved(&before.1, &after.1))
    };
    let (perceive_1, update_1) = step(1.0);
    let (perceive_q, update_q) = step(0.25);
    assert!(perceive_1 > 0.0 && update_1 > 0.0);
    // Adam's first update is the rate times m/sqrt(v), the same for both.
    assert!(
        (perceive_q / perceive_1 - 0.25).abs() < 1e-3,
        "{perceive_q} / {perceive_1}"
    );
    assert!(
        (update_q / update_1 - 1.0).abs() < 1e-6,
        "{update_q} / {update_1}"
    );
}
