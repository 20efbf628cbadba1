//! A short unroll gives gradients to every trainable tensor and none to
//! frozen random filters.

use ca_core::{step_rng, CellConfig, CellRule, Norm, Perception, StepDraws};
use candle_core::{DType, Device, Tensor};

fn unroll_grads(cfg: CellConfig) -> (CellRule, candle_core::backprop::GradStore) {
    let dev = Device::Cpu;
    let rule = CellRule::new(cfg.clone(), 11, &dev).unwrap();
    let (b, h, w) = (2, 6, 5);
    let mut rng = step_rng(1, 0);
    let mut state = ca_core::normal_state((b, cfg.state_channels, h, w), &mut rng, &dev).unwrap();
    let env = ca_core::normal_state((b, 3, h, w), &mut rng, &dev).unwrap();
    let mut loss = Tensor::zeros((), DType::F32, &dev).unwrap();
    for t in 0..4 {
        let draws = StepDraws::sample(&cfg, (b, h, w), &mut step_rng(2, t), &dev).unwrap();
        state = rule.step(&state, &env, &draws).unwrap();
        let logits = rule.logits(&state).unwrap();
        loss = (loss + logits.sqr().unwrap().mean_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    (rule, grads)
}

#[test]
fn every_trainable_tensor_gets_a_nonzero_gradient() {
    for perception in [
        Perception::Conv3x3,
        Perception::Depthwise,
        Perception::RandomDepthwise,
    ] {
        for norm in [Norm::None, Norm::Batch, Norm::Instance, Norm::Channel] {
            let cfg = CellConfig {
                state_channels: 6,
                hidden_channels: 8,
                perception,
                norm,
                ..CellConfig::default()
            };
            let (rule, grads) = unroll_grads(cfg);
            for p in rule.params().named() {
                let g = grads.get(p.var.as_tensor());
                if p.trainable {
                    let g = g.unwrap_or_else(|| {
                        panic!("{perception:?}/{norm:?}: no gradient for {}", p.name)
                    });
                    let norm1 = g
                        .abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap();
                    assert!(
                        norm1 > 0.0 && norm1.is_finite(),
                        "{}: |g| = {norm1}",
                        p.name
                    );
                }
            }
            if perception == Perception::RandomDepthwise {
                // Frozen filters are not handed to the optimizer.
                let frozen: Vec<_> = rule
                    .params()
                    .named()
                    .into_iter()
                    .filter(|p| !p.trainable)
                    .collect();
                assert_eq!(frozen.len(), 2);
                let ids: Vec<_> = rule
                    .params()
                    .trainable_vars()
                    .iter()
                    .map(|v| v.as_tensor().id())
                    .collect();
                assert!(frozen
                    .iter()
                    .all(|p| !ids.contains(&p.var.as_tensor().id())));
            }
        }
    }
}

/// A colony kept with its graph takes the plain colony's trajectory, and
/// a loss on its logits has a gradient back to the image (what the
/// adversarial attack differentiates); the plain colony's has none.
#[test]
fn a_colony_with_gradients_differentiates_its_image() {
    use ca_core::Colony;
    let dev = Device::Cpu;
    let cfg = CellConfig {
        state_channels: 6,
        hidden_channels: 8,
        cascade: Some(ca_core::Cascade::from_sides(&[4, 8], &[2, 1]).unwrap()),
        ..CellConfig::default()
    };
    let rule = CellRule::new(cfg, 3, &dev).unwrap();
    let image = candle_core::Var::from_tensor(
        &ca_core::normal_state((1, 3, 8, 8), &mut step_rng(4, 0), &dev).unwrap(),
    )
    .unwrap();
    let run = |colony: Colony<&CellRule>| {
        let mut colony = colony;
        let env = colony.environment(image.as_tensor()).unwrap();
        colony.evolve(&env, 5).unwrap();
        let logits = colony.logits().unwrap();
        (
            logits.sqr().unwrap().mean_all().unwrap(),
            colony.state().clone(),
        )
    };
    let (plain_loss, plain_state) = run(Colony::new(&rule, 1, 8, 8, 9).unwrap());
    let (loss, state) = run(Colony::new(&rule, 1, 8, 8, 9).unwrap().with_gradients());
    let values = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(values(state), values(plain_state), "the same trajectory");
    let grad = loss.backward().unwrap();
    let g = grad
        .get(image.as_tensor())
        .expect("a gradient to the image");
    let norm = g
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm > 0.0 && norm.is_finite(), "{norm}");
    let plain = plain_loss.backward().unwrap();
    assert!(
        plain.get(image.as_tensor()).is_none(),
        "the plain colony is detached"
    );
}
