//! Recipe sweeps over `train_pets`: a file of named configurations, each
//! trained for several seeds under one CPU-time budget, at most `lanes`
//! processes at a time, then ranked by the median final validation object
//! IoU.
//!
//! The configuration file has one configuration per line, `NAME --flag
//! value ...` (whitespace separated; `#` starts a comment line; blank lines
//! are ignored). Every `(configuration, seed)` run writes to
//! `OUT/NAME/seed-S/` (`log.txt`, `metrics.jsonl`, the checkpoint and the
//! model); a run whose `metrics.jsonl` already holds a `final_val` record is
//! not run again, so an interrupted sweep continues where it stopped. The
//! sweep writes `OUT/sweep.md` (the ranked table) and `OUT/sweep.csv` (one
//! row per run), and returns the validation curves (object IoU against
//! CPU-minutes, one per configuration) that the `sweep` example draws to
//! `OUT/curves.png`.

use ca_core::ErrorShapes;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ca_model::{read_metrics_file, MetricsRecord, ModelError};

use crate::error::{EvalError, Result};

/// The flags the sweep sets on every run itself; a configuration line or
/// the common arguments giving one of them is an error.
pub const RESERVED_FLAGS: [&str; 4] = ["--data", "--cpu-minutes", "--seed", "--out"];

/// Class names of the IoU maps in `metrics.jsonl`, in class-id order.
const CLASSES: [&str; ca_data::NUM_CLASSES] = ca_data::CLASS_NAMES;

/// One line of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// The configuration name: unique, made of `[A-Za-z0-9._-]`, not only
    /// dots; also the name of its folder under the sweep's output.
    pub name: String,
    /// The `train_pets` arguments of this configuration, as written.
    pub args: Vec<String>,
    /// The 1-based line of the file it came from.
    pub line: usize,
}

/// Parses the text of a configuration file; `path` is only used in error
/// messages, which name `path:line`.
pub fn parse_configs(text: &str, path: &Path) -> Result<Vec<SweepConfig>> {
    let mut configs: Vec<SweepConfig> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{line}", path.display());
        let mut tokens = trimmed.split_whitespace().map(str::to_string);
        let name = tokens.next().unwrap_or_default();
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !name.chars().all(valid_char) || name.chars().all(|c| c == '.') {
            return Err(EvalError::invalid(
                "sweep configuration",
                at(),
                format!("name {name:?} must be made of A-Z, a-z, 0-9, '.', '_', '-' (and not only dots)"),
            ));
        }
        if let Some(first) = configs.iter().find(|c| c.name == name) {
            return Err(EvalError::invalid(
                "sweep configuration",
                at(),
                format!("name {name:?} is already used on line {}", first.line),
            ));
        }
        let args: Vec<String> = tokens.collect();
        check_not_reserved(&args, &at())?;
        configs.push(SweepConfig { name, args, line });
    }
    if configs.is_empty() {
        return Err(EvalError::invalid(
            "sweep configuration",
            path.display(),
            "the file lists no configuration",
        ));
    }
    Ok(configs)
}

/// Reads and parses a configuration file; see [`parse_configs`].
pub fn read_configs(path: &Path) -> Result<Vec<SweepConfig>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    parse_configs(&text, path)
}

/// Fails when `args` give one of [`RESERVED_FLAGS`] (also as `--flag=value`);
/// `origin` names where the arguments came from.
fn check_not_reserved(args: &[String], origin: &str) -> Result<()> {
    match args
        .iter()
        .find(|a| RESERVED_FLAGS.contains(&a.split('=').next().unwrap_or_default()))
    {
        Some(flag) => Err(EvalError::invalid(
            "sweep configuration",
            origin,
            format!("{flag} is set by the sweep itself (use its own --data, --cpu-minutes, --seeds, --out)"),
        )),
        None => Ok(()),
    }
}

