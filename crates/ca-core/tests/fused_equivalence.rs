//! The fused CPU step against the reference (plain candle) step: forward
//! output and every gradient, for every variant, plus a finite-difference
//! check of the fused gradients.

use ca_core::{
    normal_state, step_rng, CellConfig, CellRule, Norm, Perception, StepBackend, StepDraws,
};
use candle_core::{Device, Tensor, Var};
use proptest::prelude::*;
use rand::Rng;

/// A problem: a rule, inputs and the weights `R` of the loss `sum(R * out)`.
struct Case {
    rule: CellRule,
    state: Tensor,
    env: Tensor,
    draws: StepDraws,
    weights: Tensor,
}

fn case(config: CellConfig, (b, h, w): (usize, usize, usize), seed: u64) -> Case {
    let dev = Device::Cpu;
    let rule = CellRule::new(config.clone(), seed, &dev).unwrap();
    let mut rng = step_rng(seed, 1);
    let (s, e) = (config.state_channels, config.env_channels);
    let state = normal_state((b, s, h, w), &mut rng, &dev).unwrap();
    let env = normal_state((b, e, h, w), &mut rng, &dev).unwrap();
    let draws = StepDraws::sample(&config, (b, h, w), &mut rng, &dev).unwrap();
    let weights = normal_state((b, s, h, w), &mut rng, &dev).unwrap();
    Case {
        rule,
        state,
        env,
        draws,
        weights,
    }
}

/// The output and the gradients (state, env, then every named parameter) of
/// `sum(R * step(...))` under `backend`.
fn run(c: &Case, backend: StepBackend) -> Vec<(String, Vec<f32>)> {
    let rule = c.rule.clone().with_backend(backend);
    let state = Var::from_tensor(&c.state).unwrap();
    let env = Var::from_tensor(&c.env).unwrap();
    let out = rule.step(&state, &env, &c.draws).unwrap();
    let loss = (&out * &c.weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let grad = |v: &Tensor| {
        grads
            .get(v)
            .map(flat)
            .unwrap_or_else(|| vec![0.0; v.elem_count()])
    };
    let mut all = vec![
        ("output".to_string(), flat(&out)),
        ("grad state".to_string(), grad(state.as_tensor())),
        ("grad env".to_string(), grad(env.as_tensor())),
    ];
    for p in rule.params().named() {
        if p.name.starts_with("classifier") {
            continue;
        }
        all.push((format!("grad {}", p.name), grad(p.var.as_tensor())));
    }
    all
}

/// Asserts `got` and `want` agree to `rtol` relative to each tensor's scale.
///
/// A gradient that is zero in exact arithmetic (e.g. at a bias in front of
/// a normalization) is a sum of cancelling terms: its rounding error scales
/// with the largest gradient of the case, so every scale is at least a
/// fraction of that.
fn assert_close(got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)], rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    let case_max = want[1..]
        .iter()
        .flat_map(|(_, w)| w.iter())
        .fold(1.0f32, |m, v| m.max(v.abs()));
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{what}: {name}");
        let scale = w.iter().fold(0.1 * case_max, |m, v| m.max(v.abs()));
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= rtol * scale,
                "{what}: {name}[{k}]: fused {a}, reference {b} (scale {scale}, case {case_max})"
            );
        }
    }
}

