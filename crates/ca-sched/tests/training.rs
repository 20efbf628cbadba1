//! Training behaviour on a tiny in-test data set: a bright square (object)
//! with a one-pixel rim (boundary) on a dark noisy background.

mod common;

use ca_core::{CellConfig, CellRule, Norm};
use ca_sched::{
    evaluate_iou, AdamConfig, CurriculumConfig, InitConfig, LossConfig, LrScheduleConfig,
    SchedError, StageConfig, TrainConfig, TrainData, Trainer, UnrollConfig,
};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

const SIZE: usize = 12;

struct Squares {
    samples: Vec<(Vec<f32>, Vec<u32>)>,
}

impl Squares {
    fn new(n: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(5);
        let samples = (0..n)
            .map(|_| {
                let side = rng.random_range(4..8);
                let (y0, x0) = (
                    rng.random_range(1..SIZE - side),
                    rng.random_range(1..SIZE - side),
                );
                let mut img = vec![0f32; 3 * SIZE * SIZE];
                let mut lab = vec![0u32; SIZE * SIZE];
                for y in 0..SIZE {
                    for x in 0..SIZE {
                        let inside = (y0..y0 + side).contains(&y) && (x0..x0 + side).contains(&x);
                        let rim = inside
                            && (y == y0 || x == x0 || y == y0 + side - 1 || x == x0 + side - 1);
                        lab[y * SIZE + x] = if rim {
                            2
                        } else if inside {
                            1
                        } else {
                            0
                        };
                        for c in 0..3 {
                            let base = if inside { 0.8 } else { 0.2 };
                            img[(c * SIZE + y) * SIZE + x] = base + rng.random_range(-0.1..0.1);
                        }
                    }
                }
                (img, lab)
            })
            .collect();
        Squares { samples }
    }
}

impl TrainData for Squares {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn batch(&self, items: &[(usize, u64)], device: &Device) -> ca_sched::Result<(Tensor, Tensor)> {
        let mut imgs = Vec::new();
        let mut labs = Vec::new();
        for &(i, _) in items {
            imgs.extend_from_slice(&self.samples[i].0);
            labs.extend_from_slice(&self.samples[i].1);
        }
        let b = items.len();
        Ok((
            Tensor::from_vec(imgs, (b, 3, SIZE, SIZE), device)?,
            Tensor::from_vec(labs, (b, SIZE, SIZE), device)?,
        ))
    }
}

fn small_rule(seed: u64) -> CellRule {
    let cfg = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        norm: Norm::Instance,
        ..CellConfig::default()
    };
    CellRule::new(cfg, seed, &Device::Cpu).unwrap()
}