/// Parses a comma-separated list of seeds (`0,1,2`): at least one, no
/// repeats.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let mut seeds = Vec::new();
    for part in text.split(',') {
        let seed: u64 = part.trim().parse().map_err(|_| {
            EvalError::invalid("--seeds", text, format!("{part:?} is not a seed (u64)"))
        })?;
        if seeds.contains(&seed) {
            return Err(EvalError::invalid(
                "--seeds",
                text,
                format!("seed {seed} is listed twice"),
            ));
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

/// How to run a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    /// The training program every run executes (the `train_pets` example
    /// or a program with its flags and `metrics.jsonl`); the caller says
    /// where it is: this library names no build folder.
    pub train_bin: PathBuf,
    /// Arguments before each run's own (`train` when `train_bin` is the
    /// `cellseg` program; none for `train_pets`).
    pub train_prefix: Vec<OsString>,
    /// The dataset root passed as `--data` (none: `train_pets`'s default).
    pub data: Option<PathBuf>,
    /// CPU-time budget of each run, in minutes (`--cpu-minutes`).
    pub cpu_minutes: f64,
    /// The seeds every configuration runs with.
    pub seeds: Vec<u64>,
    /// At most this many runs at a time.
    pub lanes: usize,
    /// The sweep's output folder.
    pub out: PathBuf,
    /// The CA step whose IoU ranks the configurations (a key of the IoU
    /// maps in `metrics.jsonl`).
    pub at: usize,
    /// Arguments given to every run, before the configuration's own.
    pub common: Vec<String>,
}

impl SweepOptions {
    /// A sweep running `train_bin` into `out`: `train_pets`'s default
    /// data, 10 CPU-minutes, seeds 0 and 1, 2 lanes, IoU at CA step 40, no
    /// common arguments.
    pub fn new(train_bin: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        SweepOptions {
            train_bin: train_bin.into(),
            train_prefix: Vec::new(),
            data: None,
            cpu_minutes: 10.0,
            seeds: vec![0, 1],
            lanes: 2,
            out: out.into(),
            at: 40,
            common: Vec::new(),
        }
    }

    /// Checks every field; the error names the option and its value.
    pub fn validate(&self) -> Result<()> {
        if !(self.cpu_minutes.is_finite() && self.cpu_minutes > 0.0) {
            return Err(EvalError::invalid(
                "--cpu-minutes",
                self.cpu_minutes,
                "must be a positive number of minutes",
            ));
        }
        if self.seeds.is_empty() {
            return Err(EvalError::invalid("--seeds", "", "at least one seed"));
        }
        if self.lanes == 0 {
            return Err(EvalError::invalid("--lanes", 0, "at least one lane"));
        }
        if self.at == 0 {
            return Err(EvalError::invalid(
                "--at",
                0,
                "a CA step of the evaluations (10, 20, 40, ...)",
            ));
        }
        check_not_reserved(&self.common, "the common arguments after --")?;
        if !self.train_bin.is_file() {
            return Err(EvalError::invalid(
                "--train-bin",
                self.train_bin.display(),
                "not found (the `sweep` example runs the `train_pets` built beside it: \
                 `cargo build --release --example train_pets`)",
            ));
        }
        Ok(())
    }

    /// The folder of the run of `config` with `seed`: `OUT/NAME/seed-S`.
    pub fn run_dir(&self, config: &SweepConfig, seed: u64) -> PathBuf {
        self.out.join(&config.name).join(format!("seed-{seed}"))
    }

    /// The `train_pets` arguments of one run: `PREFIX... [--data DIR]
    /// --cpu-minutes B --seed S --out DIR COMMON... CONFIG...`.
    pub fn run_args(&self, config: &SweepConfig, seed: u64) -> Vec<OsString> {
        let mut args: Vec<OsString> = self.train_prefix.clone();
        if let Some(data) = &self.data {
            args.extend(["--data".into(), data.into()]);
        }
        args.extend([
            "--cpu-minutes".into(),
            self.cpu_minutes.to_string().into(),
            "--seed".into(),
            seed.to_string().into(),
            "--out".into(),
            self.run_dir(config, seed).into(),
        ]);
        args.extend(self.common.iter().map(OsString::from));
        args.extend(config.args.iter().map(OsString::from));
        args
    }
}

/// Runs `work` on every job with at most `lanes` jobs at a time (one thread
/// per lane, each taking the next job when it is free) and returns the
/// results in job order.
pub fn run_queue<J, R, F>(jobs: Vec<J>, lanes: usize, work: F) -> Vec<R>
where
    J: Send,
    R: Send,
    F: Fn(J) -> R + Sync,
{
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..lanes.clamp(1, count.max(1)) {
            scope.spawn(|| loop {
                let next = queue.lock().expect("queue lock").next();
                let Some((index, job)) = next else { break };
                let result = work(job);
                results.lock().expect("results lock")[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// It has a `final_val` record (run now or by an earlier sweep).
    Ok,
    /// It could not start, exited with an error, or ended without a
    /// `final_val` record.
    Failed {
        /// What went wrong (exit status or message).
        reason: String,
        /// The run's log.
        log: PathBuf,
    },
}

/// What one run's `metrics.jsonl` says.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// The last optimizer step recorded.
    pub steps: u64,
    /// CPU-minutes of training: the final record's `train_cpu_seconds`, else
    /// the last `cpu_seconds`, over 60 (NaN when none is recorded).
    pub cpu_minutes: f64,
    /// Final validation IoU `[background, object, boundary]` at the chosen
    /// CA step, if the run wrote a `final_val` record (NaN for a class whose
    /// value is missing or null).
    pub final_val: Option<[f64; 3]>,
    /// `(step, CPU-minutes, object IoU)` of every periodic validation at
    /// the chosen CA step, in file order.
    pub curve: Vec<(u64, f64, f64)>,
}

/// Reads one run's metrics file, keeping the IoUs at CA step `at`.
pub fn read_run_metrics(path: &Path, at: usize) -> Result<RunMetrics> {
    let mut metrics = RunMetrics {
        steps: 0,
        cpu_minutes: f64::NAN,
        final_val: None,
        curve: Vec::new(),
    };
    for record in read_records(path)? {
        if let Some(step) = record.step {
            metrics.steps = metrics.steps.max(step);
        }
        if let Some(cpu) = record.cpu_seconds() {
            metrics.cpu_minutes = cpu / 60.0;
        }
        if let Some(iou) = record.val.as_ref().and_then(|v| v.at(at, CLASSES)) {
            let step = record.step.unwrap_or(metrics.steps);
            metrics.curve.push((step, metrics.cpu_minutes, iou[1]));
        }
        if let Some(final_val) = &record.final_val {
            metrics.final_val = Some(final_val.at(at, CLASSES).unwrap_or([f64::NAN; 3]));
        }
    }
    Ok(metrics)
}

/// The records of a metrics file ([`read_metrics_file`], its error as an
/// [`EvalError`] naming `path:line`).
fn read_records(path: &Path) -> Result<Vec<MetricsRecord>> {
    read_metrics_file(path).map_err(|e| match e {
        ModelError::Io(ca_core::PathError { path, source }) => EvalError::io(path, source),
        e => EvalError::invalid("metrics file", path.display(), e.to_string()),
    })
}

/// Whether the metrics file at `path` exists and holds a `final_val` record
/// (the run is complete and need not run again).
pub fn has_final_val(path: &Path) -> bool {
    read_records(path).is_ok_and(|records| records.iter().any(|r| r.final_val.is_some()))
}

/// One run of the sweep, after it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The configuration's name.
    pub config: String,
    /// The seed.
    pub seed: u64,
    /// How it ended.
    pub status: RunStatus,
    /// Its metrics, when the file could be read.
    pub metrics: Option<RunMetrics>,
}

impl RunRecord {
    /// The final validation IoU `[background, object, boundary]`, for a run
    /// that ended well.
    pub fn final_val(&self) -> Option<[f64; 3]> {
        match self.status {
            RunStatus::Ok => self.metrics.as_ref().and_then(|m| m.final_val),
            RunStatus::Failed { .. } => None,
        }
    }
}

/// The median of the finite values (mean of the middle two for an even
/// count); NaN when there is none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The smallest and largest finite values; NaNs when there is none.
fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::NAN, f64::NAN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// One configuration's line of the ranked table; IoUs are final validation
/// IoUs at the chosen CA step, medians over the seeds that ended well.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSummary {
    /// The configuration's name.
    pub name: String,
    /// Its `train_pets` arguments, joined by spaces.
    pub flags: String,
    /// Runs that ended well.
    pub done: usize,
    /// Runs that failed.
    pub failed: usize,
    /// Median object IoU.
    pub object: f64,
    /// Smallest and largest object IoU over the seeds.
    pub object_range: (f64, f64),
    /// Median boundary IoU.
    pub boundary: f64,
    /// Median background IoU.
    pub background: f64,
    /// Median of the mean IoU of the three classes (the tie-breaker).
    pub mean: f64,
    /// Median optimizer steps reached.
    pub steps: f64,
    /// Median CPU-minutes of training.
    pub cpu_minutes: f64,
}

/// The mean of the three class IoUs.
fn class_mean(iou: &[f64; 3]) -> f64 {
    iou.iter().sum::<f64>() / 3.0
}

/// Summarizes the runs per configuration and ranks the configurations: by
/// median object IoU, then median mean IoU, both descending; NaN (no run
/// ended well) last; then by name.
pub fn rank(configs: &[SweepConfig], runs: &[RunRecord]) -> Vec<ConfigSummary> {
    let mut summaries: Vec<ConfigSummary> = configs
        .iter()
        .map(|config| {
            let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.config == config.name).collect();
            let finals: Vec<[f64; 3]> = mine.iter().filter_map(|r| r.final_val()).collect();
            let good: Vec<&RunMetrics> = mine
                .iter()
                .filter(|r| r.final_val().is_some())
                .filter_map(|r| r.metrics.as_ref())
                .collect();
            let class = |c: usize| finals.iter().map(|v| v[c]).collect::<Vec<_>>();
            ConfigSummary {
                name: config.name.clone(),
                flags: config.args.join(" "),
                done: finals.len(),
                failed: mine.len() - finals.len(),
                object: median(&class(1)),
                object_range: min_max(&class(1)),
                boundary: median(&class(2)),
                background: median(&class(0)),
                mean: median(&finals.iter().map(class_mean).collect::<Vec<_>>()),
                steps: median(&good.iter().map(|m| m.steps as f64).collect::<Vec<_>>()),
                cpu_minutes: median(&good.iter().map(|m| m.cpu_minutes).collect::<Vec<_>>()),
            }
        })
        .collect();
    // Descending, NaN last.
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    summaries.sort_by(|a, b| {
        key(b.object)
            .total_cmp(&key(a.object))
            .then(key(b.mean).total_cmp(&key(a.mean)))
            .then(a.name.cmp(&b.name))
    });
    summaries
}

/// A number with `digits` decimals, or `-` when it is not finite.
fn num(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "-".to_string()
    }
}