fn check(config: CellConfig, shape: (usize, usize, usize), seed: u64) {
    let c = case(config.clone(), shape, seed);
    let mut fused = run(&c, StepBackend::Fused);
    let mut reference = run(&c, StepBackend::Reference);
    // In front of a batch or instance norm without a reset gate, the update
    // bias only shifts each normalized group: its gradient is zero exactly,
    // and both paths return rounding noise of cancelling sums (amplified by
    // `1 / std` of near-constant groups). Check that it is small, not equal.
    if matches!(config.norm, Norm::Batch | Norm::Instance) && !config.reset_gate {
        let k = fused
            .iter()
            .position(|(n, _)| n == "grad update.bias")
            .unwrap();
        let (_, f) = fused.remove(k);
        let (_, r) = reference.remove(k);
        let case_max = reference[1..]
            .iter()
            .flat_map(|(_, w)| w.iter())
            .fold(1.0f32, |m, v| m.max(v.abs()));
        for v in f.iter().chain(&r) {
            assert!(v.abs() <= 1e-2 * case_max, "update bias gradient {v}");
        }
    }
    // With one hidden unit, the ReLU zeroes it in most cells, whose update
    // is then the bias alone: the groups a batch or instance norm
    // normalizes are nearly constant, and `1 / std` amplifies the f32
    // rounding of their (differently ordered) sums in both paths. Found by
    // the property test below: fused and reference differ by 1.5e-3 of the
    // scale on `near_constant_norm_groups`.
    let rtol = if config.hidden_channels == 1 && matches!(config.norm, Norm::Batch | Norm::Instance)
    {
        5e-3
    } else {
        1e-3
    };
    assert_close(&fused, &reference, rtol, &format!("{config:?} {shape:?}"));
}

/// The case the property test found (seed 85): one state channel, one
/// hidden unit, batch norm, no residual, no reset gate.
#[test]
fn near_constant_norm_groups() {
    let config = CellConfig {
        image_norm: None,
        cascade: None,
        state_channels: 1,
        hidden_channels: 1,
        env_channels: 2,
        num_classes: 2,
        hidden_layers: 1,
        perception: Perception::Depthwise,
        norm: Norm::Batch,
        residual: false,
        reset_gate: false,
        update_prob: 0.5,
    };
    check(config, (3, 6, 5), 85);
}

const PERCEPTIONS: [Perception; 3] = [
    Perception::Conv3x3,
    Perception::Depthwise,
    Perception::RandomDepthwise,
];
const NORMS: [Norm; 4] = [Norm::None, Norm::Batch, Norm::Instance, Norm::Channel];

fn small(perception: Perception, norm: Norm, residual: bool, reset_gate: bool) -> CellConfig {
    CellConfig {
        image_norm: None,
        cascade: None,
        state_channels: 4,
        hidden_channels: 6,
        env_channels: 3,
        num_classes: 3,
        hidden_layers: 2,
        perception,
        norm,
        residual,
        reset_gate,
        update_prob: 0.5,
    }
}

#[test]
fn every_variant_matches_the_reference() {
    for perception in PERCEPTIONS {
        for norm in NORMS {
            for residual in [false, true] {
                for reset in [false, true] {
                    check(small(perception, norm, residual, reset), (2, 5, 4), 3);
                }
            }
        }
    }
}

#[test]
fn many_tiles_and_the_main_model_match() {
    for perception in [Perception::Conv3x3, Perception::Depthwise] {
        for norm in [Norm::Instance, Norm::Batch] {
            let config = CellConfig {
                state_channels: 8,
                hidden_channels: 12,
                perception,
                norm,
                ..CellConfig::default()
            };
            check(config, (2, 40, 48), 11);
        }
    }
    check(CellConfig::default(), (2, 12, 12), 5);
}

/// Masks the sampler never draws: an image where no cell fires, one where
/// every cell fires, and fractional weights. The fused step evaluates the
/// rule at the cells with a nonzero mask only, and takes the statistics of
/// the normalization over them; it must still equal the reference, output
/// and every gradient.
#[test]
fn empty_full_and_fractional_masks_match_the_reference() {
    for perception in PERCEPTIONS {
        for norm in NORMS {
            // The reset gate on: no gradient is zero in exact arithmetic.
            let config = small(perception, norm, true, true);
            let mut c = case(config, (3, 5, 6), 21);
            let cells = 5 * 6;
            let mask: Vec<f32> = (0..3 * cells)
                .map(|i| match i / cells {
                    0 => 0.0,
                    1 => 1.0,
                    _ => [0.0, 0.25, 1.0, 0.5][i % 4],
                })
                .collect();
            c.draws.mask = Tensor::from_vec(mask, (3, 1, 5, 6), &Device::Cpu).unwrap();
            let fused = run(&c, StepBackend::Fused);
            let reference = run(&c, StepBackend::Reference);
            assert_close(
                &fused,
                &reference,
                1e-3,
                &format!("{perception:?} {norm:?}"),
            );
        }
    }
}

