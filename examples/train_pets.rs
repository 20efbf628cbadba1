//! Trains a segmentation cellular automaton on the Oxford-IIIT Pet layout.
//!
//! `cargo run --release --example train_pets` with no arguments trains a
//! small model on the bundled synthetic set in a few minutes. For the real
//! set: `--data DIR` (or `$CA_PETS_DIR`, or `data/oxford-iiit-pet`).
//! Writes `OUT/checkpoint.safetensors` (resumable with `--resume`),
//! `OUT/model.safetensors` (the model and its training image size, for
//! `segment` and `evaluate`; the moving average of the weights when the run
//! keeps one) and `OUT/metrics.jsonl`.
//!
//! A fixed part of trainval (`--val-fraction`, stratified by breed, chosen
//! by a hash of the names) is held out for validation: the periodic and
//! final evaluations read it, never the test split (`--final-test` adds
//! one evaluation of the test split at the end, for final figures only).
//!
//! High resolution (paper 3.4): `--image-size 96 --state-size 48` trains a
//! strided encoder, the CA on a 48x48 state and a transposed-convolution
//! decoder end to end on 96x96 images and labels (also 192/48, 384/48).
//! `--resume` rebuilds whichever kind the checkpoint holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ca_core::{CellConfig, CellRule, Norm, Perception};
use ca_data::{Augment, LoadOptions, LoadPolicy, PetsDataset, Split, CLASS_NAMES};
use ca_hires::{hires_levels, HiresModel, ENV_CHANNELS};
use ca_sched::{
    checkpoint_metadata, evaluate_iou, GradNorm, IouTable, LrSchedule, MetricsLog, TrainConfig,
    Trainer,
};
use ca_sched::{AnyModel, Trainable};
use cellseg::cpu_time::process_cpu_seconds;
use cellseg::device::parse_device;
use cellseg::flags::levels_for;
use cellseg::flags::TrainFlags;
use cellseg::pets::{resolve_data_dir, PetsTrainData};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Train a segmentation cellular automaton on Oxford-IIIT Pet data")]
struct Args {
    /// Dataset root in the official layout (else $CA_PETS_DIR, else
    /// data/oxford-iiit-pet, else the bundled synthetic fixture).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Skip samples that cannot be read (and bad split lines), printing a
    /// summary, instead of stopping at the first one.
    #[arg(long)]
    lenient: bool,
    /// Square image (and state grid) size in pixels [default: 48; 32 on the fixture].
    #[arg(long)]
    size: Option<usize>,
    /// High resolution: image (and label) size in pixels, with
    /// `--state-size`; it must be the state size times 2, 4 or 8.
    #[arg(long, requires = "state_size", conflicts_with = "size")]
    image_size: Option<usize>,
    /// High resolution: state grid size in cells, with `--image-size`.
    #[arg(long, requires = "image_size")]
    state_size: Option<usize>,
    /// State channels [default: 48; 16 on the fixture].
    #[arg(long)]
    state: Option<usize>,
    /// Hidden channels [default: 72; 32 on the fixture].
    #[arg(long)]
    hidden: Option<usize>,
    /// Hidden 1x1 layers.
    #[arg(long, default_value_t = 2)]
    hidden_layers: usize,
    /// Perception: conv3x3, depthwise or random_depthwise.
    #[arg(long, default_value = "conv3x3")]
    perception: Perception,
    /// State normalization: none, batch, instance or channel.
    #[arg(long, default_value = "instance")]
    norm: Norm,
    /// Reset gate on or off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    reset_gate: bool,
    /// Residual update on or off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    residual: bool,
    /// Optimizer steps in total (a resumed run stops at the same total)
    /// [default: 3000; 200 on the fixture].
    #[arg(long)]
    steps: Option<u64>,
    /// Stop after this many minutes of training, whatever `--steps` says.
    #[arg(long)]
    minutes: Option<f64>,
    /// Stop after this many minutes of CPU time (all threads of this
    /// process, Linux only; counted from the first step, periodic
    /// evaluations included), whatever `--steps` says: an equal budget for
    /// runs that share a machine with other jobs.
    #[arg(long)]
    cpu_minutes: Option<f64>,
    /// Slots per optimizer step [default: 8; 32 with --paper].
    #[arg(long)]
    batch: Option<usize>,
    /// Slots in the pool [default: the batch size].
    #[arg(long)]
    pool: Option<usize>,
    /// K: CA steps per optimizer step.
    #[arg(long, default_value_t = 10)]
    mini_unroll: usize,
    /// T: the target number of CA steps.
    #[arg(long, default_value_t = 40)]
    target: usize,
    /// The full-unroll baseline (fresh states and images every step, unroll T).
    #[arg(long)]
    full_unroll: bool,
    /// Probability of an image reset within T steps.
    #[arg(long, default_value_t = 0.5)]
    p_image: f64,
    /// Probability of a state reset within T steps.
    #[arg(long, default_value_t = 0.5)]
    p_state: f64,
    /// Adam learning rate [default: 2e-3; 3e-4 with --paper].
    #[arg(long)]
    lr: Option<f64>,
    /// Gradient treatment: none, per-tensor, or clip:MAX.
    #[arg(long, default_value = "per-tensor", value_parser = parse_grad_norm)]
    grad_norm: GradNorm,
    /// Random horizontal flips of training images.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    flip: bool,
    /// Random 90-degree rotations of training images.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    rotate90: bool,
    /// Colour jitter strength in [0, 1] (brightness, contrast, saturation); 0: off.
    #[arg(long, default_value_t = 0.0)]
    jitter: f32,
    /// Random scale and crop: smallest crop side as a fraction of the image,
    /// in (0, 1]; 1: off.
    #[arg(long, default_value_t = 1.0)]
    min_crop: f32,
    /// Fraction of trainval held out for validation (stratified by breed,
    /// fixed by the names); 0: none (the periodic evaluation is then skipped).
    #[arg(long, default_value_t = 0.15)]
    val_fraction: f64,
    /// Also evaluate the test split at the end (for final figures only;
    /// recipes are chosen on the validation split).
    #[arg(long)]
    final_test: bool,
    /// Class weights of the cross-entropy, `BACKGROUND,OBJECT,BOUNDARY`, or `none`.
    #[arg(long, default_value = "0.7,1,3", value_parser = parse_class_weights)]
    class_weights: ClassWeights,
    /// Weight of the soft Dice term added to the cross-entropy; 0: off.
    #[arg(long, default_value_t = 1.0)]
    dice_weight: f64,
    /// Start the update layer at zero ("no change").
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    zero_update_init: bool,
    /// Initial bias of the reset gate [default: the rule's own, -2].
    #[arg(long, allow_hyphen_values = true)]
    reset_bias: Option<f64>,
    /// Learning-rate schedule over the budget: constant, cosine or step:N.
    #[arg(long, default_value = "cosine", value_parser = parse_lr_schedule)]
    lr_schedule: LrSchedule,
    /// Optimizer steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 20)]
    warmup_steps: u64,
    /// The scheduled learning rate at the end of the budget, as a fraction of --lr.
    #[arg(long, default_value_t = 0.05)]
    lr_floor: f64,
    /// Decay of the moving average of the weights used for evaluation and
    /// the saved model, or `none`.
    #[arg(long, default_value = "0.99", value_parser = parse_ema)]
    ema: Ema,
    /// Curriculum: fraction of the budget trained with full unrolls
    /// (fresh states, unroll T) before the pool phase.
    #[arg(long, default_value_t = 0.0)]
    curriculum: f64,
    /// The paper's recipe instead of the default one (chosen on the
    /// validation split, see docs/RESULTS.md): batch 32, lr 3e-4 constant,
    /// plain cross-entropy, the default initialisation, no weight average
    /// (the flags of those levers cannot be combined with it).
    #[arg(long, conflicts_with_all = [
        "class_weights", "dice_weight", "zero_update_init", "lr_schedule",
        "warmup_steps", "ema",
    ])]
    paper: bool,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory [default: runs/pets<size>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: candle_core::Device,
    /// Continue the run in OUT/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
    /// Evaluate on the validation split every N steps (0: only at the end)
    /// [default: 500; 100 on the fixture].
    #[arg(long)]
    eval_every: Option<u64>,
    /// Validation samples used by the periodic evaluation (the final one
    /// uses all).
    #[arg(long, default_value_t = 64)]
    eval_samples: usize,
    /// Write a checkpoint every N steps.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
}

