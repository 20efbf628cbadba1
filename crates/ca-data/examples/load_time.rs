//! Prints how long loading the shared Oxford-IIIT Pet subset takes at 48x48
//! and 96x96: "cold" is decoding and resizing every listed pair (files
//! already in the OS page cache), "cached" is building every batch of one
//! epoch (batch 32, random flip) from the in-memory cache.
//!
//! ```text
//! cargo run -p ca-data --release --example load_time [-- --root DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ca_data::{Augment, DataError, LoadOptions, PetsDataset, Split};
use candle_core::Device;
use clap::Parser;

/// Time loading and batching of an Oxford-IIIT Pet layout.
#[derive(Debug, Parser)]
struct Args {
    /// Dataset root (default: shared/data/oxford-pets-160 beside the repository).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Batch size of the cached epoch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Epochs averaged for the cached figure.
    #[arg(long, default_value_t = 10)]
    epochs: u64,
}

fn run(args: &Args) -> Result<(), DataError> {
    let root = args.root.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/oxford-pets-160")
    });
    println!("dataset: {}", root.display());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores available: {cores}");
    println!(
        "{:>5}  {:<8}  {:>7}  {:>12}  {:>22}",
        "size", "split", "samples", "cold load ms", "cached epoch ms (b=32)"
    );
    for size in [48, 96] {
        for split in [Split::TrainVal, Split::Test] {
            let start = Instant::now();
            let ds = PetsDataset::open(&root, split, &LoadOptions::square(size))?;
            let cold = start.elapsed();
            let start = Instant::now();
            for epoch in 0..args.epochs {
                for batch in
                    ds.epoch_batches(args.batch_size, 7, epoch, Augment::default(), &Device::Cpu)?
                {
                    batch?;
                }
            }
            let cached = start.elapsed() / args.epochs.max(1) as u32;
            println!(
                "{:>5}  {:<8}  {:>7}  {:>12.1}  {:>22.2}",
                format!("{size}"),
                format!("{split:?}"),
                ds.len(),
                cold.as_secs_f64() * 1e3,
                cached.as_secs_f64() * 1e3,
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
