//! Times one training step and one inference step of the three models the
//! paper compares in section 5.4, on random data, batch 8:
//!
//! - `48/48`: 48x48 images, a plain CA on a 48x48 state;
//! - `96/96`: 96x96 images, a plain CA on a 96x96 state;
//! - `96/48`: 96x96 images, encoder, CA on a 48x48 state, decoder;
//! - `192/48`, `384/48`: the same with 2 and 3 stride-2 levels.
//!
//! A training step is what `ca_sched::Trainer::train_step` does: a K = 10
//! mini-unroll, the loss at every step, backward, Adam (slots old enough
//! that every step counts; no resets). An inference step is one CA step
//! without graph (`CellRule::step_detached`) plus the logits at image
//! resolution; the encoder, run once per image, is timed apart. Prints one
//! line per model:
//!
//! ```text
//! HIRES model=96/48 levels=1 params=... train_median_s=... train_cpu_s=... infer_median_s=... infer_cpu_s=... encoder_s=...
//! ```
//!
//! Both measures use the timing loop of `benches/common/timing.rs` (the one
//! `step_timing` uses): warm-up runs, then `--reps` timed runs, each ending
//! with a device synchronization; median and min wall seconds, mean CPU
//! seconds per run.
//!
//! `cargo run --release --example hires_timing -- [--reps N] [--model 96/48]
//! [--device cpu|cuda[:N]]`

use crate::cli::timing;

use std::sync::Arc;

use crate::device::parse_device;
use ca_core::{normal_state, step_rng, CellConfig, CellRule, StepDraws};
use ca_hires::{HiresModel, ENV_CHANNELS};
use ca_model::{AnyModel, Trainable};
use ca_sched::{TrainConfig, TrainData, Trainer, UnrollConfig};
use candle_core::{Device, Tensor};
use clap::Parser;
use rand::{rngs::StdRng, Rng, SeedableRng};
use timing::{measure, Timing};

/// Training-step and inference timing of the high-resolution models against the 48/48 one.
#[derive(Parser)]
pub struct Args {
    /// Timed repetitions per measure (after the warm-up).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Only the model with this name (48/48, 96/96, 96/48, 192/48 or 384/48).
    #[arg(long)]
    model: Option<String>,
    /// cpu, cuda or cuda:N (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
}

const BATCH: usize = 8;

/// `BATCH` random images and labels of one size.
struct Random {
    size: usize,
}

impl TrainData for Random {
    fn len(&self) -> usize {
        BATCH
    }

