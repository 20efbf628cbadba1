//! Times the cell-step cases of `benches/cell_step.rs` and prints one
//! machine-readable line per case (read by `benches/compare/torch_step.py`):
//!
//! ```text
//! STEP case=train/conv3x3-48x72/b8/48x48 backend=fused reps=5 median_s=0.41 min_s=0.40 updates_per_s=4.5e5
//! ```
//!
//! Usage: `cargo run --release --example step_timing -- [--case SUBSTRING]
//! [--backend fused|reference|both] [--reps N] [--device cpu|cuda[:N]]`
//! (the fused backend is CPU only: on CUDA use `--backend reference`). Cases: `forward/V/bB/HxW`
//! and `train/V/bB/48x48` (K = 10 unroll, backward, Adam), `V` a Table 1
//! variant such as `conv3x3-48x72`.

#[path = "../benches/common/step_cases.rs"]
mod step_cases;

use std::time::Instant;

use ca_core::StepBackend;
use candle_core::Device;
use cellseg::device::parse_device;
use clap::Parser;
use step_cases::{backend_name, variant_name, variants, Forward, Train, UNROLL};

#[derive(Parser)]
struct Args {
    /// Only cases whose id contains this.
    #[arg(long, default_value = "")]
    case: String,
    /// fused, reference or both.
    #[arg(long, default_value = "fused")]
    backend: String,
    /// Timed repetitions per case (after one warm-up).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Instead of the cases, measure the machine's fp32 GEMM rate: a
    /// 2048 x 2048 x 2048 candle matmul (on CPU the `gemm` crate, all
    /// threads; on CUDA cuBLAS).
    #[arg(long)]
    peak: bool,
    /// cpu, cuda or cuda:N (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
}

/// Prints the best fp32 rate of `reps` 2048^3 candle matmuls on `dev`.
fn peak(reps: usize, dev: &Device) -> candle_core::Result<()> {
    let n = 2048;
    let a = candle_core::Tensor::ones((n, n), candle_core::DType::F32, dev)?;
    let b = candle_core::Tensor::ones((n, n), candle_core::DType::F32, dev)?;
    a.matmul(&b)?;
    dev.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        a.matmul(&b)?;
        dev.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let flops = 2.0 * (n * n * n) as f64;
    println!(
        "PEAK gemm={n}x{n}x{n} best_s={best:.4} gflops={:.1}",
        flops / best / 1e9
    );
    Ok(())
}

/// CPU seconds this process has used so far (NaN where unknown).
fn cpu_seconds() -> f64 {
    cellseg::cpu_time::process_cpu_seconds().unwrap_or(f64::NAN)
}

fn report(id: &str, backend: StepBackend, updates: usize, (times, cpu): (&mut [f64], f64)) {
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "STEP case={id} backend={} reps={} median_s={median:.6} min_s={:.6} cpu_s={cpu:.3} updates_per_s={:.4e}",
        backend_name(backend),
        times.len(),
        times[0],
        updates as f64 / median
    );
}

/// Wall times of `reps` runs after a warm-up, and the mean CPU seconds
/// (all threads) per run.
fn time(reps: usize, mut f: impl FnMut()) -> (Vec<f64>, f64) {
    f();
    let cpu0 = cpu_seconds();
    let times = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    (times, (cpu_seconds() - cpu0) / reps as f64)
}

fn main() {
    let args = Args::parse();
    if args.peak {
        if let Err(e) = peak(args.reps.max(1), &args.device) {
            eprintln!("peak measurement failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let backends = match args.backend.as_str() {
        "fused" => vec![StepBackend::Fused],
        "reference" => vec![StepBackend::Reference],
        "both" => vec![StepBackend::Fused, StepBackend::Reference],
        other => {
            eprintln!("unknown backend '{other}' (expected fused, reference or both)");
            std::process::exit(2);
        }
    };
    if !args.device.is_cpu() && backends.contains(&StepBackend::Fused) {
        eprintln!("the fused backend is CPU only: on a GPU use --backend reference");
        std::process::exit(2);
    }
    let dev = &args.device;
    let reps = args.reps.max(1);
    for config in variants() {
        let v = variant_name(&config);
        let mut cases: Vec<(String, bool, (usize, usize, usize))> = Vec::new();
        for b in [1, 32] {
            cases.push((format!("forward/{v}/b{b}/48x48"), false, (b, 48, 48)));
        }
        cases.push((format!("forward/{v}/b1/512x512"), false, (1, 512, 512)));
        for b in [8, 32] {
            cases.push((format!("train/{v}/b{b}/48x48"), true, (b, 48, 48)));
        }
        for (id, train, shape) in cases {
            if !id.contains(&args.case) {
                continue;
            }
            let cells = shape.0 * shape.1 * shape.2;
            for &backend in &backends {
                let (mut times, cpu) = if train {
                    let mut t = Train::new(&config, backend, shape, dev);
                    time(reps, || {
                        t.run();
                    })
                } else {
                    let f = Forward::new(&config, backend, shape, dev);
                    time(reps, || {
                        f.run();
                        // CUDA kernels run asynchronously: wait for them.
                        dev.synchronize().expect("synchronize");
                    })
                };
                let updates = if train { cells * UNROLL } else { cells };
                report(&id, backend, updates, (&mut times, cpu));
            }
        }
    }
}