fn small_schedule() -> TrainConfig {
    TrainConfig {
        unroll: UnrollConfig {
            batch: 4,
            pool_size: 4,
            mini_unroll: 4,
            target: 8,
            ..UnrollConfig::default()
        },
        optimizer: AdamConfig {
            learning_rate: 3e-3,
            ..AdamConfig::default()
        },
        seed: 3,
        ..TrainConfig::default()
    }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ca-sched-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn a_short_training_lowers_the_loss_and_beats_the_majority_class() {
    let data = Squares::new(16);
    let mut t = Trainer::new(small_rule(1), small_schedule(), data.len()).unwrap();
    let losses: Vec<f32> = (0..120)
        .filter_map(|_| t.train_step(&data).unwrap().loss)
        .collect();
    let n = losses.len();
    assert!(n > 60, "too few steps with a loss: {n}");
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = losses[n - 10..].iter().sum::<f32>() / 10.0;
    // Seeds 1-6 of rule and schedule: the loss ratio is 0.22-0.28, the mean
    // IoU 0.72-0.97 against 0.257 for the majority class (background, 77%
    // of the pixels, so that its IoU alone says little).
    assert!(last < 0.5 * first, "loss did not fall: {first} -> {last}");
    let iou = evaluate_iou(t.model(), &data, &[8, 16], 8, 0).unwrap();
    assert_eq!(iou.steps, [8, 16]);
    let at = iou.at(8).unwrap();
    let mean_iou = at.iter().sum::<f64>() / at.len() as f64;
    let baseline = ca_sched::majority_mean_iou(&data, at.len(), &Device::Cpu).unwrap();
    assert!(
        mean_iou > baseline + 0.3,
        "mean IoU {mean_iou:.3} (per class {at:?}), majority class {baseline:.3}"
    );
}

#[test]
fn the_loss_counts_only_slots_at_least_t0_old() {
    let data = Squares::new(4);
    // K = 2, T = 9, T0 = 3, no resets: unroll 1 sees ages 1, 2 (no loss),
    // unroll 2 sees ages 3, 4 (loss).
    let cfg = TrainConfig {
        unroll: UnrollConfig {
            mini_unroll: 2,
            target: 9,
            p_image: 0.0,
            p_state: 0.0,
            ..small_schedule().unroll
        },
        ..small_schedule()
    };
    let mut t = Trainer::new(small_rule(2), cfg, data.len()).unwrap();
    let r1 = t.train_step(&data).unwrap();
    assert_eq!(r1.loss, None);
    assert!(t
        .pool()
        .slots
        .iter()
        .all(|s| s.age == 2 && s.state.is_some()));
    let r2 = t.train_step(&data).unwrap();
    assert!(r2.loss.is_some());
    assert_eq!(r2.resets.kept, 4);
}

#[test]
fn full_unroll_resets_every_slot_every_step() {
    let data = Squares::new(4);
    let cfg = TrainConfig {
        unroll: UnrollConfig {
            full_unroll: true,
            ..small_schedule().unroll
        },
        ..small_schedule()
    };
    let mut t = Trainer::new(small_rule(2), cfg, data.len()).unwrap();
    let r = t.train_step(&data).unwrap();
    assert!(r.loss.is_some());
    assert_eq!(r.resets.fresh_state, 4);
    assert!(t
        .pool()
        .slots
        .iter()
        .all(|s| s.age == 0 && s.state.is_none()));
}

/// Trains 8 steps straight, and 4 + save + resume + 4; the losses and the
/// final weights agree.
fn assert_resume_follows(schedule: TrainConfig, name: &str) {
    let data = Squares::new(8);
    let mut straight = Trainer::new(small_rule(4), schedule.clone(), data.len()).unwrap();
    let expected: Vec<Option<f32>> = (0..8)
        .map(|_| straight.train_step(&data).unwrap().loss)
        .collect();

    let mut first = Trainer::new(small_rule(4), schedule, data.len()).unwrap();
    let mut got: Vec<Option<f32>> = (0..4)
        .map(|_| first.train_step(&data).unwrap().loss)
        .collect();
    let path = temp_path(name);
    first.save_checkpoint(&path).unwrap();
    drop(first);
    // A different initial model: resume must overwrite every tensor.
    let mut resumed = Trainer::resume(small_rule(99), &path, data.len()).unwrap();
    assert_eq!(resumed.step_count(), 4);
    got.extend((0..4).map(|_| resumed.train_step(&data).unwrap().loss));
    for (k, (a, b)) in expected.iter().zip(&got).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{name} step {k}: {a} vs {b}"
            ),
            _ => assert_eq!(a, b, "{name} step {k}"),
        }
    }
    let weights = |t: &Trainer<CellRule>| -> Vec<f32> {
        t.model()
            .params()
            .named()
            .iter()
            .flat_map(|p| p.var.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    };
    for (k, (a, b)) in weights(&straight).iter().zip(weights(&resumed)).enumerate() {
        assert!((a - b).abs() <= 1e-5, "{name} weight {k}: {a} vs {b}");
    }
}

#[test]
fn a_resumed_run_follows_the_uninterrupted_one() {
    assert_resume_follows(small_schedule(), "resume.safetensors");
}

