//! Trains a segmentation cellular automaton on the Oxford-IIIT Pet layout.
//!
//! `cargo run --release --example train_pets` with no arguments trains a
//! small model on the bundled synthetic set in a few minutes. For the real
//! set: `--data DIR` (or `$CA_PETS_DIR`, or `data/oxford-iiit-pet`).
//! Writes `OUT/checkpoint.safetensors` (resumable with `--resume`),
//! `OUT/model.safetensors` (the model and its training image size, for
//! `segment` and `evaluate`; the moving average of the weights when the run
//! keeps one), `OUT/model-best.safetensors` (the same at the periodic
//! validation with the best mean IoU so far; its score and step in its
//! metadata) and `OUT/metrics.jsonl`.
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

use std::path::Path;
use std::sync::Arc;

use crate::ca_eval::pets::{resolve_data_dir, PetsTrainData};
use crate::train_cli::{describe_run, flag_error, TrainArgs, TrainPlan, STAGE_FLAGS};
use ca_core::CellRule;
use ca_data::{Augment, PetsDataset, Split};
use ca_hires::HiresModel;
use ca_model::{AnyModel, MetricsLog};
use ca_sched::{
    checkpoint_metadata, checkpoint_schedule, FinalTable, Fit, FitSummary, Learner, Stop,
    TrainData, Trainer, UNetTrainer,
};
use ca_unet::{UNet, UNetConfig};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use indicatif::{ProgressBar, ProgressStyle};

/// The tool's flags as a clap command (the subcommand's name is the
/// caller's).
pub fn command() -> clap::Command {
    TrainArgs::command()
}

/// Runs the tool on the process's own arguments (the example's `main`).
pub fn main() {
    main_matches(&command().get_matches());
}

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_matches(matches: &clap::ArgMatches) {
    // Reuse the freed step buffers instead of faulting them in every step.
    crate::ca_core::alloc::retain_freed_memory();
    let args = match TrainArgs::from_arg_matches(matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    // The flags the user typed, for a resume to check against the checkpoint.
    let given: Vec<String> = matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect();
    crate::error::exit_on_error(run(args, &given));
}

/// A loaded split, its skipped samples (lenient loading) printed.
fn reported(dataset: PetsDataset) -> PetsDataset {
    if !dataset.report().skipped.is_empty() {
        println!("{}", dataset.report());
    }
    dataset
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The training, validation and (with `--final-test`) test data.
struct Splits {
    train: PetsTrainData,
    val: PetsTrainData,
    test: Option<PetsTrainData>,
}

fn run(args: TrainArgs, given: &[String]) -> BoxResult<()> {
    let source = resolve_data_dir(args.data.as_deref());
    if source.is_fixture {
        println!("{}", source.fixture_note());
    }
    let plan = args.plan(source.is_fixture)?;
    let out = &plan.out;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let splits = load_splits(&args, &plan, &source.root)?;

    if let Some(config) = &plan.unet {
        let learner = unet_learner(&args, &plan, config, &splits.train)?;
        return train_and_report(learner, &args, &plan, &splits);
    }
    let learner = if args.resume {
        resumed_learner(&args, &plan, given, &splits.train)?
    } else {
        fresh_learner(&args, &plan, &splits.train)?
    };
    for line in describe_run(learner.trainer(), &plan) {
        println!("{line}");
    }
    train_and_report(learner, &args, &plan, &splits)
}

/// Trains `learner` to the plan's budget with validation, the model files
/// and the metrics file in the plan's folder, then the final evaluation.
fn train_and_report<T: Fit>(
    learner: Learner<'_, T>,
    args: &TrainArgs,
    plan: &TrainPlan,
    splits: &Splits,
) -> BoxResult<()> {
    let (size, out) = (plan.size, &plan.out);
    let model_path = out.join("model.safetensors");
    let mut learner = learner
        .with_validation(&splits.val)
        .with_model_file(&model_path, size)
        .with_best_model_file(&out.join("model-best.safetensors"), size)?
        .with_metrics(MetricsLog::append(&out.join("metrics.jsonl"))?);
    let summary = fit_with_progress(&mut learner, plan)?;
    match summary.stop {
        Stop::WallTime => println!(
            "time limit of {} minutes reached",
            args.minutes.unwrap_or(0.0)
        ),
        Stop::CpuTime => println!(
            "CPU time limit of {} minutes reached",
            args.cpu_minutes.unwrap_or(0.0)
        ),
        Stop::Steps => {}
    }
    println!(
        "trained {} steps in {:.1} min ({:.1} CPU-min); model {}",
        summary.steps,
        summary.seconds / 60.0,
        summary.cpu_seconds / 60.0,
        model_path.display()
    );
    final_evaluation(&mut learner, &summary, splits, &plan.learner.class_names)
}

/// The learner of `--model unet`: a fresh U-Net drawn from `--seed`, its
/// image standardised by the training part as a colony's would be.
fn unet_learner<'d>(
    args: &TrainArgs,
    plan: &TrainPlan,
    config: &UNetConfig,
    train: &'d PetsTrainData,
) -> BoxResult<Learner<'d, UNetTrainer>> {
    let config = UNetConfig {
        image_norm: plan.cell_for(&train.dataset)?.image_norm,
        ..config.clone()
    };
    let model = UNet::new(config, args.seed, &args.device)?;
    println!(
        "model: U-Net width {} ({} parameters), images {}x{}",
        model.config().width,
        model.trainable_params(),
        plan.size,
        plan.size
    );
    let sched = &plan.schedule;
    println!(
        "schedule: batch {} lr {} {:?} warmup {} floor {} loss weights {:?} dice {} ema {:?} seed {} \
         (the pool and unroll settings do not apply)",
        sched.unroll.batch,
        sched.optimizer.learning_rate,
        sched.lr_schedule.shape,
        sched.lr_schedule.warmup_steps,
        sched.lr_schedule.floor,
        sched.loss.class_weights,
        sched.loss.dice_weight,
        sched.ema_decay,
        sched.seed
    );
    let trainer = UNetTrainer::new(model, plan.schedule.clone(), train.len())?;
    Ok(Learner::from_trainer(trainer, train, plan.learner.clone())?)
}