/// Prints a line above the progress bar (also when the bar is hidden, as
/// when the output is not a terminal).
fn say(bar: &ProgressBar, line: String) {
    bar.suspend(|| println!("{line}"));
}

fn parse_grad_norm(s: &str) -> Result<GradNorm, String> {
    match s {
        "none" => Ok(GradNorm::None),
        "per-tensor" => Ok(GradNorm::PerTensor),
        _ => match s.strip_prefix("clip:").map(str::parse::<f64>) {
            Some(Ok(c)) if c > 0.0 => Ok(GradNorm::Clip(c)),
            _ => Err(format!(
                "unknown gradient treatment '{s}' (none, per-tensor or clip:MAX)"
            )),
        },
    }
}

/// `--class-weights`: one weight per class, or none.
#[derive(Debug, Clone)]
struct ClassWeights(Option<Vec<f64>>);

fn parse_class_weights(s: &str) -> Result<ClassWeights, String> {
    if s == "none" {
        return Ok(ClassWeights(None));
    }
    let w: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not 'none' or three comma-separated numbers"))?;
    if w.len() != CLASS_NAMES.len() || w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(format!(
            "'{s}': give {} non-negative weights ({})",
            CLASS_NAMES.len(),
            CLASS_NAMES.join(", ")
        ));
    }
    Ok(ClassWeights(Some(w)))
}

