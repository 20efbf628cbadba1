//! One training step of the 48/72 conv3x3 rule with an unroll of `--steps`
//! CA steps (fused backend, batch `--batch` on 48x48, backward through the
//! whole unroll, Adam): run it under `/usr/bin/time -v` to compare the peak
//! resident memory of a K = 10 mini-unroll with a full T = 40 unroll.
//!
//! `cargo run --release --example unroll_memory -- --steps 10 --batch 8
//! [--device cpu|cuda[:N]]` (the CPU's fused backend; the reference one
//! elsewhere).

use crate::device::parse_device;
use ca_core::{normal_state, step_rng, CellConfig, CellRule, StepDraws};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use clap::Parser;

/// One unroll of the default rule and its backward, to measure its memory.
#[derive(Parser)]
pub struct Args {
    /// CA steps in the unroll the backward goes through.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// cpu, cuda or cuda:N (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
}

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_args(args: Args) {
    crate::error::exit_on_error(run(args));
}

crate::cli::tool!(Args);

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (b, h, w) = (args.batch, 48, 48);
    let dev = args.device.clone();
    let config = CellConfig::default();
    let rule = CellRule::new(config.clone(), 0, &dev)?;
    let mut opt = AdamW::new(
        rule.params().trainable_vars(),
        ParamsAdamW {
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = step_rng(3, 0);
    let env = normal_state((b, config.env_channels, h, w), &mut rng, &dev)?;
    let mut state = normal_state((b, config.state_channels, h, w), &mut rng, &dev)?;
    for _ in 0..args.steps {
        let draws = StepDraws::sample(&config, (b, h, w), &mut rng, &dev)?;
        state = rule.step(&state, &env, &draws)?;
    }
    let logits = rule
        .logits(&state)?
        .permute((0, 2, 3, 1))?
        .reshape(((), 3))?;
    let labels = Tensor::from_vec(
        (0..b * h * w).map(|i| (i % 3) as u32).collect::<Vec<_>>(),
        b * h * w,
        &dev,
    )?;
    let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
    opt.backward_step(&loss)?;
    println!(
        "unroll {} batch {b}: loss {:.4}",
        args.steps,
        loss.to_scalar::<f32>()?
    );
    Ok(())
}