/// Opens trainval (split into training and validation parts) and, with
/// `--final-test`, the test split, and says what was read.
fn load_splits(args: &TrainArgs, plan: &TrainPlan, root: &Path) -> BoxResult<Splits> {
    let options = &plan.load;
    let trainval = reported(PetsDataset::open(root, Split::TrainVal, options)?);
    let (train_part, val_part) = match args.val_fold {
        Some((fold, folds)) => trainval.split_fold(fold, folds)?,
        None => trainval.split_validation(args.val_fraction)?,
    };
    let splits = Splits {
        train: PetsTrainData {
            dataset: train_part,
            augment: plan.augment,
        },
        val: PetsTrainData {
            dataset: val_part,
            augment: Augment::none(),
        },
        test: match args.final_test {
            true => Some(PetsTrainData {
                dataset: reported(PetsDataset::open(root, Split::Test, options)?),
                augment: Augment::none(),
            }),
            false => None,
        },
    };
    let size = plan.size;
    println!(
        "data: {} training, {} validation ({}){} samples at {size}x{size} from {}",
        splits.train.dataset.len(),
        splits.val.dataset.len(),
        match args.val_fold {
            Some((k, n)) => format!("--val-fold {k}/{n}"),
            None => format!("--val-fraction {}", args.val_fraction),
        },
        splits
            .test
            .as_ref()
            .map_or(String::new(), |t| format!(", {} test", t.dataset.len())),
        root.display(),
    );
    Ok(splits)
}

/// The learner of `--resume`: the checkpoint's model and schedule, refused
/// when a typed model or schedule flag differs from the checkpoint's.
fn resumed_learner<'d>(
    args: &TrainArgs,
    plan: &TrainPlan,
    given: &[String],
    train: &'d PetsTrainData,
) -> BoxResult<Learner<'d, Trainer<AnyModel>>> {
    let checkpoint = plan.out.join("checkpoint.safetensors");
    let meta = checkpoint_metadata(&checkpoint)?;
    ca_hires::expect_levels(&meta, &checkpoint, plan.levels)?;
    let model = ca_model::model_from_metadata(&meta, &checkpoint, 0, &args.device)?;
    let stored_cell = model.rule().config().clone();
    let learner = Learner::resume(model, &checkpoint, train, plan.learner.clone())?;
    let stored_schedule = checkpoint_schedule(&meta, &checkpoint)?;
    // With --restart-schedule the stage flags start a new stage instead.
    let (staged, fixed): (Vec<String>, Vec<String>) = given
        .iter()
        .cloned()
        .partition(|id| args.restart_schedule && STAGE_FLAGS.contains(&id.as_str()));
    let conflicts = plan.conflicts_on_resume(&stored_cell, &stored_schedule, &fixed);
    if !conflicts.is_empty() {
        return Err(format!(
            "--resume continues {}'s model and schedule, so these flags would be ignored: {}; \
             give the checkpoint's values or none, or start a fresh run in another --out",
            checkpoint.display(),
            conflicts.join(", ")
        )
        .into());
    }
    let spent = learner.trainer().time_spent();
    println!(
        "resumed {} at step {} ({:.1} CPU-min trained{})",
        checkpoint.display(),
        learner.trainer().step_count(),
        spent.cpu_seconds / 60.0,
        match args.restart_schedule {
            true => "; --restart-schedule: the time budgets and the schedule start over",
            false => "",
        }
    );
    if staged.is_empty() {
        return Ok(match args.restart_schedule {
            true => learner.restart_schedule(),
            false => learner,
        });
    }
    let stage = plan.stage_over(&stored_schedule, &staged);
    println!(
        "next stage ({}): K {}, lr {}, {:?} to {} of it",
        staged.join(", "),
        stage.mini_unroll,
        stage.learning_rate,
        stage.lr_schedule.shape,
        stage.lr_schedule.floor
    );
    learner
        .next_stage(&stage)
        .map_err(|e| flag_error(e.invalid_field().cloned(), e))
}

