//! One deterministic step of tiny configs (a third of the cells not firing)
//! against values computed independently by `tests/golden/step_golden.py`
//! (plain Python loops).

#![allow(clippy::excessive_precision)] // golden values are printed with six decimals

use std::collections::HashMap;
use std::path::Path;

use ca_core::{param_shapes, CellConfig, CellRule, Norm, Perception, StepBackend, StepDraws};
use candle_core::{Device, Tensor};

fn filled(shape: &[usize], f: impl Fn(usize) -> f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(f).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
}

fn golden_step(config: CellConfig, (b, h, w): (usize, usize, usize), expected: &[f32]) {
    let tensors: HashMap<String, Tensor> = param_shapes(&config)
        .into_iter()
        .enumerate()
        .map(|(t, (name, shape, ..))| {
            let v = filled(&shape, |i| {
                0.5 * (1.3 * i as f64 + 0.7 * t as f64 + 0.1).sin() as f32
            });
            (name, v)
        })
        .collect();
    let rule =
        CellRule::from_named_tensors(config.clone(), &tensors, Path::new("golden"), &Device::Cpu)
            .unwrap();
    let (s, e) = (config.state_channels, config.env_channels);
    let state = filled(&[b, s, h, w], |i| 1.5 * (0.9 * i as f64 + 0.3).sin() as f32);
    let env = filled(&[b, e, h, w], |i| 0.8 * (0.4 * i as f64).cos() as f32);
    let draws = StepDraws {
        mask: filled(&[b, 1, h, w], |i| if i % 3 != 1 { 1.0 } else { 0.0 }),
        noise: config
            .reset_gate
            .then(|| filled(&[b, s, h, w], |i| (2.1 * i as f64 + 1.0).sin() as f32)),
    };
    for backend in [StepBackend::Reference, StepBackend::Fused] {
        let got = rule
            .clone()
            .with_backend(backend)
            .step(&state, &env, &draws)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got.len(), expected.len());
        for (k, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(
                (g - e).abs() < 2e-5,
                "{backend:?} element {k}: got {g}, expected {e}"
            );
        }
    }
}

fn tiny(s: usize, e: usize, hidden: usize, layers: usize) -> CellConfig {
    CellConfig {
        state_channels: s,
        hidden_channels: hidden,
        env_channels: e,
        num_classes: 2,
        hidden_layers: layers,
        ..CellConfig::default()
    }
}

#[test]
fn conv3x3_instance_residual_reset() {
    let config = tiny(2, 1, 3, 1);
    golden_step(
        config,
        (1, 3, 4),
        &[
            0.715999, 1.398059, 0.750032, 0.226931, -1.031649, -1.678473, -0.534285, 0.467312,
            0.466862, 1.358959, 0.186682, -1.306025, -1.288784, -0.804859, 0.045973, 1.805829,
            1.268620, -0.008923, -0.859531, -1.488989, -1.136936, 0.766152, 1.423687, 0.676220,
        ],
    );
}

#[test]
fn depthwise_batch_plain() {
    let config = CellConfig {
        perception: Perception::Depthwise,
        norm: Norm::Batch,
        residual: false,
        reset_gate: false,
        ..tiny(2, 1, 4, 0)
    };
    golden_step(
        config,
        (2, 2, 3),
        &[
            0.707737, 1.398059, -1.374321, -0.590566, -1.031649, 1.420236, 0.701137, 0.467312,
            -1.367574, 0.320334, 0.186682, 1.735431, 0.419929, -0.804859, 1.203822, -0.994962,
            1.268620, -0.791876, -0.068170, -1.488989, 0.583070, -1.378751, 1.423687, -0.525478,
        ],
    );
}

#[test]
fn conv3x3_channel_residual() {
    let config = CellConfig {
        norm: Norm::Channel,
        reset_gate: false,
        ..tiny(3, 2, 4, 2)
    };
    golden_step(
        config,
        (1, 2, 2),
        &[
            -0.194468, 1.398059, 1.203798, 0.089879, -1.115871, -1.494247, -1.244650, 1.177310,
            1.310339, 1.281898, 0.040852, -1.267189,
        ],
    );
}
