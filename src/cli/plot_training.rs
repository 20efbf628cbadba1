//! Plots training curves of one or more `train_pets` runs: the smoothed
//! loss and the periodic validation IoU (test IoU for older runs) after `--ca-step` CA steps.
//!
//! `cargo run --release --example plot_training -- --run main=runs/pets48/metrics.jsonl --out docs/img/training`
//! writes `OUT-loss.png` and `OUT-iou.png`.

use std::path::PathBuf;

use crate::ca_viz::curves::{read_metrics, training_plots};
use clap::Parser;

/// The flags (`--help` lists them).
#[derive(Parser, Debug)]
#[command(about = "Plot loss and IoU curves of train_pets runs")]
pub struct Args {
    /// A run as NAME=PATH to its metrics.jsonl; repeat for several runs.
    #[arg(long = "run", required = true)]
    runs: Vec<String>,
    /// The CA step whose IoU is plotted.
    #[arg(long, default_value_t = crate::ca_core::DEFAULT_STEPS)]
    ca_step: usize,
    /// Output prefix: writes PREFIX-loss.png and PREFIX-iou.png.
    #[arg(long)]
    out: PathBuf,
}

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_args(args: Args) {
    crate::error::exit_on_error(run(args));
}

crate::cli::tool!(Args);

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = Vec::new();
    for spec in &args.runs {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("--run '{spec}': expected NAME=PATH"))?;
        runs.push((
            name.to_string(),
            read_metrics(PathBuf::from(path).as_path(), args.ca_step)?,
        ));
    }
    let (loss, iou) = training_plots(&runs, args.ca_step);
    let prefix = args.out.display().to_string();
    for (plot, suffix) in [(loss, "loss"), (iou, "iou")] {
        let path = PathBuf::from(format!("{prefix}-{suffix}.png"));
        plot.save(&path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
