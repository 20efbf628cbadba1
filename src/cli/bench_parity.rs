//! One cell step on a device against the same step on the CPU: the same
//! rule, state, image and draws (all drawn on the CPU, then copied), the
//! output and the gradients of the loss `sum(R * step(state))` for a fixed
//! random `R` (state, image and every parameter). The CPU side runs the
//! fused CPU op, the device side plain candle ops (the CUDA kernels on a
//! GPU); with `--device cpu` both run on the CPU, fused against plain ops,
//! which is what CI checks.
//!
//! One line per tensor, `PARITY case=... tensor=... max_abs=... rel=...`
//! where `rel` is the largest difference over the largest magnitude of the
//! CPU's tensor; the run fails when the output's `rel` is above
//! `--tolerance` (default 1e-5: the fused op and candle's sum the ~700
//! products of a cell's layers in other orders, 1e-7 apart on the CPU) or
//! a gradient's above `--grad-tolerance` (default 1e-3: a bias gradient
//! sums all 1,152 cells of the batch, terms of both signs that cancel to
//! a small total, so its rounding is large next to it: 1.9e-4 on the CPU;
//! the other gradients stay under 1e-5).

use std::collections::HashMap;
use std::path::Path;

use ca_core::{normal_state, step_rng, CellConfig, CellRule, Perception, StepBackend, StepDraws};
use candle_core::{Device, Tensor, Var};
use clap::Parser;

use crate::device::parse_device;

/// The CA step on `--device` against the CPU's, values and gradients.
#[derive(Parser)]
pub struct Args {
    /// cpu, cuda or cuda:N (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
    /// The largest relative difference accepted for the step's output.
    #[arg(long, default_value_t = 1e-5)]
    tolerance: f64,
    /// The largest relative difference accepted for a gradient.
    #[arg(long, default_value_t = 1e-3)]
    grad_tolerance: f64,
    /// Seed of the rule and of every draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs the comparison, exits 1 (naming the tensors) when one is over the
/// tolerance.
pub fn main_args(args: Args) {
    crate::error::exit_on_error(run(&args));
}

crate::cli::tool!(Args);

/// How far one tensor of the device's step is from the CPU's.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDiff {
    /// `output`, `grad state`, `grad env` or `grad PARAM`.
    pub name: String,
    /// The largest absolute difference.
    pub max_abs: f64,
    /// `max_abs` over the largest magnitude of the CPU's tensor (0 when
    /// both are all zeros).
    pub rel: f64,
}

/// The compared cells: the paper's conv3x3 48/72 and depthwise 32/48
/// (instance norm, reset gate), at batch 2 on a 24x24 grid.
fn cases() -> Vec<(&'static str, CellConfig)> {
    let conv = CellConfig::default();
    let depthwise = CellConfig {
        state_channels: 32,
        hidden_channels: 48,
        perception: Perception::Depthwise,
        ..CellConfig::default()
    };
    vec![("conv3x3-48x72", conv), ("depthwise-32x48", depthwise)]
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut worst: Vec<String> = Vec::new();
    for (name, config) in cases() {
        for d in compare(&config, &args.device, args.seed)? {
            println!(
                "PARITY case={name} device={:?} tensor={} max_abs={:.3e} rel={:.3e}",
                args.device.location(),
                d.name.replace(' ', "_"),
                d.max_abs,
                d.rel
            );
            let limit = match d.name.starts_with("grad") {
                true => args.grad_tolerance,
                false => args.tolerance,
            };
            if d.rel.is_nan() || d.rel > limit {
                worst.push(format!("{name} {} (rel {:.3e} > {limit:e})", d.name, d.rel));
            }
        }
    }
    match worst.is_empty() {
        true => {
            println!(
                "PARITY ok: outputs within {:e}, gradients within {:e}",
                args.tolerance, args.grad_tolerance
            );
            Ok(())
        }
        false => Err(format!(
            "{} tensors differ by more than their tolerance: {}",
            worst.len(),
            worst.join(", ")
        )
        .into()),
    }
}

/// The step of `config` on the CPU (fused op) and on `device` (plain
/// candle ops) from the same rule, inputs and draws; one [`TensorDiff`]
/// for the output and for each gradient.
pub fn compare(
    config: &CellConfig,
    device: &Device,
    seed: u64,
) -> Result<Vec<TensorDiff>, Box<dyn std::error::Error>> {
    let cpu = Device::Cpu;
    let (b, h, w) = (2, 24, 24);
    let rule = CellRule::new(config.clone(), seed, &cpu)?.with_backend(StepBackend::Fused);
    let mut rng = step_rng(seed, 1);
    let (s, e) = (config.state_channels, config.env_channels);
    let state = normal_state((b, s, h, w), &mut rng, &cpu)?;
    let env = normal_state((b, e, h, w), &mut rng, &cpu)?;
    let draws = StepDraws::sample(config, (b, h, w), &mut rng, &cpu)?;
    let weights = normal_state((b, s, h, w), &mut rng, &cpu)?;

    let (tensors, _) = rule.to_safetensors_parts();
    let on_device: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(device)?)))
        .collect::<candle_core::Result<_>>()?;
    let there = CellRule::from_named_tensors(
        config.clone(),
        &on_device,
        Path::new("<parity rule>"),
        device,
    )?
    .with_backend(StepBackend::Reference);
    let moved = StepDraws {
        mask: draws.mask.to_device(device)?,
        noise: draws
            .noise
            .as_ref()
            .map(|n| n.to_device(device))
            .transpose()?,
    };
    let here = gradients(&rule, &state, &env, &draws, &weights)?;
    let away = gradients(
        &there,
        &state.to_device(device)?,
        &env.to_device(device)?,
        &moved,
        &weights.to_device(device)?,
    )?;
    Ok(here
        .into_iter()
        .zip(away)
        .map(|((name, a), (_, b))| {
            let max_abs = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() as f64)
                .fold(0.0, f64::max);
            let scale = a.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
            let rel = match scale > 0.0 {
                true => max_abs / scale,
                false => max_abs,
            };
            TensorDiff { name, max_abs, rel }
        })
        .collect())
}

/// The output of one step and the gradients of `sum(weights * output)`
/// (state, env, then every named parameter), copied to the CPU.
fn gradients(
    rule: &CellRule,
    state: &Tensor,
    env: &Tensor,
    draws: &StepDraws,
    weights: &Tensor,
) -> candle_core::Result<Vec<(String, Vec<f32>)>> {
    let state = Var::from_tensor(state)?;
    let env = Var::from_tensor(env)?;
    let out = rule
        .step(&state, &env, draws)
        .map_err(candle_core::Error::wrap)?;
    let grads = (&out * weights)?.sum_all()?.backward()?;
    let flat = |t: &Tensor| t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>();
    let grad = |v: &Tensor| match grads.get(v) {
        Some(g) => flat(g),
        None => Ok(vec![0.0; v.elem_count()]),
    };
    let mut all = vec![
        ("output".to_string(), flat(&out)?),
        ("grad state".to_string(), grad(state.as_tensor())?),
        ("grad env".to_string(), grad(env.as_tensor())?),
    ];
    for p in rule.params().named() {
        all.push((format!("grad {}", p.name), grad(p.var.as_tensor())?));
    }
    Ok(all)
}
