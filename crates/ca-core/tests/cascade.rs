//! Coarse-to-fine colonies: an empty cascade is the plain colony, the
//! coarse levels keep the state's shape and block structure, steps are
//! counted across levels, and the cascade round-trips through a model file.

use std::path::PathBuf;

use ca_core::cascade::{coarse_size, subsample, upsample};
use ca_core::coarse::coarse_step;
use ca_core::{Cascade, CellConfig, CellRule, Colony, StepDraws};
use candle_core::{Device, Tensor};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn small(cascade: Option<Cascade>) -> CellConfig {
    CellConfig {
        state_channels: 6,
        hidden_channels: 8,
        cascade,
        ..CellConfig::default()
    }
}

fn image(h: usize, w: usize) -> Tensor {
    let v: Vec<f32> = (0..3 * h * w)
        .map(|i| ((i * 7919) % 1000) as f32 / 999.0)
        .collect();
    Tensor::from_vec(v, (1, 3, h, w), &Device::Cpu).unwrap()
}

/// Whether every `f x f` block of `state` `[1, S, h, w]` holds one value
/// per channel.
fn is_blocky(state: &Tensor, f: usize) -> bool {
    let (_, _, h, w) = state.dims4().unwrap();
    let back = upsample(&subsample(state, f).unwrap(), f, (h, w)).unwrap();
    values(&back) == values(state)
}

#[test]
fn a_cascade_of_one_level_is_the_plain_colony() {
    let one = Cascade::from_sides(&[24], &[12]).unwrap();
    assert!(one.levels.is_empty());
    let run = |cascade: Option<Cascade>| {
        let rule = CellRule::new(small(cascade), 3, &Device::Cpu).unwrap();
        let mut colony = Colony::new(rule, 1, 24, 24, 11).unwrap();
        colony.evolve(&image(24, 24), 12).unwrap();
        values(colony.state())
    };
    assert_eq!(run(Some(one)), run(None));
}

#[test]
fn coarse_levels_keep_the_shape_and_count_their_steps() {
    let cascade = Cascade::from_sides(&[6, 12, 24], &[3, 2, 4]).unwrap();
    let rule = CellRule::new(small(Some(cascade)), 3, &Device::Cpu).unwrap();
    let env = image(24, 24);
    let mut colony = Colony::new(&rule, 1, 24, 24, 5).unwrap();
    for t in 0..8u64 {
        colony.step(&env).unwrap();
        assert_eq!(colony.steps(), t + 1);
        assert_eq!(colony.state().dims(), [1, 6, 24, 24]);
        match t + 1 {
            1..=3 => assert!(is_blocky(colony.state(), 4), "step {t}: 4x4 blocks"),
            4..=5 => {
                assert!(is_blocky(colony.state(), 2), "step {t}: 2x2 blocks");
                assert!(!is_blocky(colony.state(), 4), "step {t}: finer than 4x4");
            }
            _ => assert!(!is_blocky(colony.state(), 2), "step {t}: the full grid"),
        }
    }
    assert_eq!(colony.predict().unwrap().dims(), [1, 24, 24]);
}

#[test]
fn a_coarse_step_is_the_rule_on_the_coarse_grid() {
    let rule = CellRule::new(small(None), 9, &Device::Cpu).unwrap();
    let (h, w, f) = (10, 14, 4);
    let (hc, wc) = coarse_size((h, w), f);
    let coarse =
        ca_core::normal_state((2, 6, hc, wc), &mut ca_core::step_rng(1, 0), &Device::Cpu).unwrap();
    let env = image(h, w).repeat((2, 1, 1, 1)).unwrap();
    let draws = StepDraws::sample(
        rule.config(),
        (2, hc, wc),
        &mut ca_core::step_rng(2, 0),
        &Device::Cpu,
    )
    .unwrap();
    let full = upsample(&coarse, f, (h, w)).unwrap();
    let got = coarse_step(&rule, &full, &env, f, &draws, false).unwrap();
    let coarse_env = ca_core::cascade::block_mean(&env, f).unwrap();
    let want = rule.step_reference(&coarse, &coarse_env, &draws).unwrap();
    let want = upsample(&want, f, (h, w)).unwrap();
    for (a, b) in values(&got).iter().zip(values(&want)) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn a_coarse_step_carries_gradients_to_the_rule_and_the_state() {
    let mut cfg = small(None);
    cfg.hidden_layers = 1;
    let rule = CellRule::new(cfg, 4, &Device::Cpu).unwrap();
    let state = candle_core::Var::from_tensor(
        &ca_core::normal_state((1, 6, 8, 8), &mut ca_core::step_rng(3, 0), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let env = image(8, 8);
    // Every coarse cell fires: with 4 cells a sampled mask may fire none,
    // and then no gradient reaches the rule.
    let draws = StepDraws::with_constant_mask(
        rule.config(),
        (1, 2, 2),
        1.0,
        &mut ca_core::step_rng(4, 0),
        &Device::Cpu,
    )
    .unwrap();
    let next = coarse_step(&rule, state.as_tensor(), &env, 4, &draws, true).unwrap();
    let loss = next.sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for p in rule.params().named() {
        if p.name == "perceive.weight" || p.name == update_weight() {
            let g = grads.get(p.var.as_tensor()).expect("a gradient");
            assert!(
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            );
        }
    }
    // Only the cells the coarse step reads (one per 4x4 block) get a
    // gradient from the state.
    let g = values(grads.get(state.as_tensor()).unwrap());
    let nonzero: Vec<usize> = (0..64).filter(|i| g[*i] != 0.0).collect();
    assert_eq!(nonzero, vec![0, 4, 32, 36]);
}

#[test]
fn the_cascade_round_trips_through_a_model_file_and_old_files_have_none() {
    let cascade = Cascade::from_sides(&[12, 24, 48], &[20, 10, 10]).unwrap();
    let rule = CellRule::new(small(Some(cascade.clone())), 1, &Device::Cpu).unwrap();
    let dir = std::env::temp_dir().join(format!("ca-cascade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cascade.safetensors");
    rule.save(&path).unwrap();
    let back = CellRule::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.config().cascade.as_ref(), Some(&cascade));
    std::fs::remove_dir_all(&dir).unwrap();
    let old = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models/raw-image-2026-12-02.safetensors");
    let old = CellRule::load(&old, &Device::Cpu).unwrap();
    assert!(old.config().cascade.is_none());
}

/// The update layer's weight tensor, as `ca-core` names it.
fn update_weight() -> String {
    ca_core::LayerId::Update.tensor(ca_core::TensorKind::Weight)
}