    fn batch(&self, items: &[(usize, u64)], device: &Device) -> ca_sched::Result<(Tensor, Tensor)> {
        let (b, n) = (items.len(), self.size);
        let mut rng = StdRng::seed_from_u64(items.first().map_or(0, |i| i.0 as u64));
        let images: Vec<f32> = (0..b * 3 * n * n).map(|_| rng.random()).collect();
        let labels: Vec<u32> = (0..b * n * n).map(|_| rng.random_range(0..3)).collect();
        Ok((
            Tensor::from_vec(images, (b, 3, n, n), device)?,
            Tensor::from_vec(labels, (b, n, n), device)?,
        ))
    }
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_args(args: Args) {
    crate::error::exit_on_error(run(args));
}

crate::cli::tool!(Args);

fn run(args: Args) -> BoxResult<()> {
    // Reuse the freed step buffers instead of faulting them in every step.
    crate::ca_core::alloc::retain_freed_memory();
    if args.reps == 0 {
        return Err("--reps 0: must be at least 1".into());
    }
    let device = args.device.clone();
    let cases = cases(&device)?;
    if let Some(name) = &args.model {
        if !cases.iter().any(|c| c.0 == name) {
            return Err(
                format!("--model {name}: expected 48/48, 96/96, 96/48, 192/48 or 384/48").into(),
            );
        }
    }
    for (name, size, model) in cases {
        if args.model.as_deref().is_some_and(|m| m != name) {
            continue;
        }
        let data = Random { size };
        let params = model.trainable_params();
        let levels = model.levels();
        let (infer, encoder_s) = time_inference(&model, &data, args.reps, &device)?;
        let train = time_training(name, model, &data, args.reps, &device)?;
        println!(
            "HIRES model={name} levels={levels} params={params} batch={BATCH} reps={} \
             train_median_s={:.3} train_min_s={:.3} train_cpu_s={:.3} \
             infer_median_s={:.4} infer_min_s={:.4} infer_cpu_s={:.4} encoder_s={encoder_s:.4}",
            train.reps(),
            train.median(),
            train.min(),
            train.cpu_s,
            infer.median(),
            infer.min(),
            infer.cpu_s,
        );
    }
    Ok(())
}

/// The five cases: `(name, image size, model)` with fresh weights.
fn cases(device: &Device) -> BoxResult<[(&'static str, usize, AnyModel); 5]> {
    let config = CellConfig::default();
    let hires_config = CellConfig {
        env_channels: ENV_CHANNELS,
        ..config.clone()
    };
    let hires = |levels| HiresModel::new(hires_config.clone(), levels, 0, device);
    Ok([
        (
            "48/48",
            48,
            Arc::new(CellRule::new(config.clone(), 0, device)?),
        ),
        ("96/96", 96, Arc::new(CellRule::new(config, 0, device)?)),
        ("96/48", 96, Arc::new(hires(1)?)),
        ("192/48", 192, Arc::new(hires(2)?)),
        ("384/48", 384, Arc::new(hires(3)?)),
    ])
}

/// Inference: one CA step and the logits, no backward; a warm-up (at least
/// one step and 0.2 s), then `reps` timed ones, each on the state the one
/// before left, with its own draws (made outside the timed region; the
/// warm-up reuses them). Also the encoder's seconds, once per image: a
/// single timed run.
fn time_inference(
    model: &AnyModel,
    data: &Random,
    reps: usize,
    device: &Device,
) -> BoxResult<(Timing, f64)> {
    let size = data.size;
    let items: Vec<(usize, u64)> = (0..BATCH).map(|i| (i, 0)).collect();
    let (images, _) = data.batch(&items, device)?;
    let mut env = None;
    let encoder = measure(0, 1, device, || -> ca_sched::Result<()> {
        env = Some(model.environment(&images)?);
        Ok(())
    })?;
    let env = env.expect("the encoder ran").detach();
    let (h, w) = model.state_size((size, size));
    let s = model.rule().config().state_channels;
    let mut state = normal_state((BATCH, s, h, w), &mut step_rng(1, 0), device)?;
    let draws = (0..=reps)
        .map(|k| {
            StepDraws::sample(
                model.rule().config(),
                (BATCH, h, w),
                &mut step_rng(2, k as u64),
                device,
            )
        })
        .collect::<ca_core::Result<Vec<_>>>()?;
    // The warm-up may take more runs than there are draws: they come round
    // again.
    let mut draws = draws.iter().cycle();
    let infer = measure(1, reps, device, || -> ca_sched::Result<()> {
        let d = draws.next().expect("a draw per run");
        let next = model.rule().step_detached(&state, &env, d)?;
        model.logits(&next, (size, size))?.detach();
        state = next;
        Ok(())
    })?;
    Ok((infer, encoder.median()))
}

/// Training: the trainer's own step; two warm-up steps bring every slot
/// past T0 = T/3 so that all K steps count in the loss, and each timed
/// step must have had one.
fn time_training(
    name: &str,
    model: AnyModel,
    data: &Random,
    reps: usize,
    device: &Device,
) -> BoxResult<Timing> {
    let schedule = TrainConfig {
        unroll: UnrollConfig {
            batch: BATCH,
            pool_size: BATCH,
            mini_unroll: 10,
            target: 40,
            p_image: 0.0,
            p_state: 0.0,
            ..UnrollConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, schedule, data.len())?;
    // Runs 3.. are the timed ones; each must have had a loss.
    let (mut run, mut lossless) = (0, 0);
    let train = measure(2, reps, device, || -> ca_sched::Result<()> {
        let report = trainer.train_step(data)?;
        run += 1;
        if run > 2 && report.loss.is_none() {
            lossless += 1;
        }
        Ok(())
    })?;
    if lossless > 0 {
        return Err(format!("{name}: {lossless} timed step(s) had no loss").into());
    }
    Ok(train)
}
