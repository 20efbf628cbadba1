//! Times the cell-step cases of `benches/cell_step.rs` and prints one
//! machine-readable line per case (read by `benches/compare/torch_step.py`):
//!
//! ```text
//! STEP case=train/conv3x3-48x72/b8/48x48 backend=fused reps=5 median_s=0.41 min_s=0.40 cpu_s=0.80 updates_per_s=4.5e5
//! ```
//!
//! Usage: `cargo run --release --example step_timing -- [--case SUBSTRING]
//! [--backend fused|reference|both] [--reps N] [--device cpu|cuda[:N]]`
//! (the fused backend is CPU only: on CUDA use `--backend reference`). Cases: `forward/V/bB/HxW`
//! and `train/V/bB/48x48` (K = 10 unroll, backward, the trainer's Adam),
//! `V` a Table 1 variant such as `conv3x3-48x72`. Each case: a warm-up
//! (at least one run and 0.2 s), then `--reps` timed runs (the loop of
//! `benches/common/timing.rs`).
//!
//! `--peak` measures the fp32 rate of a large candle GEMM; `--fma-peak
//! [--threads N]` the machine's fp32 FMA peak from a plain loop of
//! independent FMAs on N threads at once, printing
//! `PEAK fma threads=N gflops=... isa=...`. `--cost-model` times the
//! training step of both 48/72 cells at batch 1, 8, 32 on 48², 96² and
//! 192² grids, one `COST case=train/V/bB/GxG ... cpu_ns_per_update=...`
//! line each (the table of `docs/RESULTS.md`).

use crate::cli::{step_cases, timing};

use std::time::Instant;

use crate::device::parse_device;
use ca_core::StepBackend;
use candle_core::Device;
use clap::Parser;
use step_cases::{backend_name, variant_name, variants, Forward, Train, UNROLL};
use timing::{measure, Timing};

/// CA step timing of both cells, forward and training, with a line per case.
#[derive(Parser)]
pub struct Args {
    /// Only cases whose id contains this.
    #[arg(long, default_value = "")]
    case: String,
    /// fused, reference or both.
    #[arg(long, default_value = "fused")]
    backend: String,
    /// Timed repetitions per case (after a warm-up of at least one run and 0.2 s).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Instead of the cases, measure the machine's fp32 GEMM rate: a
    /// 2048 x 2048 x 2048 candle matmul (on CPU the `gemm` crate, all
    /// threads; on CUDA cuBLAS).
    #[arg(long)]
    peak: bool,
    /// Instead of the cases, measure the machine's fp32 FMA peak: a plain
    /// loop of independent vector FMAs (AVX-512 where the CPU has it, else
    /// AVX2 + FMA) on `--threads` threads at once.
    #[arg(long)]
    fma_peak: bool,
    /// Instead of the cases, the cost model: CPU seconds of one training
    /// step (K = 10 unrolled steps, backward, Adam) of the two 48/72 cells
    /// at batch 1, 8 and 32 on grids 48x48, 96x96 and 192x192, one `COST`
    /// line each (`cpu_ns_per_update`: CPU nanoseconds per cell update of
    /// the unroll, flat where the cost is linear in the cells).
    #[arg(long)]
    cost_model: bool,
    /// Threads of `--fma-peak` (default: all cores). The cases use rayon's
    /// pool: set `RAYON_NUM_THREADS` for them.
    #[arg(long)]
    threads: Option<usize>,
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

fn report(id: &str, backend: StepBackend, updates: usize, t: &Timing) {
    let median = t.median();
    println!(
        "STEP case={id} backend={} reps={} median_s={median:.6} min_s={:.6} cpu_s={:.6} updates_per_s={:.4e}",
        backend_name(backend),
        t.reps(),
        t.min(),
        t.cpu_s,
        updates as f64 / median
    );
}

/// Prints the `COST` lines of `--cost-model` (see [`Args::cost_model`]).
fn cost_model(reps: usize, dev: &Device) {
    let cells48 = variants()
        .into_iter()
        .filter(|c| (c.state_channels, c.hidden_channels) == (48, 72));
    for config in cells48 {
        let v = variant_name(&config);
        for side in [48, 96, 192] {
            for b in [1, 8, 32] {
                let mut t = Train::new(&config, StepBackend::Fused, (b, side, side), dev);
                let timed = measure(1, reps, dev, || -> candle_core::Result<()> {
                    t.run();
                    Ok(())
                })
                .unwrap_or_else(|e| {
                    eprintln!("cost model {v} b{b} {side}x{side}: {e}");
                    std::process::exit(1);
                });
                let updates = (b * side * side * UNROLL) as f64;
                println!(
                    "COST case=train/{v}/b{b}/{side}x{side} reps={} cpu_s={:.4} median_s={:.4} cpu_ns_per_update={:.1}",
                    timed.reps(),
                    timed.cpu_s,
                    timed.median(),
                    timed.cpu_s / updates * 1e9
                );
            }
        }
    }
}

/// The machine's fp32 FMA peak: a loop of independent vector FMAs per
/// thread, so that it is bound by the FMA ports and not by latency or
/// memory.
mod fma {
    use std::hint::black_box;
    use std::sync::Barrier;
    use std::time::Instant;

    /// Independent accumulators per thread: with a 4-cycle FMA latency and
    /// two FMA ports, at least 8 are needed to keep both ports busy.
    const ACC: usize = 12;

    /// A kernel: runs its loop of `ACC` FMAs per iteration for the given
    /// number of iterations and returns a sum of the accumulators (so that
    /// the loop is not optimized away).
    pub type Kernel = fn(u64) -> f32;

