//! Recipe sweep: trains every configuration of a file with several seeds
//! under one CPU-time budget each, at most `--lanes` runs at a time, and
//! ranks the configurations by the median final validation object IoU.
//!
//! `cargo build --release --examples` first (the sweep runs the
//! `train_pets` binary beside its own), then
//!
//! `cargo run --release --example sweep -- --configs recipes.txt --seeds 0,1 --cpu-minutes 10 --lanes 2 --out runs/sweep-recipes -- --size 48`
//!
//! The file has one configuration per line, `NAME --flag value ...`; the
//! arguments after `--` go to every run. Writes `OUT/NAME/seed-S/` per run
//! (with `log.txt`), `OUT/sweep.md`, `OUT/sweep.csv` and `OUT/curves.png`,
//! and prints the table. Complete runs are not run again, so the same
//! command continues an interrupted sweep. See `ca_eval::sweep`.

use std::path::PathBuf;

use crate::ca_eval::sweep::{parse_seeds, read_configs, run_sweep, SweepOptions};
use crate::report::sweep_plot;
use clap::Parser;

/// The flags (`--help` lists them).
#[derive(Parser, Debug)]
#[command(about = "Run train_pets over configurations and seeds, and rank the configurations")]
pub struct Args {
    /// The configuration file: `NAME --flag value ...` per line.
    #[arg(long)]
    configs: PathBuf,
    /// Comma-separated seeds, each configuration runs with every one.
    #[arg(long, default_value = "0,1")]
    seeds: String,
    /// CPU-time budget of each run, in minutes.
    #[arg(long, default_value_t = 10.0)]
    cpu_minutes: f64,
    /// Runs at a time.
    #[arg(long, default_value_t = 2)]
    lanes: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Dataset root passed to every run (else train_pets's default).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The CA step whose IoU ranks the configurations.
    #[arg(long, default_value_t = crate::ca_core::DEFAULT_STEPS)]
    at: usize,
    /// The train_pets binary [default: train_pets beside this executable].
    #[arg(long)]
    train_bin: Option<PathBuf>,
    /// Arguments given to every run, after `--`.
    #[arg(last = true, allow_hyphen_values = true)]
    common: Vec<String>,
}

/// Runs the tool on parsed flags, each run by the `train_pets` built
/// beside this program unless `--train-bin` names another; on an error
/// prints it and exits with 1.
pub fn main_args(args: Args) {
    let beside = |name: &str| -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
        Ok(std::env::current_exe()?
            .parent()
            .ok_or("the executable has no parent folder")?
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
    };
    crate::error::exit_on_error(beside("train_pets").and_then(|bin| run(args, bin, Vec::new())));
}

/// Runs the sweep with every run executing `train_bin` with `prefix`
/// before its own arguments (`cellseg` and `train`), unless `--train-bin`
/// names another program.
pub fn run(
    args: Args,
    train_bin: std::path::PathBuf,
    prefix: Vec<std::ffi::OsString>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (train_bin, train_prefix) = match args.train_bin {
        Some(path) => (path, Vec::new()),
        None => (train_bin, prefix),
    };
    let options = SweepOptions {
        train_bin,
        train_prefix,
        data: args.data,
        cpu_minutes: args.cpu_minutes,
        seeds: parse_seeds(&args.seeds)?,
        lanes: args.lanes,
        out: args.out,
        at: args.at,
        common: args.common,
    };
    let configs = read_configs(&args.configs)?;
    let report = run_sweep(&options, &configs)?;
    let plot_path = options.out.join("curves.png");
    sweep_plot(&report.curves, options.at).save(&plot_path)?;
    println!("\n{}", report.table);
    println!(
        "wrote {}, {} and {}",
        options.out.join("sweep.md").display(),
        options.out.join("sweep.csv").display(),
        plot_path.display()
    );
    Ok(())
}

crate::cli::tool!(Args);