/// The learner of a fresh run: a new model of the plan's kind, drawn from
/// `--seed`, its image standardised by the training part.
fn fresh_learner<'d>(
    args: &TrainArgs,
    plan: &TrainPlan,
    train: &'d PetsTrainData,
) -> BoxResult<Learner<'d, Trainer<AnyModel>>> {
    let cell = plan.cell_for(&train.dataset)?;
    if let Some(norm) = &cell.image_norm {
        println!(
            "image standardised by the training part: mean {:?} std {:?} gain {}",
            norm.mean, norm.std, norm.gain
        );
    }
    let model: AnyModel = match plan.levels {
        0 => Arc::new(CellRule::new(cell, args.seed, &args.device)?),
        levels => Arc::new(HiresModel::new(cell, levels, args.seed, &args.device)?),
    };
    let checkpoint = plan.out.join("checkpoint.safetensors");
    Ok(
        Learner::new(model, plan.schedule.clone(), train, plan.learner.clone())?
            .with_checkpoint(&checkpoint),
    )
}

/// Trains to the plan's budget behind a progress bar, printing skipped
/// steps and the periodic validation above it.
fn fit_with_progress<T: Fit>(
    learner: &mut Learner<'_, T>,
    plan: &TrainPlan,
) -> BoxResult<FitSummary> {
    let target = learner.trainer().config().unroll.target;
    let names = &plan.learner.class_names;
    let bar = ProgressBar::new(plan.learner.max_steps);
    bar.set_position(learner.trainer().step_count());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}")
            .expect("a valid template"),
    );
    // Lines printed above the bar (also when it is hidden, off a terminal).
    let say = |line: String| bar.suspend(|| println!("{line}"));
    let (mut loss_avg, mut last_iou) = (None::<f64>, String::from("-"));
    let summary = learner.fit(|event| {
        let report = event.report;
        if report.non_finite {
            say(format!(
                "step {}: loss is not finite; the update was skipped and the batch's states reset",
                report.step
            ));
        }
        if let Some(l) = report.loss.filter(|l| l.is_finite()) {
            loss_avg = Some(loss_avg.map_or(l as f64, |a| 0.95 * a + 0.05 * l as f64));
        }
        if let Some(table) = event.validation {
            last_iou = format!(
                "val obj@{target} {:.3}",
                table.at(target).map_or(f64::NAN, |v| v[1])
            );
            say(format!(
                "step {}: validation IoU at step {target}: {}{}",
                report.step,
                table.line(target, names),
                if event.best {
                    " (best so far: model-best.safetensors)"
                } else {
                    ""
                }
            ));
        }
        bar.set_position(report.step);
        let loss = loss_avg.map_or("-".into(), |l| format!("{l:.4}"));
        bar.set_message(format!("loss {loss} {last_iou}"));
    })?;
    bar.finish();
    Ok(summary)
}

/// Evaluates the saved weights on the validation part (and the test split
/// with `--final-test`) at the final evaluation steps
/// ([`Learner::final_evaluation`], which appends the record to the metrics
/// file) and prints the tables.
fn final_evaluation<T: Fit>(
    learner: &mut Learner<'_, T>,
    summary: &FitSummary,
    splits: &Splits,
    names: &[String],
) -> BoxResult<()> {
    let test = splits.test.as_ref().map(|t| t as &dyn TrainData);
    let done = learner.final_evaluation(summary, &splits.val, test)?;
    for (name, table) in [("validation", &done.validation), ("test", &done.test)] {
        let Some(FinalTable { table, samples }) = table else {
            continue;
        };
        println!("{name} IoU over {samples} samples:");
        for &s in &table.steps {
            println!("  after {s:>3} CA steps: {}", table.line(s, names));
        }
    }
    Ok(())
}
