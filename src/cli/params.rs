//! Prints the parameter count of every Table 1 configuration of the paper
//! (state/hidden 32/48, 48/72, 64/96; depthwise and 3x3; norms none, batch,
//! instance). The counting rule is in `docs/PARAMS.md`.
//!
//! `cargo run --release --example params [-- --device cpu|cuda[:N]]`

use crate::device::parse_device;
use ca_core::{CellConfig, CellRule, Norm, Perception};
use candle_core::Device;
use clap::Parser;

/// Parameter counts of the Table 1 variants, one line each.
#[derive(Parser)]
pub struct Args {
    /// Where the rules are built: cpu, cuda or cuda:N (CUDA needs a
    /// `--features cuda` build). The counts do not depend on it.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
}

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_args(args: Args) {
    crate::error::exit_on_error(run(args));
}

crate::cli::tool!(Args);

fn run(args: Args) -> Result<(), ca_core::CoreError> {
    for (state, hidden) in [(32, 48), (48, 72), (64, 96)] {
        for perception in [Perception::Depthwise, Perception::Conv3x3] {
            for norm in [Norm::None, Norm::Batch, Norm::Instance] {
                let config = CellConfig {
                    state_channels: state,
                    hidden_channels: hidden,
                    perception,
                    norm,
                    ..CellConfig::default()
                };
                let count = CellRule::new(config, 0, &args.device)?.param_count();
                println!(
                    "variant={} state={state} hidden={hidden} norm={} params={} \
                     reset_gate={} classifier={}",
                    perception.name(),
                    norm.name(),
                    count.rule,
                    count.reset_gate,
                    count.classifier
                );
            }
        }
    }
    Ok(())
}