/// `--ema`: a decay, or none.
#[derive(Debug, Clone, Copy)]
struct Ema(Option<f64>);

fn parse_ema(s: &str) -> Result<Ema, String> {
    if s == "none" {
        return Ok(Ema(None));
    }
    match s.parse::<f64>() {
        Ok(d) if (0.0..1.0).contains(&d) => Ok(Ema(Some(d))),
        _ => Err(format!("'{s}' is not 'none' or a decay in [0, 1)")),
    }
}

fn parse_lr_schedule(s: &str) -> Result<LrSchedule, String> {
    match s {
        "constant" => Ok(LrSchedule::Constant),
        "cosine" => Ok(LrSchedule::Cosine),
        _ => match s.strip_prefix("step:").map(str::parse::<u32>) {
            Some(Ok(drops)) if drops > 0 => Ok(LrSchedule::Step { drops }),
            _ => Err(format!(
                "unknown schedule '{s}' (constant, cosine or step:N with N >= 1)"
            )),
        },
    }
}

/// A subset of a loaded split, for quicker periodic evaluation.
struct Subset<'a>(&'a PetsTrainData, usize);

impl ca_sched::TrainData for Subset<'_> {
    fn len(&self) -> usize {
        self.1.min(self.0.len())
    }
    fn batch(
        &self,
        items: &[(usize, u64)],
        device: &candle_core::Device,
    ) -> ca_sched::Result<(candle_core::Tensor, candle_core::Tensor)> {
        self.0.batch(items, device)
    }
}

