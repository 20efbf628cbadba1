//! Prints the parameter count of every Table 1 configuration of the paper
//! (state/hidden 32/48, 48/72, 64/96; depthwise and 3x3; norms none, batch,
//! instance). The counting rule is in `docs/PARAMS.md`.
//!
//! `cargo run --release --example params`

use ca_core::{CellConfig, CellRule, Norm, Perception};
use candle_core::Device;

fn main() -> Result<(), ca_core::CoreError> {
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
                let count = CellRule::new(config, 0, &Device::Cpu)?.param_count();
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