/// `median (min-max)` of the object IoU, or `-` when no run ended well.
fn object_cell(s: &ConfigSummary) -> String {
    let (lo, hi) = s.object_range;
    if s.object.is_finite() && lo.is_finite() && hi.is_finite() {
        format!("{:.3} ({lo:.3}-{hi:.3})", s.object)
    } else {
        "-".to_string()
    }
}

/// The ranked table as Markdown, one row per configuration, IoUs at CA step
/// `at`.
pub fn markdown_table(summaries: &[ConfigSummary], at: usize) -> String {
    let mut out = format!(
        "| rank | config | flags | seeds done/failed | object IoU@{at} median (min-max) | \
         boundary IoU | background IoU | steps | CPU-min |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for (i, s) in summaries.iter().enumerate() {
        let flags = if s.flags.is_empty() {
            "(defaults)".to_string()
        } else {
            format!("`{}`", s.flags.replace('|', "\\|"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}/{} | {} | {} | {} | {} | {} |",
            i + 1,
            s.name,
            flags,
            s.done,
            s.failed,
            object_cell(s),
            num(s.boundary, 3),
            num(s.background, 3),
            num(s.steps, 0),
            num(s.cpu_minutes, 2),
        );
    }
    out
}

/// The runs as CSV: a header, then one row per run, `config, seed, steps,
/// cpu_minutes, val_background, val_object, val_boundary, val_mean,
/// status` (`ok` or `failed`); values that are missing are empty fields.
pub fn csv_rows(runs: &[RunRecord]) -> String {
    let mut out = String::from(
        "config,seed,steps,cpu_minutes,val_background,val_object,val_boundary,val_mean,status\n",
    );
    let field = |x: f64| {
        if x.is_finite() {
            format!("{x:.6}")
        } else {
            String::new()
        }
    };
    for r in runs {
        let (steps, cpu) = r
            .metrics
            .as_ref()
            .map_or((String::new(), String::new()), |m| {
                (m.steps.to_string(), field(m.cpu_minutes))
            });
        let iou = r.final_val().map_or([f64::NAN; 3], |v| v);
        let status = match r.status {
            RunStatus::Ok => "ok",
            RunStatus::Failed { .. } => "failed",
        };
        let _ = writeln!(
            out,
            "{},{},{steps},{cpu},{},{},{},{},{status}",
            r.config,
            r.seed,
            field(iou[0]),
            field(iou[1]),
            field(iou[2]),
            field(class_mean(&iou)),
        );
    }
    out
}

/// One line per configuration: the median over its good seeds of the
/// periodic validation object IoU against the median CPU-minutes, at the
/// evaluation steps that every good seed reached, then the final point
/// (median final CPU-minutes, median final object IoU). Configurations
/// without a good seed have no curve.
pub fn validation_curves(configs: &[SweepConfig], runs: &[RunRecord]) -> Vec<ValidationCurve> {
    configs
        .iter()
        .filter_map(|config| {
            let good: Vec<&RunMetrics> = runs
                .iter()
                .filter(|r| r.config == config.name && r.final_val().is_some())
                .filter_map(|r| r.metrics.as_ref())
                .collect();
            if good.is_empty() {
                return None;
            }
            let mut by_step: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
            for m in &good {
                for &(step, cpu, iou) in &m.curve {
                    by_step.entry(step).or_default().push((cpu, iou));
                }
            }
            let mut points: Vec<(f64, f64)> = by_step
                .values()
                .filter(|v| v.len() == good.len())
                .map(|v| {
                    let (cpu, iou): (Vec<f64>, Vec<f64>) = v.iter().copied().unzip();
                    (median(&cpu), median(&iou))
                })
                .collect();
            let final_cpu: Vec<f64> = good.iter().map(|m| m.cpu_minutes).collect();
            let final_iou: Vec<f64> = good
                .iter()
                .filter_map(|m| m.final_val.map(|v| v[1]))
                .collect();
            points.push((median(&final_cpu), median(&final_iou)));
            Some(ValidationCurve {
                config: config.name.clone(),
                points,
            })
        })
        .collect()
}

/// The validation object IoU of one configuration against training time.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationCurve {
    /// The configuration's name.
    pub config: String,
    /// `(CPU-minutes, object IoU)`, medians over the good seeds.
    pub points: Vec<(f64, f64)>,
}