fn main() {
    // Reuse the freed step buffers instead of faulting them in every step.
    cellseg::ca_core::alloc::retain_freed_memory();
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn iou_line(table: &IouTable, step: usize) -> String {
    match table.at(step) {
        Some(v) => CLASS_NAMES
            .iter()
            .zip(v)
            .map(|(n, x)| format!("{n} {x:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => "-".into(),
    }
}

fn iou_json(table: &IouTable) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (s, v) in table.steps.iter().zip(&table.iou) {
        let per: serde_json::Map<_, _> = CLASS_NAMES
            .iter()
            .zip(v)
            .map(|(n, x)| (n.to_string(), json!(x)))
            .collect();
        m.insert(s.to_string(), per.into());
    }
    m.into()
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let source = resolve_data_dir(args.data.as_deref());
    let fx = source.is_fixture;
    if fx {
        println!(
            "note: no data given, training on the bundled synthetic set {}.\n      \
             For the real Oxford-IIIT Pet set pass --data DIR (or set $CA_PETS_DIR); \
             it is available from https://www.robots.ox.ac.uk/~vgg/data/pets/",
            source.root.display()
        );
    }
    let pick = |v: Option<usize>, real: usize, fixture: usize| {
        v.unwrap_or(if fx { fixture } else { real })
    };
    let levels = match (args.image_size, args.state_size) {
        (Some(image), Some(state)) => levels_for(image, state)?,
        _ => 0,
    };
    let size = args.image_size.unwrap_or(pick(args.size, 48, 32));
    let total_steps = args.steps.unwrap_or(if fx { 200 } else { 3000 });
    let eval_every = args.eval_every.unwrap_or(if fx { 100 } else { 500 });
    let batch = args.batch.unwrap_or(if args.paper { 32 } else { 8 });
    let lr = args.lr.unwrap_or(if args.paper { 3e-4 } else { 2e-3 });
    TrainFlags {
        size,
        state: pick(args.state, 48, 16),
        hidden: pick(args.hidden, 72, 32),
        batch,
        pool: args.pool.unwrap_or(batch),
        mini_unroll: args.mini_unroll,
        target: args.target,
        full_unroll: args.full_unroll,
        checkpoint_every: args.checkpoint_every,
        eval_samples: args.eval_samples,
        minutes: args.minutes,
        cpu_minutes: args.cpu_minutes,
    }
    .validate()?;
    if args.cpu_minutes.is_some() && process_cpu_seconds().is_none() {
        return Err(
            "--cpu-minutes: this system does not report the process's CPU time (/proc/self/stat)"
                .into(),
        );
    }
    let out = args.out.clone().unwrap_or_else(|| match levels {
        0 => PathBuf::from(format!("runs/pets{size}")),
        _ => PathBuf::from(format!("runs/pets{size}s{}", size >> levels)),
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    let options = LoadOptions {
        policy: if args.lenient {
            LoadPolicy::Lenient
        } else {
            LoadPolicy::Strict
        },
        ..LoadOptions::square(size)
    };
    let t0 = Instant::now();
    let augment = Augment {
        flip: args.flip,
        rotate90: args.rotate90,
        jitter: args.jitter,
        min_crop: args.min_crop,
    };
    augment.validate()?;
    let trainval = PetsDataset::open(&source.root, Split::TrainVal, &options)?;
    if !trainval.report().skipped.is_empty() {
        println!("{}", trainval.report());
    }
    let (train_part, val_part) = trainval.split_validation(args.val_fraction)?;
    let train = PetsTrainData {
        dataset: train_part,
        augment,
    };
    let val = PetsTrainData {
        dataset: val_part,
        augment: Augment::none(),
    };
    let test = if args.final_test {
        let ds = PetsDataset::open(&source.root, Split::Test, &options)?;
        if !ds.report().skipped.is_empty() {
            println!("{}", ds.report());
        }
        Some(PetsTrainData {
            dataset: ds,
            augment: Augment::none(),
        })
    } else {
        None
    };
    println!(
        "data: {} training, {} validation (--val-fraction {}){} samples at {size}x{size} from {} ({:.1}s)",
        train.dataset.len(),
        val.dataset.len(),
        args.val_fraction,
        test.as_ref().map_or(String::new(), |t| format!(", {} test", t.dataset.len())),
        source.root.display(),
        t0.elapsed().as_secs_f64()
    );

    let device = args.device.clone();
    let checkpoint = out.join("checkpoint.safetensors");
    let mut trainer = if args.resume {
        let meta = checkpoint_metadata(&checkpoint)?;
        let stored = hires_levels(&meta, &checkpoint)?.unwrap_or(0);
        if stored != levels {
            return Err(format!(
                "{} holds a model with {stored} stride-2 levels (0: plain), the flags ask for {levels}; \
                 resume with the --image-size/--state-size (or --size) of that run",
                checkpoint.display()
            )
            .into());
        }
        let model = ca_sched::model_from_metadata(&meta, &checkpoint, 0, &device)?;
        let t = Trainer::resume(model, &checkpoint, train.dataset.len())?;
        println!(
            "resumed {} at step {}",
            checkpoint.display(),
            t.step_count()
        );
        t
    } else {
        let config = CellConfig {
            state_channels: pick(args.state, 48, 16),
            hidden_channels: pick(args.hidden, 72, 32),
            hidden_layers: args.hidden_layers,
            perception: args.perception,
            norm: args.norm,
            reset_gate: args.reset_gate,
            residual: args.residual,
            ..CellConfig::default()
        };
        let schedule = TrainConfig {
            batch,
            pool_size: args.pool.unwrap_or(batch),
            mini_unroll: args.mini_unroll,
            target: args.target,
            full_unroll: args.full_unroll,
            p_image: args.p_image,
            p_state: args.p_state,
            learning_rate: lr,
            grad_norm: args.grad_norm,
            seed: args.seed,
            class_weights: args.class_weights.0.clone(),
            dice_weight: args.dice_weight,
            zero_update_init: args.zero_update_init,
            reset_bias_init: args.reset_bias,
            lr_schedule: args.lr_schedule,
            warmup_steps: args.warmup_steps,
            lr_floor: args.lr_floor,
            ema_decay: args.ema.0,
            full_unroll_fraction: args.curriculum,
            ..TrainConfig::default()
        };
        let schedule = if args.paper {
            TrainConfig {
                class_weights: None,
                dice_weight: 0.0,
                zero_update_init: false,
                lr_schedule: LrSchedule::Constant,
                warmup_steps: 0,
                ema_decay: None,
                ..schedule
            }
        } else {
            schedule
        };
        schedule.validate()?;
        let model = if levels > 0 {
            let config = CellConfig {
                env_channels: ENV_CHANNELS,
                ..config
            };
            Arc::new(HiresModel::new(config, levels, args.seed, &device)?) as AnyModel
        } else {
            Arc::new(CellRule::new(config, args.seed, &device)?)
        };
        Trainer::new(model, schedule, train.dataset.len())?
    };
    let rule_cfg = trainer.model().rule().config().clone();
    let sched = trainer.config().clone();
    println!(
        "model: {} state {} hidden {} norm {} reset_gate {} residual {} ({} trainable parameters)",
        rule_cfg.perception.name(),
        rule_cfg.state_channels,
        rule_cfg.hidden_channels,
        rule_cfg.norm.name(),
        rule_cfg.reset_gate,
        rule_cfg.residual,
        trainer.model().trainable_params()
    );
    println!("parameters: {}", trainer.model().describe_params());
    if levels > 0 {
        let state = size >> levels;
        println!("high resolution: {size}x{size} images and labels, {state}x{state} state");
    }
    println!(
        "schedule: batch {} pool {} K {} T {} full_unroll {} lr {} p_i {} p_s {} seed {} -> {total_steps} steps, out {}",
        sched.batch, sched.pool_size, sched.unroll(), sched.target, sched.full_unroll,
        sched.learning_rate, sched.p_image, sched.p_state, sched.seed, out.display()
    );
    println!(
        "recipe: class_weights {:?} dice {} zero_update_init {} reset_bias {:?} lr_schedule {:?} warmup {} floor {} ema {:?} curriculum {} augment {:?}",
        sched.class_weights, sched.dice_weight, sched.zero_update_init, sched.reset_bias_init,
        sched.lr_schedule, sched.warmup_steps, sched.lr_floor, sched.ema_decay,
        sched.full_unroll_fraction, augment
    );

    // Evaluation needs no gradients: larger batches amortize the per-step cost.
    let eval_batch = batch.max(32);
    let mut metrics = MetricsLog::append(&out.join("metrics.jsonl"))?;
    let target = sched.target;
    let periodic_steps = [10, 20, target];
    let bar = ProgressBar::new(total_steps);
    bar.set_position(trainer.step_count());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}")
            .expect("a valid template"),
    );
    let started = Instant::now();
    let cpu_at_start = process_cpu_seconds();
    let cpu_used = || match (cpu_at_start, process_cpu_seconds()) {
        (Some(c0), Some(c)) => c - c0,
        _ => f64::NAN,
    };
    // The fraction of the budget spent: steps, wall or CPU time, whichever
    // is furthest (a resumed run counts its time budgets afresh).
    let progress = |step: u64, cpu: f64| {
        let mut p = step as f64 / total_steps as f64;
        if let Some(m) = args.minutes {
            p = p.max(started.elapsed().as_secs_f64() / (m * 60.0));
        }
        if let Some(m) = args.cpu_minutes {
            p = p.max(cpu / (m * 60.0));
        }
        p
    };
    let mut last_iou = String::from("-");
    let mut loss_avg: Option<f64> = None;
    while trainer.step_count() < total_steps {
        if args
            .minutes
            .is_some_and(|m| started.elapsed().as_secs_f64() > m * 60.0)
        {
            say(
                &bar,
                format!(
                    "time limit of {} minutes reached",
                    args.minutes.unwrap_or(0.0)
                ),
            );
            break;
        }
        if let Some(m) = args.cpu_minutes {
            if cpu_used() > m * 60.0 {
                say(&bar, format!("CPU time limit of {m} minutes reached"));
                break;
            }
        }
        trainer.set_progress(progress(trainer.step_count(), cpu_used()));
        let step_start = Instant::now();
        let report = trainer.train_step(&train)?;
        let secs = step_start.elapsed().as_secs_f64();
        if report.non_finite {
            say(
                &bar,
                format!(
                "step {}: loss is not finite; the update was skipped and the batch's states reset",
                report.step
            ),
            );
        }
        if let Some(l) = report.loss.filter(|l| l.is_finite()) {
            loss_avg = Some(loss_avg.map_or(l as f64, |a| 0.95 * a + 0.05 * l as f64));
        }
        let step = trainer.step_count();
        let mut record = json!({
            "step": step, "loss": report.loss, "seconds": secs,
            "elapsed": started.elapsed().as_secs_f64(), "cpu_seconds": cpu_used(),
            "lr": report.learning_rate, "full_unroll": report.full_unroll,
        });
        if step % 25 == 0 {
            record["reset_gate_mean"] = json!(trainer.reset_gate_mean(&train)?);
        }
        if eval_every > 0 && step % eval_every == 0 && step < total_steps && !val.dataset.is_empty()
        {
            let subset = Subset(&val, args.eval_samples);
            let table = trainer
                .with_eval_weights(|m| evaluate_iou(m, &subset, &periodic_steps, eval_batch, 1))?;
            last_iou = format!(
                "val obj@{target} {:.3}",
                table.at(target).map_or(f64::NAN, |v| v[1])
            );
            say(
                &bar,
                format!(
                    "step {step}: validation IoU at step {target}: {}",
                    iou_line(&table, target)
                ),
            );
            record["val"] = iou_json(&table);
            record["val_samples"] = json!(args.eval_samples.min(val.dataset.len()));
        }
        metrics.write(&record)?;
        // A skipped (non-finite) step changes no weight; not writing it keeps
        // the last good checkpoint as it was.
        if step % args.checkpoint_every == 0 && !report.non_finite {
            trainer.save_checkpoint(&checkpoint)?;
            trainer.with_eval_weights(|m| {
                ca_sched::save_model(m, &out.join("model.safetensors"), size)
            })?;
        }
        bar.set_position(step);
        bar.set_message(format!(
            "loss {} {last_iou}",
            loss_avg.map_or("-".into(), |l| format!("{l:.4}"))
        ));
    }
    bar.finish();
    trainer.save_checkpoint(&checkpoint)?;
    let model_path = out.join("model.safetensors");
    trainer.with_eval_weights(|m| ca_sched::save_model(m, &model_path, size))?;
    let train_seconds = started.elapsed().as_secs_f64();
    let train_cpu_seconds = cpu_used();
    println!(
        "trained {} steps in {:.1} min ({:.1} CPU-min); model {}",
        trainer.step_count(),
        train_seconds / 60.0,
        train_cpu_seconds / 60.0,
        model_path.display()
    );

    let eval_steps = [10, 20, target, 2 * target];
    let mut record = json!({
        "step": trainer.step_count(), "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
    });
    let mut reports = Vec::new();
    if !val.dataset.is_empty() {
        reports.push(("validation", "final_val", "val_samples", &val));
    }
    if let Some(test) = &test {
        reports.push(("test", "final_eval", "eval_samples", test));
    }
    for (name, key, count, data) in reports {
        let table =
            trainer.with_eval_weights(|m| evaluate_iou(m, data, &eval_steps, eval_batch, 1))?;
        record[key] = iou_json(&table);
        record[count] = json!(data.dataset.len());
        println!("{name} IoU over {} samples:", data.dataset.len());
        for s in eval_steps {
            println!("  after {s:>3} CA steps: {}", iou_line(&table, s));
        }
    }
    metrics.write(&record)?;
    Ok(())
}
