//! Gradients reach the encoder and the decoder through a short unroll, and
//! they agree with finite differences.

mod common;

use ca_core::{step_rng, NamedParam, StepDraws};
use ca_hires::{reduced_size, Decoder, Encoder, HiresModel};
use candle_core::{Device, Tensor};
use common::{labels, max_diff, small_model, uniform};

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

/// A one-level decoder (on the CPU: candle's batched matmul and the col2im
/// op of `upsample.rs`) against candle's own `conv_transpose2d` cut to the
/// output size plus the bias: output, and the gradients at the input, the
/// weight and the bias, on even and odd output sizes, non-square grids and
/// several channel counts.
#[test]
fn the_decoder_matches_candles_transposed_convolution_and_its_gradients() {
    for (k, (b, c, o, (h, w), out)) in [
        (2, 5, 3, (4, 6), (8, 12)),
        (1, 8, 8, (5, 3), (9, 5)),
        (3, 4, 2, (3, 3), (6, 5)),
        (1, 1, 1, (1, 1), (1, 2)),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 40 + 3 * k as u64;
        let dec = Decoder::new(1, c, o, seed, &Device::Cpu).unwrap();
        let layer = &dec.layers()[0];
        let x = candle_core::Var::from_tensor(&uniform(&[b, c, h, w], seed + 1)).unwrap();
        let probe = uniform(&[b, o, out.0, out.1], seed + 2);
        let ours = dec.forward(&x, out).unwrap();
        let theirs = x
            .conv_transpose2d(layer.weight.as_tensor(), 1, 1, 2, 1)
            .and_then(|y| y.narrow(2, 0, out.0))
            .and_then(|y| y.narrow(3, 0, out.1))
            .and_then(|y| y.broadcast_add(&layer.bias.as_tensor().reshape((1, o, 1, 1))?))
            .unwrap();
        let case = format!("{b} {c} {o} {h}x{w} -> {out:?}");
        assert_eq!(ours.dims(), theirs.dims(), "{case}");
        assert!(max_diff(&ours, &theirs) < 1e-5, "forward {case}");
        let grads = |y: Tensor| (y * &probe).and_then(|l| l.sum_all()?.backward()).unwrap();
        let (g_ours, g_theirs) = (grads(ours), grads(theirs));
        for v in [
            x.as_tensor(),
            layer.weight.as_tensor(),
            layer.bias.as_tensor(),
        ] {
            let (a, e) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
            assert!(max_diff(a, e) < 1e-4, "gradient {case}");
        }
    }
}