/// Runs `train_pets` once with `args`, `RAYON_NUM_THREADS=1`, stdout and
/// stderr to `dir/log.txt`, and waits for it. A previous incomplete
/// `metrics.jsonl` in `dir` is moved to `metrics.incomplete.jsonl` first, so
/// the new run's records are not appended to it.
pub fn execute_run(bin: &Path, args: &[OsString], dir: &Path) -> RunStatus {
    let log = dir.join("log.txt");
    let failed = |reason: String| RunStatus::Failed {
        reason,
        log: log.clone(),
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        return failed(format!("cannot create {}: {e}", dir.display()));
    }
    let metrics = dir.join("metrics.jsonl");
    if metrics.exists() {
        if let Err(e) = std::fs::rename(&metrics, dir.join("metrics.incomplete.jsonl")) {
            return failed(format!("cannot move {} aside: {e}", metrics.display()));
        }
    }
    let streams = File::create(&log).and_then(|f| Ok((f.try_clone()?, f)));
    let (stdout, stderr) = match streams {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot create {}: {e}", log.display())),
    };
    let status = Command::new(bin)
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status();
    match status {
        Err(e) => failed(format!("cannot start {}: {e}", bin.display())),
        Ok(s) if !s.success() => failed(format!("exited with {s}")),
        Ok(_) if !has_final_val(&metrics) => {
            failed(format!("{} has no final_val record", metrics.display()))
        }
        Ok(_) => RunStatus::Ok,
    }
}