#[test]
fn default_backend_is_fused_on_cpu() {
    let rule = CellRule::new(CellConfig::default(), 0, &Device::Cpu).unwrap();
    assert_eq!(rule.backend(), StepBackend::Fused);
    assert_eq!(
        rule.with_backend(StepBackend::Reference).backend(),
        StepBackend::Reference
    );
}

#[test]
fn without_grad_the_fused_step_matches_and_keeps_unselected_cells() {
    let config = small(Perception::Conv3x3, Norm::Instance, true, true);
    let c = case(config, (2, 6, 7), 9);
    let rule = c.rule.clone().with_backend(StepBackend::Fused);
    let out = rule.step_detached(&c.state, &c.env, &c.draws).unwrap();
    assert!(!out.track_op());
    let reference = rule.step_reference(&c.state, &c.env, &c.draws).unwrap();
    let (o, r) = (
        out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        reference.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    for (a, b) in o.iter().zip(&r) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let s = c.state.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mask = c
        .draws
        .mask
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let cells = mask.len() / 2;
    for (k, (a, s)) in o.iter().zip(&s).enumerate() {
        let (b, rest) = (k / (4 * cells), k % cells);
        if mask[b * cells + rest] == 0.0 {
            assert_eq!(a.to_bits(), s.to_bits(), "cell {k} changed");
        }
    }
}

/// The two ends of the fused step (without a graph: the mix in the NHWC
/// buffer and one transpose back; with one: the copy of the old state and
/// the mix in place) give the same new state to the bit, on grids with
/// several tiles, several images and transposes split into tasks, for
/// both cells (the default main cell: 48 state channels, 8x8 register
/// blocks plus a remainder of the 51 input channels).
#[test]
fn with_and_without_a_graph_the_new_state_is_the_same() {
    for perception in [Perception::Conv3x3, Perception::Depthwise] {
        let config = CellConfig {
            perception,
            ..CellConfig::default()
        };
        let c = case(config, (3, 45, 50), 13);
        let rule = c.rule.clone().with_backend(StepBackend::Fused);
        let state = Var::from_tensor(&c.state).unwrap();
        let kept = rule.step(state.as_tensor(), &c.env, &c.draws).unwrap();
        assert!(kept.track_op());
        let detached = rule.step_detached(&c.state, &c.env, &c.draws).unwrap();
        let (a, b) = (
            kept.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            detached.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (k, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{perception:?}: element {k}: {a} vs {b}"
            );
        }
    }
}

proptest! {
    // A fixed generator seed, so that CI runs the same 48 cases every time
    // (a random one made CI fail by chance once, on the case kept above as
    // `near_constant_norm_groups`); change the seed to explore others.
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED_CE11),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_configs_match_the_reference(
        p in 0usize..3,
        n in 0usize..4,
        residual in any::<bool>(),
        reset_gate in any::<bool>(),
        s in 1usize..6,
        e in 1usize..4,
        hidden in 1usize..8,
        layers in 0usize..3,
        b in 1usize..4,
        h in 1usize..7,
        w in 1usize..7,
        seed in 0u64..1000,
    ) {
        let config = CellConfig {
            image_norm: None,
            cascade: None,
            state_channels: s,
            hidden_channels: hidden,
            env_channels: e,
            num_classes: 2,
            hidden_layers: layers,
            perception: PERCEPTIONS[p],
            norm: NORMS[n],
            residual,
            reset_gate,
            update_prob: 0.5,
        };
        check(config, (b, h, w), seed);
    }
}

