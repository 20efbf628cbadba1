//! Gradients reach the encoder and the decoder through a short unroll, and
//! they agree with finite differences.

mod common;

use ca_core::{step_rng, NamedParam, StepDraws};
use ca_hires::{reduced_size, Decoder, Encoder, HiresModel};
use candle_core::{Device, Tensor};
use common::{labels, small_model, uniform};

/// Three CA steps from the encoder's environment, the decoder's logits,
/// mean cross-entropy; returns the loss.
fn unroll_loss(model: &HiresModel, (h, w): (usize, usize)) -> Tensor {
    let b = 2;
    let images = uniform(&[b, 3, h, w], 11);
    let env = model.environment(&images).unwrap();
    let (sh, sw) = model.state_size((h, w));
    let mut state = uniform(&[b, 8, sh, sw], 12);
    for k in 0..3 {
        let draws = StepDraws::sample(
            model.config(),
            (b, sh, sw),
            &mut step_rng(9, k),
            &Device::Cpu,
        )
        .unwrap();
        state = model.rule().step(&state, &env, &draws).unwrap();
    }
    let logits = model.logits(&state, (h, w)).unwrap();
    let log_p = candle_nn::ops::log_softmax(&logits, 1).unwrap();
    let picked = log_p
        .gather(&labels(b, h, w, 13).unsqueeze(1).unwrap(), 1)
        .unwrap();
    picked.mean_all().unwrap().neg().unwrap()
}

#[test]
fn every_tensor_gets_a_nonzero_gradient() {
    // Height and width of different parity, odd sizes at every level.
    for (levels, size) in [(1, (13, 14)), (2, (14, 13)), (3, (33, 31))] {
        let model = small_model(levels, 3);
        let grads = unroll_loss(&model, size).backward().unwrap();
        for p in model.named_params() {
            let g = grads
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("levels {levels}: no gradient for {}", p.name));
            let norm = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "levels {levels}: gradient of {} is {norm}",
                p.name
            );
        }
        let names: Vec<String> = model.named_params().into_iter().map(|p| p.name).collect();
        assert!(names
            .iter()
            .any(|n| n == &format!("encoder.{}.weight", levels - 1)));
        assert!(names
            .iter()
            .any(|n| n == &format!("decoder.{}.bias", levels - 1)));
        assert!(!names.iter().any(|n| n.starts_with("classifier")));
    }
}

/// Two levels: the ReLU between the layers is on the path.
const LEVELS: usize = 2;

/// `d/dv sum(f(v) * probe)` against a central difference, for a few
/// entries of every tensor. The step is small because a larger one moves
/// some pre-activations across the ReLU's kink.
fn check_fd(params: &[NamedParam], loss: &dyn Fn() -> Tensor) {
    let grads = loss().backward().unwrap();
    for NamedParam { name, var, .. } in params {
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for i in [0, base.len() / 2, base.len() - 1] {
            let eps = 1e-3f32;
            let at = |x: f32| {
                let mut v = base.clone();
                v[i] = x;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss().to_scalar::<f32>().unwrap()
            };
            let fd = (at(base[i] + eps) - at(base[i] - eps)) / (2.0 * eps);
            at(base[i]);
            let tol = 2e-2 * (1.0 + fd.abs());
            assert!(
                (fd - g[i]).abs() < tol,
                "{name}[{i}]: fd {fd}, grad {}",
                g[i]
            );
        }
    }
}

#[test]
fn encoder_gradients_match_finite_differences() {
    let enc = Encoder::new(LEVELS, 21, &Device::Cpu).unwrap();
    let images = uniform(&[2, 3, 15, 14], 22);
    let probe = uniform(
        &[2, 8, reduced_size(15, LEVELS), reduced_size(14, LEVELS)],
        23,
    );
    check_fd(&enc.named(), &|| {
        (enc.forward(&images).unwrap() * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
    });
}

#[test]
fn decoder_gradients_match_finite_differences() {
    let dec = Decoder::new(LEVELS, 8, 3, 31, &Device::Cpu).unwrap();
    let state = uniform(
        &[2, 8, reduced_size(14, LEVELS), reduced_size(15, LEVELS)],
        32,
    );
    let probe = uniform(&[2, 3, 14, 15], 33);
    check_fd(&dec.named(), &|| {
        (dec.forward(&state, (14, 15)).unwrap() * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
    });
}