/// What a finished sweep found.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepReport {
    /// Every run, in (configuration, seed) order.
    pub runs: Vec<RunRecord>,
    /// The configurations, ranked.
    pub ranking: Vec<ConfigSummary>,
    /// The ranked table as Markdown (also in `OUT/sweep.md`).
    pub table: String,
    /// The validation curve of every configuration with a good seed
    /// ([`validation_curves`]).
    pub curves: Vec<ValidationCurve>,
}

/// Runs the sweep: every `(configuration, seed)` not already complete, at
/// most `options.lanes` at a time, printing a line as each run starts and
/// ends; then reads every run's metrics and writes `OUT/sweep.md` and
/// `OUT/sweep.csv`. A failed run is reported and the
/// sweep goes on. Errors: invalid options or configurations, an output that
/// cannot be written.
pub fn run_sweep(options: &SweepOptions, configs: &[SweepConfig]) -> Result<SweepReport> {
    options.validate()?;
    let mut names = HashSet::new();
    if let Some(dup) = configs.iter().find(|c| !names.insert(c.name.as_str())) {
        return Err(EvalError::invalid(
            "sweep configuration",
            &dup.name,
            "the name is used twice",
        ));
    }
    std::fs::create_dir_all(&options.out).map_err(|e| EvalError::io(&options.out, e))?;
    let jobs: Vec<(&SweepConfig, u64)> = configs
        .iter()
        .flat_map(|c| options.seeds.iter().map(move |&s| (c, s)))
        .collect();
    let total = jobs.len();
    let statuses = run_queue(jobs.clone(), options.lanes, |(config, seed)| {
        let dir = options.run_dir(config, seed);
        let label = format!("{} seed {seed}", config.name);
        if has_final_val(&dir.join("metrics.jsonl")) {
            println!("{label}: already complete, not run again");
            return RunStatus::Ok;
        }
        println!("{label}: started, log {}", dir.join("log.txt").display());
        let status = execute_run(&options.train_bin, &options.run_args(config, seed), &dir);
        match &status {
            RunStatus::Ok => println!("{label}: done"),
            RunStatus::Failed { reason, log } => {
                println!("{label}: FAILED ({reason}); see {}", log.display())
            }
        }
        status
    });
    let runs: Vec<RunRecord> = jobs
        .iter()
        .zip(statuses)
        .map(|(&(config, seed), status)| {
            let metrics_path = options.run_dir(config, seed).join("metrics.jsonl");
            let metrics = read_run_metrics(&metrics_path, options.at);
            let status = match (status, &metrics) {
                (RunStatus::Ok, Err(e)) => RunStatus::Failed {
                    reason: e.to_string(),
                    log: options.run_dir(config, seed).join("log.txt"),
                },
                (status, _) => status,
            };
            RunRecord {
                config: config.name.clone(),
                seed,
                status,
                metrics: metrics.ok(),
            }
        })
        .collect();
    let ranking = rank(configs, &runs);
    let ok = runs.iter().filter(|r| r.status == RunStatus::Ok).count();
    let table = format!(
        "{}\n{ok} of {total} runs complete; IoUs are final validation IoUs at CA step {}, \
         medians over seeds; {} CPU-minutes per run.\n",
        markdown_table(&ranking, options.at),
        options.at,
        options.cpu_minutes
    );
    let write = |name: &str, text: &str| {
        let path = options.out.join(name);
        std::fs::write(&path, text).map_err(|e| EvalError::io(&path, e))
    };
    write("sweep.md", &table)?;
    write("sweep.csv", &csv_rows(&runs))?;
    Ok(SweepReport {
        curves: validation_curves(configs, &runs),
        runs,
        ranking,
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cellseg-sweep-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn p() -> &'static Path {
        Path::new("sweep.txt")
    }

    #[test]
    fn configs_parse_with_comments_and_blanks() {
        let text = "# recipes\n\nbase\n  lr.high_1  --lr 1e-3   --steps 50\n# end\n";
        let configs = parse_configs(text, p()).expect("parses");
        assert_eq!(
            configs,
            vec![
                SweepConfig {
                    name: "base".into(),
                    args: vec![],
                    line: 3
                },
                SweepConfig {
                    name: "lr.high_1".into(),
                    args: vec!["--lr".into(), "1e-3".into(), "--steps".into(), "50".into()],
                    line: 4
                },
            ]
        );
    }

    #[test]
    fn config_errors_name_file_and_line() {
        for (text, line, what) in [
            ("a --lr 1\nb/c --lr 2\n", 2, "b/c"),
            ("a\n..\n", 2, "only dots"),
            ("a --lr 1\n\na --lr 2\n", 3, "already used on line 1"),
            ("a --seed 3\n", 1, "--seed"),
            ("a --out=x\n", 1, "--out=x"),
        ] {
            let err = parse_configs(text, p()).unwrap_err().to_string();
            assert!(err.contains(&format!("sweep.txt:{line}")), "{err}");
            assert!(err.contains(what), "{err}");
        }
        let err = parse_configs("# nothing\n", p()).unwrap_err().to_string();
        assert!(err.contains("no configuration"), "{err}");
    }

    #[test]
    fn seeds_parse_and_reject_repeats() {
        assert_eq!(parse_seeds("0,1, 7").expect("seeds"), vec![0, 1, 7]);
        assert!(parse_seeds("0,0")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(parse_seeds("0,x")
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
        assert!(parse_seeds("").is_err());
    }

    #[test]
    fn options_validate_names_the_option() {
        let dir = temp_dir("options");
        let bin = dir.join("train_pets");
        std::fs::write(&bin, "").expect("fake binary file");
        let good = SweepOptions::new(bin, "runs/sweep");
        assert!(good.validate().is_ok());
        let cases = [
            (
                SweepOptions {
                    cpu_minutes: 0.0,
                    ..good.clone()
                },
                "--cpu-minutes",
            ),
            (
                SweepOptions {
                    lanes: 0,
                    ..good.clone()
                },
                "--lanes",
            ),
            (
                SweepOptions {
                    seeds: vec![],
                    ..good.clone()
                },
                "--seeds",
            ),
            (
                SweepOptions {
                    common: vec!["--data".into(), "x".into()],
                    ..good.clone()
                },
                "--data",
            ),
            (
                SweepOptions {
                    train_bin: dir.join("missing"),
                    ..good.clone()
                },
                "cargo build --release --example train_pets",
            ),
        ];
        for (options, what) in cases {
            let err = options.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn run_args_put_the_sweep_flags_first() {
        let options = SweepOptions {
            data: Some("pets".into()),
            cpu_minutes: 2.5,
            common: vec!["--steps".into(), "9".into()],
            ..SweepOptions::new("train_pets", "runs/s")
        };
        let config = SweepConfig {
            name: "fast".into(),
            args: vec!["--lr".into(), "1e-3".into()],
            line: 1,
        };
        let args: Vec<String> = options
            .run_args(&config, 3)
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        let out = Path::new("runs/s/fast/seed-3").display().to_string();
        assert_eq!(
            args,
            [
                "--data",
                "pets",
                "--cpu-minutes",
                "2.5",
                "--seed",
                "3",
                "--out",
                &out,
                "--steps",
                "9",
                "--lr",
                "1e-3"
            ]
        );
    }

    #[test]
    fn queue_keeps_order_and_respects_lanes() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let results = run_queue((0..12).collect(), 3, |i: u64| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 10
        });
        assert_eq!(results, (0..12).map(|i| i * 10).collect::<Vec<_>>());
        let peak = peak.into_inner();
        assert!((1..=3).contains(&peak), "peak {peak}");
        assert!(run_queue(Vec::<u8>::new(), 2, |x| x).is_empty());
    }

    #[test]
    fn median_ignores_non_finite_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[0.3, f64::NAN, 0.1, 0.2]), (0.1, 0.3));
    }

    fn iou(background: f64, object: Option<f64>, boundary: f64) -> serde_json::Value {
        json!({"background": background, "object": object, "boundary": boundary})
    }

    /// A metrics file like train_pets writes: steps 1..=steps, periodic
    /// validation at every second step, then the final record (unless
    /// `finished` is false).
    fn write_metrics(path: &Path, steps: u64, object: f64, finished: bool) {
        let mut text = String::new();
        for step in 1..=steps {
            let mut r = json!({"step": step, "loss": 1.0 / step as f64, "seconds": 0.1,
                "elapsed": step as f64, "cpu_seconds": 6.0 * step as f64, "lr": 3e-4});
            if step % 2 == 0 {
                r["val"] = json!({"10": iou(0.5, Some(0.0), 0.0),
                    "40": iou(0.8, Some(object * step as f64 / steps as f64), 0.2)});
                r["val_samples"] = json!(8);
            }
            text.push_str(&format!("{r}\n"));
        }
        if finished {
            // The final record as the Learner writes it.
            let final_val = json!({"40": iou(0.9, Some(object), 0.3), "80": iou(0.1, None, 0.1)});
            let r = ca_model::FinalRecord {
                step: steps,
                train_seconds: 60.0,
                train_cpu_seconds: 6.0 * steps as f64 + 3.0,
                final_val: Some(serde_json::from_value(final_val).expect("IoU by step")),
                val_samples: Some(8),
                ..ca_model::FinalRecord::default()
            };
            let r = serde_json::to_string(&r).expect("final record");
            text.push_str(&format!("{r}\n"));
        }
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write metrics");
    }

    #[test]
    fn metrics_give_steps_cpu_final_and_curve() {
        let dir = temp_dir("metrics");
        let path = dir.join("metrics.jsonl");
        write_metrics(&path, 4, 0.6, true);
        let m = read_run_metrics(&path, 40).expect("reads");
        assert_eq!(m.steps, 4);
        assert!((m.cpu_minutes - 27.0 / 60.0).abs() < 1e-12);
        assert_eq!(m.final_val, Some([0.9, 0.6, 0.3]));
        assert_eq!(m.curve, vec![(2, 0.2, 0.3), (4, 0.4, 0.6)]);
        assert!(has_final_val(&path));
        // A null IoU reads as NaN; a missing CA step gives no curve.
        let at80 = read_run_metrics(&path, 80).expect("reads");
        let v = at80.final_val.expect("final record");
        assert!(v[1].is_nan() && v[0] == 0.1);
        assert!(at80.curve.is_empty());
        // Unfinished: no final_val; a torn last line is left out, a torn
        // middle line is an error naming the line.
        write_metrics(&path, 3, 0.6, false);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{\"step\": 4, \"lo");
        std::fs::write(&path, &text).expect("write");
        let m = read_run_metrics(&path, 40).expect("torn last line is ignored");
        assert_eq!((m.steps, m.final_val), (3, None));
        assert!(!has_final_val(&path));
        std::fs::write(&path, format!("{{oops\n{text}\n")).expect("write");
        let err = read_run_metrics(&path, 40).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:1"), "{err}");
        assert!(!has_final_val(&dir.join("absent.jsonl")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn config(name: &str, args: &[&str]) -> SweepConfig {
        SweepConfig {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            line: 1,
        }
    }

    /// Runs from synthetic metrics files: `(config, seed, final object IoU
    /// or None for a failed run)`.
    fn synthetic_runs(dir: &Path, spec: &[(&str, u64, Option<f64>)]) -> Vec<RunRecord> {
        spec.iter()
            .map(|&(name, seed, object)| {
                let path = dir.join(name).join(format!("seed-{seed}/metrics.jsonl"));
                write_metrics(&path, 4 + seed, object.unwrap_or(0.0), object.is_some());
                let status = match object {
                    Some(_) => RunStatus::Ok,
                    None => RunStatus::Failed {
                        reason: "exited with exit status: 1".into(),
                        log: path.with_file_name("log.txt"),
                    },
                };
                RunRecord {
                    config: name.into(),
                    seed,
                    status,
                    metrics: Some(read_run_metrics(&path, 40).expect("reads")),
                }
            })
            .collect()
    }

    #[test]
    fn ranking_uses_the_median_object_iou_then_the_mean() {
        let dir = temp_dir("ranking");
        let configs = [
            config("low", &["--lr", "1e-4"]),
            config("high", &["--lr", "1e-3"]),
            config("broken", &["--bad"]),
            config("mid", &[]),
        ];
        let runs = synthetic_runs(
            &dir,
            &[
                ("low", 0, Some(0.2)),
                ("low", 1, Some(0.3)),
                ("low", 2, Some(0.9)),
                ("high", 0, Some(0.5)),
                ("high", 1, Some(0.7)),
                ("high", 2, None),
                ("broken", 0, None),
                ("mid", 0, Some(0.4)),
            ],
        );
        let ranking = rank(&configs, &runs);
        let order: Vec<&str> = ranking.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["high", "mid", "low", "broken"]);
        let high = &ranking[0];
        assert_eq!((high.done, high.failed), (2, 1));
        assert!((high.object - 0.6).abs() < 1e-12);
        assert_eq!(high.object_range, (0.5, 0.7));
        assert_eq!((high.background, high.boundary), (0.9, 0.3));
        assert_eq!(high.steps, 4.5);
        assert_eq!(ranking[2].object, 0.3);
        assert!(ranking[3].object.is_nan());

        // The table ranks all four; the failed config shows dashes.
        let table = markdown_table(&ranking, 40);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].starts_with("| 1 | high | `--lr 1e-3` | 2/1 | 0.600 (0.500-0.700) |"));
        assert!(
            rows[1].starts_with("| 2 | mid | (defaults) | 1/0 |"),
            "{}",
            rows[1]
        );
        assert!(
            rows[3].starts_with("| 4 | broken | `--bad` | 0/1 | - | - | - | - | - |"),
            "{}",
            rows[3]
        );

        // The CSV has one row per run, failed runs without IoUs.
        let csv = csv_rows(&runs);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + runs.len());
        assert_eq!(
            lines[4],
            "high,0,4,0.450000,0.900000,0.500000,0.300000,0.566667,ok"
        );
        assert_eq!(lines[6], "high,2,6,0.600000,,,,,failed");

        // The curves: one line per config with a good run, the periodic
        // points every good seed has (steps 2 and 4), then the final point.
        let curves = validation_curves(&configs, &runs);
        let names: Vec<&str> = curves.iter().map(|c| c.config.as_str()).collect();
        assert_eq!(names, ["low", "high", "mid"]);
        let high_points = &curves[1].points;
        assert_eq!(high_points.len(), 3);
        assert!((high_points[2].1 - 0.6).abs() < 1e-12);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ties_break_on_the_mean_iou() {
        let dir = temp_dir("ties");
        let configs = [config("a", &[]), config("b", &[])];
        let mut runs = synthetic_runs(&dir, &[("a", 0, Some(0.5)), ("b", 0, Some(0.5))]);
        if let Some(m) = runs[1].metrics.as_mut() {
            m.final_val = Some([0.95, 0.5, 0.3]);
        }
        let order: Vec<String> = rank(&configs, &runs).into_iter().map(|s| s.name).collect();
        assert_eq!(order, ["b", "a"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_run_that_cannot_start_is_failed_with_its_log() {
        let dir = temp_dir("no-binary");
        let run_dir = dir.join("a/seed-0");
        let status = execute_run(&dir.join("no-such-binary"), &[], &run_dir);
        match status {
            RunStatus::Failed { reason, log } => {
                assert!(reason.contains("cannot start"), "{reason}");
                assert_eq!(log, run_dir.join("log.txt"));
                assert!(log.is_file());
            }
            RunStatus::Ok => panic!("a missing binary cannot succeed"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
