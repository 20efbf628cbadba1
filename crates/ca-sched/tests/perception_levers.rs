//! The perception levers of issue 23 item 3: the initial scale of the
//! perception weights that read the state and the image, a learning rate
//! of its own for the perception layer, and fixed filters beside the
//! learned ones.

mod common;

use ca_core::{CellConfig, CellRule, Perception};
use ca_sched::{
    AdamConfig, FixedFilters, InitConfig, LrScheduleConfig, TrainConfig, TrainData, Trainer,
    UnrollConfig,
};
use candle_core::{Device, Tensor, Var};
use common::max_diff;

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
        unroll: UnrollConfig {
            batch: 2,
            pool_size: 2,
            mini_unroll: 2,
            target: 3,
            ..UnrollConfig::default()
        },
        optimizer: AdamConfig {
            learning_rate: 1e-2,
            ..AdamConfig::default()
        },
        init: InitConfig {
            zero_update_init: false,
            ..InitConfig::default()
        },
        lr_schedule: LrScheduleConfig {
            warmup_steps: 0,
            ..LrScheduleConfig::default()
        },
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
            init: InitConfig {
                perception_init_scale: [0.5, 3.0],
                ..schedule().init
            },
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
            weights(&plain, &common::update_weight()),
            weights(&scaled, &common::update_weight())
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
        let before = (
            weights(&t, "perceive.weight"),
            weights(&t, &common::update_weight()),
        );
        t.train_step(&Halves).unwrap();
        let after = (
            weights(&t, "perceive.weight"),
            weights(&t, &common::update_weight()),
        );
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

/// The folded weight is the architecture it stands for: each input channel
/// filtered by the four fixed kernels (a depthwise convolution), the `4 C`
/// responses mixed into `H` channels by a 1x1 layer.
#[test]
fn a_folded_mix_is_the_fixed_channels_mixed_by_a_linear_layer() {
    let dev = Device::Cpu;
    let (h, c) = (5, 3);
    let w = Var::zeros((h, c, 3, 3), candle_core::DType::F32, &dev).unwrap();
    let filters = FixedFilters::new(&w).unwrap();
    let mix = Tensor::randn(0f32, 1.0, (h, c, 4), &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, c, 7, 6), &dev).unwrap();
    let folded = x.conv2d(&filters.fold(&mix).unwrap(), 1, 1, 1, 1).unwrap();
    // Depthwise: output channel 4 c + k is filter k of input channel c.
    let kernels = filters
        .filters()
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .repeat((c, 1, 1, 1))
        .unwrap()
        .reshape((4 * c, 1, 3, 3))
        .unwrap();
    let responses = x.conv2d(&kernels, 1, 1, 1, c).unwrap();
    let pointwise = mix.reshape((h, 4 * c, 1, 1)).unwrap();
    let mixed = responses.conv2d(&pointwise, 0, 1, 1, 1).unwrap();
    let diff = max_diff(&folded, &mixed);
    assert!(diff < 1e-4, "{diff}");
}

/// The mix starts at zero, so the first step's gradients are the plain
/// run's: afterwards the perception weight is the plain run's plus the
/// fold of the mix Adam moved, and every other tensor is the plain run's.
#[test]
fn fixed_filters_add_the_folded_mix_to_the_plain_update() {
    let plain_cfg = schedule();
    let filters_cfg = TrainConfig {
        fixed_filters: true,
        ..schedule()
    };
    let mut plain = Trainer::new(rule(Perception::Conv3x3), plain_cfg, 4).unwrap();
    let mut with = Trainer::new(rule(Perception::Conv3x3), filters_cfg, 4).unwrap();
    plain.train_step(&Halves).unwrap();
    with.train_step(&Halves).unwrap();
    let named = |t: &Trainer<CellRule>| t.model().params().named();
    for (p, q) in named(&plain).iter().zip(named(&with)) {
        let gap = max_diff(p.var.as_tensor(), q.var.as_tensor());
        if p.name == "perceive.weight" {
            assert!(gap > 1e-4, "the mix did not move the weight");
        } else {
            assert!(gap < 1e-6, "{}: {gap}", p.name);
        }
    }
    let mix = with.fixed_filters().expect("the run has fixed filters");
    let gap = (named(&with)[0].var.as_tensor() - named(&plain)[0].var.as_tensor()).unwrap();
    let folded = mix.fold(mix.mix().as_tensor()).unwrap();
    let diff = max_diff(&gap, &folded);
    assert!(diff < 1e-6, "{diff}");
    // Adam's first step moves each mix entry by the rate (1e-2), or not
    // at all where its gradient is zero.
    let size = mix.mix().abs().unwrap().mean_all().unwrap();
    let size = size.to_scalar::<f32>().unwrap();
    assert!(size > 5e-3 && size < 1.0001e-2, "mean |mix| {size}");
}

#[test]
fn fixed_filters_need_a_3x3_perception() {
    let cfg = TrainConfig {
        fixed_filters: true,
        ..schedule()
    };
    let e = Trainer::new(rule(Perception::Depthwise), cfg, 4)
        .err()
        .expect("a depthwise rule with fixed filters")
        .to_string();
    assert!(e.contains("fixed_filters") && e.contains("conv3x3"), "{e}");
}

/// `mix_grad` is the adjoint of `fold`: candle's autograd of the fold
/// gives the same gradient.
#[test]
fn the_mix_gradient_is_the_folds_adjoint() {
    let dev = Device::Cpu;
    let w = Var::zeros((3, 2, 3, 3), candle_core::DType::F32, &dev).unwrap();
    let f = FixedFilters::new(&w).unwrap();
    let mix = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 2, 4), &dev).unwrap()).unwrap();
    let up = Tensor::randn(0f32, 1.0, (3, 2, 3, 3), &dev).unwrap();
    let loss = (f.fold(mix.as_tensor()).unwrap() * &up)
        .unwrap()
        .sum_all()
        .unwrap();
    let auto = loss.backward().unwrap();
    let auto = auto.get(mix.as_tensor()).unwrap();
    let diff = max_diff(auto, &f.mix_grad(&up).unwrap());
    assert!(diff < 1e-5, "{diff}");
}
