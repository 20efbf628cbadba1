//! Adversarial images (paper Appendix A.2): fill the object region of a
//! photo with flat gray, then optimise a perturbation confined to that
//! region so that the automaton labels the region "object" again, by Adam on
//! the perturbation with gradients through the unrolled CA steps.

use ca_core::ErrorShapes;
use ca_core::{chunk_seed, CellRule, Colony};
use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::error::{EvalError, Result};

/// The gray the region is filled with (in [0, 1]).
pub const FILL_GRAY: f32 = 0.5;

/// How to attack.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackOptions {
    /// CA steps unrolled per optimisation step (the loss is taken over the
    /// last half of them).
    pub steps: usize,
    /// Adam steps.
    pub iterations: usize,
    /// Adam learning rate (in image units, [0, 1]).
    pub learning_rate: f64,
    /// Largest absolute value of a perturbation entry.
    pub max_perturbation: f32,
    /// The class the region should be labelled as.
    pub target_class: u32,
    /// Seed of the initial states and the draws.
    pub seed: u64,
    /// Reuse one initial state and one set of draws in every iteration (an
    /// attack on a single trajectory); otherwise every iteration draws fresh
    /// ones, so the perturbation must work whatever the automaton's
    /// randomness.
    pub fixed_draws: bool,
}

/// The result of an attack; images are `[3, S, S]` in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Attack {
    /// The photo with its region filled gray.
    pub grayed: Vec<f32>,
    /// The grayed photo plus the perturbation, clamped to [0, 1].
    pub adversarial: Vec<f32>,
    /// The perturbation actually applied (`adversarial - grayed`; zero
    /// outside the region).
    pub perturbation: Vec<f32>,
    /// The loss (cross-entropy towards the target class inside the region)
    /// at each iteration.
    pub losses: Vec<f32>,
}

/// The photo with the cells where `region` is true filled with [`FILL_GRAY`].
pub fn gray_fill(image: &[f32], region: &[bool]) -> Vec<f32> {
    let plane = region.len();
    image
        .iter()
        .enumerate()
        .map(|(i, &v)| if region[i % plane] { FILL_GRAY } else { v })
        .collect()
}