#[test]
fn a_resumed_run_with_fixed_filters_follows_the_uninterrupted_one() {
    let schedule = TrainConfig {
        fixed_filters: true,
        ema_decay: Some(0.9),
        ..small_schedule()
    };
    assert_resume_follows(schedule, "resume-filters.safetensors");
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let data = Squares::new(4);
    let cfg = TrainConfig {
        optimizer: AdamConfig {
            learning_rate: 1e30,
            grad_norm: ca_sched::GradNorm::None,
            ..small_schedule().optimizer
        },
        max_bad_steps: 2,
        ..small_schedule()
    };
    let mut t = Trainer::new(small_rule(5), cfg, data.len()).unwrap();
    let path = temp_path("diverge.safetensors");
    t.save_checkpoint(&path).unwrap();
    let mut outcome = Ok(());
    for _ in 0..50 {
        match t.train_step(&data) {
            Ok(r) if !r.non_finite => t.save_checkpoint(&path).unwrap(),
            Ok(_) => {}
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    match outcome {
        Err(SchedError::Diverged { count, .. }) => assert_eq!(count, 2),
        other => panic!("expected divergence, got {other:?}"),
    }
    // The checkpoint on disk is a good one: it loads and its weights are finite.
    let resumed = Trainer::resume(small_rule(5), &path, data.len()).unwrap();
    for p in ca_model::Trainable::named_params(resumed.model()) {
        let v = p.var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{}", p.name);
    }
}

#[test]
fn resume_rejects_files_that_are_not_training_checkpoints() {
    let path = temp_path("plain-rule.safetensors");
    small_rule(1).save(&path).unwrap();
    let err = Trainer::resume(small_rule(1), &path, 4)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a training checkpoint"), "{err}");
    let err = Trainer::resume(small_rule(1), &temp_path("nope.safetensors"), 4)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope.safetensors"), "{err}");
}

/// Every recipe lever on at once, on the small schedule.
fn recipe_schedule() -> TrainConfig {
    TrainConfig {
        loss: LossConfig {
            class_weights: Some(vec![0.7, 1.0, 3.0]),
            dice_weight: 1.0,
        },
        init: InitConfig {
            zero_update_init: true,
            reset_bias_init: Some(-3.0),
            ..small_schedule().init
        },
        lr_schedule: LrScheduleConfig {
            shape: ca_sched::LrSchedule::Cosine,
            warmup_steps: 2,
            floor: 0.1,
        },
        curriculum: CurriculumConfig {
            full_unroll_fraction: 0.25,
        },
        ema_decay: Some(0.9),
        ..small_schedule()
    }
}

fn param(rule: &CellRule, name: &str) -> Vec<f32> {
    let p = rule
        .params()
        .named()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap();
    p.var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

#[test]
fn the_recipe_initialises_trains_and_resumes_exactly() {
    let data = Squares::new(8);
    let fresh = Trainer::new(small_rule(6), recipe_schedule(), data.len()).unwrap();
    assert!(param(fresh.model(), &common::update_weight())
        .iter()
        .all(|&x| x == 0.0));
    assert!(param(fresh.model(), "update.bias")
        .iter()
        .all(|&x| x == 0.0));
    assert_eq!(param(fresh.model(), "reset.bias"), [-3.0]);
    drop(fresh);

    // 8 steps: progress i/8, so steps 0 and 1 are full unrolls (curriculum).
    let run = |t: &mut Trainer<CellRule>, range: std::ops::Range<u64>| {
        range
            .map(|i| {
                t.set_progress(i as f64 / 8.0);
                t.train_step(&data).unwrap()
            })
            .collect::<Vec<_>>()
    };
    let mut straight = Trainer::new(small_rule(6), recipe_schedule(), data.len()).unwrap();
    let expected = run(&mut straight, 0..8);
    let modes: Vec<bool> = expected.iter().map(|r| r.full_unroll).collect();
    assert_eq!(
        modes,
        [true, true, false, false, false, false, false, false]
    );
    let lrs: Vec<f64> = expected.iter().map(|r| r.learning_rate).collect();
    assert!(lrs[0] < lrs[1], "warm-up: {lrs:?}");
    assert!(
        lrs[2..].windows(2).all(|w| w[1] < w[0]),
        "cosine decay: {lrs:?}"
    );
    // The update layer learned something from zero.
    assert!(param(straight.model(), &common::update_weight())
        .iter()
        .any(|&x| x != 0.0));

    let mut first = Trainer::new(small_rule(6), recipe_schedule(), data.len()).unwrap();
    let mut got = run(&mut first, 0..4);
    let path = temp_path("resume-recipe.safetensors");
    first.save_checkpoint(&path).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(small_rule(98), &path, data.len()).unwrap();
    assert_eq!(resumed.ema().unwrap().updates(), 4);
    got.extend(run(&mut resumed, 4..8));
    for (k, (a, b)) in expected.iter().zip(&got).enumerate() {
        let (a, b) = (a.loss.unwrap(), b.loss.unwrap());
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "step {k}: {a} vs {b}"
        );
    }
    // The average (what is evaluated and saved) matches too, and differs
    // from the trained weights.
    let avg = |t: &Trainer<CellRule>| {
        t.with_eval_weights(|m| Ok(param(m, &common::update_weight())))
            .unwrap()
    };
    let (a, b) = (avg(&straight), avg(&resumed));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    assert_ne!(a, param(straight.model(), &common::update_weight()));
}

/// The Learner stops at its step budget, validates on its cadence, writes
/// the checkpoint, the model file and one metrics line per step, and a
/// resumed Learner continues to the same total, its time budget counting
/// the time before the resume.
#[test]
fn a_learner_runs_to_its_budget_and_resumes() {
    use ca_model::MetricsLog;
    use ca_sched::{Learner, LearnerConfig, Stop};
    let (data, val) = (Squares::new(8), Squares::new(4));
    let dir = temp_path("learner");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ckpt, model, metrics) = (
        dir.join("checkpoint.safetensors"),
        dir.join("model.safetensors"),
        dir.join("metrics.jsonl"),
    );
    let settings = LearnerConfig {
        max_steps: 6,
        checkpoint_every: 3,
        eval_every: 2,
        eval_steps: vec![2, 4],
        eval_samples: 3,
        eval_batch: 2,
        gate_every: 0,
        ..LearnerConfig::default()
    };
    let mut validated = Vec::new();
    let mut learner = Learner::new(small_rule(1), small_schedule(), &data, settings.clone())
        .unwrap()
        .with_validation(&val)
        .with_checkpoint(&ckpt)
        .with_model_file(&model, 12)
        .with_metrics(MetricsLog::append(&metrics).unwrap());
    let summary = learner
        .fit(|e| {
            if e.validation.is_some() {
                validated.push(e.report.step);
            }
        })
        .unwrap();
    assert_eq!((summary.stop, summary.steps), (Stop::Steps, 6));
    assert_eq!(validated, [2, 4], "every 2 steps, not at the last");
    let lines = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(lines.lines().count(), 6);
    assert!(lines.lines().nth(1).unwrap().contains("\"val_samples\":3"));
    let (_, size) = ca_model::load_model(&model, &Device::Cpu).unwrap();
    assert_eq!(size, 12);

    // The final evaluation measures every sample of each split at the
    // final steps of target 8 and appends its record.
    let done = learner
        .final_evaluation(&summary, &val, Some(&data))
        .unwrap();
    let val_table = done.validation.as_ref().unwrap();
    assert_eq!(
        (val_table.samples, done.test.as_ref().unwrap().samples),
        (4, 8)
    );
    assert_eq!(val_table.table.steps, ca_sched::final_eval_steps(8));
    assert_eq!(done.record.step, 6);
    assert_eq!(done.record.val_samples, Some(4));
    let last = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(last.lines().count(), 7);
    assert!(last.lines().last().unwrap().contains("\"final_eval\""));
    let no_data = learner
        .final_evaluation(&summary, &Squares::new(0), None)
        .unwrap();
    assert!(no_data.validation.is_none() && no_data.record.final_val.is_none());

    let first = learner.trainer().time_spent();
    assert!(first.wall_seconds > 0.0 && first.wall_seconds <= summary.seconds);

    // The time budget counts the time before the resume: a wall-clock
    // budget the first part already spent stops the resumed run at once.
    let spent_budget = LearnerConfig {
        max_steps: 9,
        max_minutes: Some(first.wall_seconds / 2.0 / 60.0),
        ..settings.clone()
    };
    let mut over = Learner::resume(small_rule(2), &ckpt, &data, spent_budget.clone()).unwrap();
    assert_eq!(over.trainer().time_spent(), first);
    let summary = over.fit(|_| {}).unwrap();
    assert_eq!((summary.stop, summary.steps), (Stop::WallTime, 6));
    // A warm restart counts the time from zero: the same budget trains
    // (on a copy, the checkpoint below resumes at step 6).
    let copy = dir.join("copy.safetensors");
    std::fs::copy(&ckpt, &copy).unwrap();
    let mut restarted = Learner::resume(small_rule(2), &copy, &data, spent_budget)
        .unwrap()
        .restart_schedule();
    assert_eq!(restarted.trainer().time_spent(), Default::default());
    assert!(restarted.fit(|_| {}).unwrap().steps > 6);
    // A next stage: the target's unroll from the same run, the time
    // counted from zero; a stage the config refuses names its field.
    let resumed_copy = || Learner::resume(small_rule(2), &copy, &data, settings.clone()).unwrap();
    let kept = resumed_copy().trainer().config().clone();
    let stage = StageConfig {
        mini_unroll: kept.unroll.target,
        learning_rate: kept.optimizer.learning_rate / 4.0,
        ..kept.stage()
    };
    let err = resumed_copy()
        .next_stage(&StageConfig {
            mini_unroll: kept.unroll.target + 1,
            ..stage
        })
        .err()
        .expect("K beyond T is refused");
    assert!(err.to_string().contains("mini_unroll"), "{err}");
    let staged = resumed_copy().next_stage(&stage).unwrap();
    assert_eq!(staged.trainer().config(), &kept.with_stage(&stage).unwrap());
    assert_eq!(staged.trainer().config().stage(), stage);
    assert_eq!(staged.trainer().time_spent(), Default::default());

    let more = LearnerConfig {
        max_steps: 9,
        ..settings
    };
    let mut resumed = Learner::resume(small_rule(2), &ckpt, &data, more)
        .unwrap()
        .with_metrics(MetricsLog::append(&metrics).unwrap());
    assert_eq!(resumed.trainer().step_count(), 6);
    let summary = resumed.fit(|_| {}).unwrap();
    assert_eq!(summary.steps, 9);
    assert!(summary.seconds > first.wall_seconds, "the times add up");
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&metrics)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert!(last["elapsed"].as_f64().unwrap() > first.wall_seconds);
    assert!(LearnerConfig {
        checkpoint_every: 0,
        ..LearnerConfig::default()
    }
    .validate()
    .unwrap_err()
    .to_string()
    .contains("checkpoint_every"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CPU time the system does not report (NaN) is saved as 0: the
/// checkpoint stays readable and resumes.
#[test]
fn an_unknown_cpu_time_keeps_the_checkpoint_readable() {
    let data = Squares::new(4);
    let mut t = Trainer::new(small_rule(1), small_schedule(), data.len()).unwrap();
    t.train_step(&data).unwrap();
    t.set_time_spent(ca_sched::TimeSpent {
        wall_seconds: 1.5,
        cpu_seconds: f64::NAN,
    });
    let path = temp_path("nan-cpu.safetensors");
    t.save_checkpoint(&path).unwrap();
    let resumed = Trainer::resume(small_rule(2), &path, data.len()).unwrap();
    assert_eq!(
        resumed.time_spent(),
        ca_sched::TimeSpent {
            wall_seconds: 1.5,
            cpu_seconds: 0.0
        }
    );
    let _ = std::fs::remove_file(&path);
}

/// The Learner keeps the model that is best on validation beside the last:
/// the file records the best score and step of the run, a resumed run goes
/// on from that score, and a fresh run does not read a file left by
/// another.
#[test]
fn the_best_model_on_validation_is_kept() {
    use ca_sched::{validation_score, Learner, LearnerConfig};
    let (data, val) = (Squares::new(8), Squares::new(4));
    let dir = temp_path("best");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ckpt, best) = (
        dir.join("checkpoint.safetensors"),
        dir.join("model-best.safetensors"),
    );
    let settings = LearnerConfig {
        max_steps: 7,
        checkpoint_every: 1,
        eval_every: 1,
        eval_steps: vec![3],
        eval_samples: 4,
        eval_batch: 2,
        gate_every: 0,
        ..LearnerConfig::default()
    };
    let mut scores = Vec::new();
    let mut learner = Learner::new(small_rule(1), small_schedule(), &data, settings.clone())
        .unwrap()
        .with_validation(&val)
        .with_checkpoint(&ckpt)
        .with_best_model_file(&best, 12)
        .unwrap();
    learner
        .fit(|e| {
            if let Some(table) = e.validation {
                let score = validation_score(table).unwrap();
                let beats = scores.iter().all(|&(s, _)| s < score);
                assert_eq!(e.best, beats, "step {}", e.report.step);
                scores.push((score, e.report.step));
            }
        })
        .unwrap();
    assert_eq!(scores.len(), 6, "steps 1 to 6 validate");
    let top = scores
        .iter()
        .copied()
        .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a });
    assert_eq!(ca_model::best_score(&best).unwrap(), Some(top));
    assert_eq!(learner.best(), Some(top));
    let (_, size) = ca_model::load_model(&best, &Device::Cpu).unwrap();
    assert_eq!(size, 12);

    // Resumed: the recorded best is the bar to beat.
    let more = LearnerConfig {
        max_steps: 9,
        ..settings.clone()
    };
    let resumed = Learner::resume(small_rule(2), &ckpt, &data, more)
        .unwrap()
        .with_best_model_file(&best, 12)
        .unwrap();
    assert_eq!(resumed.best(), Some(top));
    // Fresh: a file left by another run is not read (and is replaced by
    // the first validation).
    let fresh = Learner::new(small_rule(1), small_schedule(), &data, settings)
        .unwrap()
        .with_best_model_file(&best, 12)
        .unwrap();
    assert_eq!(fresh.best(), None);
}