    /// The widest kernel this CPU runs, its name and fp32 lanes per FMA.
    pub fn kernel() -> (Kernel, &'static str, usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return (x86::avx512, "avx512f", 16);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return (x86::avx2, "avx2+fma", 8);
            }
        }
        (scalar, "scalar", 1)
    }

    /// `ACC` scalar `mul_add` chains (where no vector FMA is available).
    fn scalar(iters: u64) -> f32 {
        let (a, b) = (black_box(0.999_999_f32), black_box(1e-6_f32));
        let mut acc = [0f32; ACC];
        for (i, x) in acc.iter_mut().enumerate() {
            *x = black_box(i as f32);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = x.mul_add(a, b);
            }
        }
        acc.iter().sum()
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use super::ACC;
        use std::arch::x86_64::*;
        use std::hint::black_box;

        /// `acc = acc * a + b` (a just below 1, so that the values stay
        /// normal) on each of `ACC` accumulators, `iters` times.
        macro_rules! fma_loop {
            ($iters:expr, $set1:ident, $fmadd:ident, $add:ident, $ty:ty, $reduce:expr) => {{
                let a = $set1(black_box(0.999_999_f32));
                let b = $set1(black_box(1e-6_f32));
                let mut acc: [$ty; ACC] = [$set1(0.0); ACC];
                for (i, x) in acc.iter_mut().enumerate() {
                    *x = $set1(black_box(i as f32));
                }
                for _ in 0..$iters {
                    // A fixed-size loop: unrolled, the accumulators live in
                    // registers.
                    for x in acc.iter_mut() {
                        *x = $fmadd(*x, a, b);
                    }
                }
                let mut sum = acc[0];
                for x in &acc[1..] {
                    sum = $add(sum, *x);
                }
                $reduce(sum)
            }};
        }

        pub fn avx512(iters: u64) -> f32 {
            assert!(is_x86_feature_detected!("avx512f"));
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { avx512_impl(iters) }
        }

        #[target_feature(enable = "avx512f")]
        fn avx512_impl(iters: u64) -> f32 {
            fma_loop!(
                iters,
                _mm512_set1_ps,
                _mm512_fmadd_ps,
                _mm512_add_ps,
                __m512,
                _mm512_reduce_add_ps
            )
        }

        pub fn avx2(iters: u64) -> f32 {
            assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { avx2_impl(iters) }
        }

        #[target_feature(enable = "avx2,fma")]
        fn avx2_impl(iters: u64) -> f32 {
            fma_loop!(
                iters,
                _mm256_set1_ps,
                _mm256_fmadd_ps,
                _mm256_add_ps,
                __m256,
                |v: __m256| {
                    let mut lanes = [0f32; 8];
                    // SAFETY: `lanes` holds 8 floats.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
                    lanes.iter().sum::<f32>()
                }
            )
        }
    }

    /// Wall seconds of `iters` iterations of `kernel` on each of `threads`
    /// threads started together (thread start-up outside the timing).
    fn trial(kernel: Kernel, threads: usize, iters: u64) -> f64 {
        let start = Barrier::new(threads + 1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        black_box(kernel(black_box(iters)))
                    })
                })
                .collect();
            start.wait();
            let t = Instant::now();
            for h in handles {
                h.join().expect("FMA thread");
            }
            t.elapsed().as_secs_f64()
        })
    }

    /// The best fp32 GFLOP/s (2 flops per FMA lane) of a few trials of
    /// about 0.3 s each on `threads` threads, and the kernel's name.
    pub fn peak(threads: usize) -> (f64, &'static str) {
        let (kernel, name, lanes) = kernel();
        // Calibrate (and bring the clocks up): grow until a trial takes
        // 50 ms, then size the trials to 0.3 s.
        let mut iters = 1u64 << 16;
        let mut secs = trial(kernel, threads, iters);
        while secs < 0.05 {
            iters *= 2;
            secs = trial(kernel, threads, iters);
        }
        let iters = ((iters as f64) * 0.3 / secs).ceil() as u64;
        let flops = 2.0 * (lanes * ACC) as f64 * iters as f64 * threads as f64;
        let best = (0..3)
            .map(|_| trial(kernel, threads, iters))
            .fold(f64::INFINITY, f64::min);
        (flops / best / 1e9, name)
    }
}

/// Runs the tool on parsed flags.
pub fn main_args(args: Args) {
    // Reuse the freed step buffers instead of faulting them in every step.
    crate::ca_core::alloc::retain_freed_memory();
    if args.peak {
        if let Err(e) = peak(args.reps.max(1), &args.device) {
            eprintln!("peak measurement failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.fma_peak {
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            eprintln!("--threads 0: must be at least 1");
            std::process::exit(2);
        }
        let (gflops, isa) = fma::peak(threads);
        println!("PEAK fma threads={threads} gflops={gflops:.1} isa={isa}");
        return;
    }
    if args.cost_model {
        cost_model(args.reps.max(1), &args.device);
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
                // A warm-up (at least one run and 0.2 s), then `reps` timed ones.
                let timed = if train {
                    let mut t = Train::new(&config, backend, shape, dev);
                    measure(1, reps, dev, || -> candle_core::Result<()> {
                        t.run();
                        Ok(())
                    })
                } else {
                    let f = Forward::new(&config, backend, shape, dev);
                    measure(1, reps, dev, || -> candle_core::Result<()> {
                        f.run();
                        Ok(())
                    })
                };
                let timed = timed.unwrap_or_else(|e| {
                    eprintln!("{id}: {e}");
                    std::process::exit(1);
                });
                let updates = if train { cells * UNROLL } else { cells };
                report(&id, backend, updates, &timed);
            }
        }
    }
}

crate::cli::tool!(Args);