/// Attacks `rule` on `image` (`[3, S, S]` in [0, 1]) in `region` (`[S, S]`).
pub fn attack(
    rule: &CellRule,
    image: &[f32],
    region: &[bool],
    size: usize,
    options: &AttackOptions,
) -> Result<Attack> {
    if image.len() != 3 * size * size || region.len() != size * size {
        return Err(EvalError::invalid(
            "image",
            format!("{} values, region {}", image.len(), region.len()),
            format!("expected [3, {size}, {size}] and [{size}, {size}]"),
        ));
    }
    if options.steps < 2 || options.iterations == 0 {
        return Err(EvalError::invalid(
            "steps/iterations",
            format!("{}/{}", options.steps, options.iterations),
            "need at least 2 CA steps and 1 iteration",
        ));
    }
    let cells = region.iter().filter(|&&r| r).count();
    if cells == 0 {
        return Err(EvalError::invalid("region", 0, "has no cells to perturb"));
    }
    let device = rule.device();
    let grayed = gray_fill(image, region);
    let base = Tensor::from_vec(grayed.clone(), (1, 3, size, size), device)?;
    let mask_values: Vec<f32> = region.iter().map(|&r| f32::from(u8::from(r))).collect();
    let mask = Tensor::from_vec(mask_values, (1, 1, size, size), device)?;
    let delta = Var::zeros((1, 3, size, size), DType::F32, device)?;
    let mut adam = AdamW::new(
        vec![delta.clone()],
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let target = Tensor::full(options.target_class, (size * size,), device)?;
    let region_idx: Vec<u32> = (0..(size * size) as u32)
        .filter(|&i| region[i as usize])
        .collect();
    let region_idx = Tensor::from_vec(region_idx, (cells,), device)?;
    let target = target.index_select(&region_idx, 0)?;
    let max = f64::from(options.max_perturbation);
    let mut losses = Vec::with_capacity(options.iterations);
    for it in 0..options.iterations {
        let image = adversarial_image(&base, &mask, delta.as_tensor(), max)?;
        let seed = if options.fixed_draws {
            options.seed
        } else {
            chunk_seed(options.seed, it)
        };
        let loss = target_loss(rule, &image, (&region_idx, &target), seed, options)?;
        losses.push(loss.to_scalar::<f32>()?);
        adam.backward_step(&loss)?;
    }
    let env = adversarial_image(&base, &mask, delta.as_tensor(), max)?;
    let adversarial = env.flatten_all()?.to_vec1::<f32>()?;
    let perturbation = adversarial
        .iter()
        .zip(&grayed)
        .map(|(a, g)| a - g)
        .collect();
    Ok(Attack {
        grayed,
        adversarial,
        perturbation,
        losses,
    })
}

/// The attack's loss for one image `[1, 3, S, S]`: a colony seeded by
/// `seed` keeping its autograd graph ([`Colony::with_gradients`]), the
/// cross-entropy of the cells of `region` (their indices) against `target`
/// averaged over the second half of the steps, with its graph back to the
/// image.
fn target_loss(
    rule: &CellRule,
    image: &Tensor,
    (region, target): (&Tensor, &Tensor),
    seed: u64,
    options: &AttackOptions,
) -> Result<Tensor> {
    let (_, _, h, w) = image.dims4()?;
    let mut colony = Colony::new(rule, 1, h, w, seed)?.with_gradients();
    let env = colony.environment(image)?;
    let first_counted = options.steps / 2 + 1;
    let mut loss_sum: Option<Tensor> = None;
    colony.evolve_with(&env, options.steps, |t, colony| {
        if t >= first_counted {
            let logits = colony.logits()?; // [1, C, H, W]
            let c = logits.dim(1)?;
            let per_cell = logits.reshape((c, h * w))?.t()?.contiguous()?;
            let inside = per_cell.index_select(region, 0)?;
            let l = candle_nn::loss::cross_entropy(&inside, target)?;
            loss_sum = Some(match loss_sum.take() {
                Some(acc) => (acc + l)?,
                None => l,
            });
        }
        Ok::<_, EvalError>(None)
    })?;
    let counted = (options.steps + 1 - first_counted) as f64;
    let loss =
        loss_sum.ok_or_else(|| EvalError::invalid("steps", options.steps, "no step counted"))?;
    Ok((loss / counted)?)
}

/// `clamp(base + mask * clamp(delta, -max, max), 0, 1)`.
fn adversarial_image(base: &Tensor, mask: &Tensor, delta: &Tensor, max: f64) -> Result<Tensor> {
    let d = delta.clamp(-max, max)?.broadcast_mul(mask)?;
    Ok((base + d)?.clamp(0.0, 1.0)?)
}

/// The classes (`[S * S]`) the automaton gives `image` (`[3, S, S]`) after
/// `steps` steps from a state seeded by `seed`.
pub fn classes_after(
    rule: &CellRule,
    image: &[f32],
    size: usize,
    steps: usize,
    seed: u64,
) -> Result<Vec<u32>> {
    let image = Tensor::from_vec(image.to_vec(), (1, 3, size, size), rule.device())?;
    let mut colony = ca_core::Colony::new(rule.clone(), 1, size, size, seed)?;
    let env = colony.environment(&image)?;
    colony.evolve(&env, steps)?;
    Ok(colony
        .predict()?
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?)
}

/// The fraction of the cells of `region` labelled `class`.
pub fn region_fraction(classes: &[u32], region: &[bool], class: u32) -> f64 {
    let (hit, total) = classes
        .iter()
        .zip(region)
        .filter(|(_, &r)| r)
        .fold((0usize, 0usize), |(h, t), (&c, _)| {
            (h + usize::from(c == class), t + 1)
        });
    hit as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ca_core::CellConfig;
    use candle_core::Device;

    fn setup() -> (CellRule, Vec<f32>, Vec<bool>) {
        let config = CellConfig {
            state_channels: 6,
            hidden_channels: 12,
            ..CellConfig::default()
        };
        let rule = CellRule::new(config, 1, &Device::Cpu).unwrap();
        let size = 8;
        let image: Vec<f32> = (0..3 * size * size).map(|i| (i % 7) as f32 / 7.0).collect();
        let region: Vec<bool> = (0..size * size)
            .map(|i| (2..6).contains(&(i % size)) && (2..6).contains(&(i / size)))
            .collect();
        (rule, image, region)
    }

    #[test]
    fn perturbation_stays_in_the_region_and_the_loss_falls() {
        let (rule, image, region) = setup();
        let options = AttackOptions {
            steps: 4,
            iterations: 30,
            learning_rate: 0.02,
            max_perturbation: 0.5,
            target_class: 1,
            seed: 0,
            fixed_draws: true,
        };
        let a = attack(&rule, &image, &region, 8, &options).unwrap();
        assert_eq!(a.losses.len(), 30);
        for (i, (&p, &g)) in a.perturbation.iter().zip(&a.grayed).enumerate() {
            if region[i % 64] {
                assert_eq!(g, FILL_GRAY);
                assert!(p.abs() <= 0.5 + 1e-6);
            } else {
                assert_eq!(p, 0.0, "perturbation outside the region at {i}");
                assert_eq!(g, image[i]);
            }
        }
        assert!(a.perturbation.iter().any(|&p| p != 0.0));
        assert!(a.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
        let first = a.losses[..5].iter().sum::<f32>();
        let last = a.losses[25..].iter().sum::<f32>();
        assert!(last < first, "loss did not fall: {:?}", a.losses);
    }

    #[test]
    fn bad_inputs_are_named() {
        let (rule, image, region) = setup();
        let options = AttackOptions {
            steps: 4,
            iterations: 1,
            learning_rate: 0.1,
            max_perturbation: 0.5,
            target_class: 1,
            seed: 0,
            fixed_draws: true,
        };
        let e = attack(&rule, &image, &[false; 64], 8, &options).unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
        let e = attack(&rule, &image[..10], &region, 8, &options).unwrap_err();
        assert!(e.to_string().contains("image"), "{e}");
        assert_eq!(region_fraction(&[1, 0, 1], &[true, true, false], 1), 0.5);
    }
}