/// `sum(R * step(...))` in f64, under the fused backend.
fn loss(c: &Case, state: &Tensor) -> f64 {
    let out = c.rule.step(state, &c.env, &c.draws).unwrap();
    let (o, r) = (
        out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        c.weights.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    o.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Checks a directional derivative `analytic` against central differences
/// of `f` along the direction, `f(t)` the loss at step `t` along it. ReLU
/// kinks make a difference quotient meaningless when the segment crosses
/// one; such a segment shows as one-sided quotients that disagree, and the
/// check then asks for a new direction (`None`).
fn directional(analytic: f64, mut f: impl FnMut(f64) -> f64, what: &str) -> Option<()> {
    let eps = 1e-4;
    let (lo, mid, hi) = (f(-eps), f(0.0), f(eps));
    let (left, right) = ((mid - lo) / eps, (hi - mid) / eps);
    let central = (hi - lo) / (2.0 * eps);
    let tol = 1e-2 * central.abs().max(1.0);
    if (left - right).abs() > tol {
        return None;
    }
    assert!(
        (analytic - central).abs() <= tol,
        "{what}: analytic {analytic}, numeric {central}"
    );
    Some(())
}

/// Runs `check` on up to sixteen random directions until one is kink-free.
fn with_directions(what: &str, mut check: impl FnMut(&mut rand::rngs::StdRng) -> Option<()>) {
    let mut rng = step_rng(99, 0);
    for _ in 0..16 {
        if check(&mut rng).is_some() {
            return;
        }
    }
    panic!("{what}: every direction crossed a ReLU kink");
}

fn direction(n: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

#[test]
fn fused_gradients_match_finite_differences() {
    for (perception, norm) in [
        (Perception::Conv3x3, Norm::Instance),
        (Perception::Depthwise, Norm::Channel),
        (Perception::Conv3x3, Norm::Batch),
        (Perception::Depthwise, Norm::None),
    ] {
        let config = CellConfig {
            image_norm: None,
            cascade: None,
            state_channels: 3,
            hidden_channels: 5,
            env_channels: 2,
            num_classes: 2,
            hidden_layers: 1,
            perception,
            norm,
            residual: true,
            reset_gate: true,
            update_prob: 0.7,
        };
        let c = case(config, (2, 4, 5), 21);
        let fused = run(&c, StepBackend::Fused);
        let dot = |g: &[f32], u: &[f32]| -> f64 {
            g.iter().zip(u).map(|(g, u)| *g as f64 * *u as f64).sum()
        };
        let what = format!("{perception:?}/{norm:?} state");
        with_directions(&what, |rng| {
            let u = direction(c.state.elem_count(), rng);
            let d = Tensor::from_vec(u.clone(), c.state.shape(), &Device::Cpu).unwrap();
            let at = |t: f64| loss(&c, &(&c.state + (&d * t).unwrap()).unwrap());
            directional(dot(&fused[1].1, &u), at, &what)
        });
        let named: Vec<_> = c
            .rule
            .params()
            .named()
            .into_iter()
            .filter(|p| !p.name.starts_with("classifier"))
            .collect();
        for (p, (name, g)) in named.iter().zip(&fused[3..]) {
            let what = format!("{perception:?}/{norm:?} {name}");
            let orig = p.var.as_tensor().copy().unwrap();
            with_directions(&what, |rng| {
                let u = direction(g.len(), rng);
                let d = Tensor::from_vec(u.clone(), orig.shape(), &Device::Cpu).unwrap();
                let at = |t: f64| {
                    p.var.set(&(&orig + (&d * t).unwrap()).unwrap()).unwrap();
                    loss(&c, &c.state)
                };
                let r = directional(dot(g, &u), at, &what);
                p.var.set(&orig).unwrap();
                r
            });
        }
    }
}
