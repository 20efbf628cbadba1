//! Criterion benches of one CA step, fused against reference, for every
//! Table 1 rule: `forward/<variant>/b<B>/<H>x<W>/<backend>` (one step,
//! batch 1 and 32 on 48x48, batch 1 on 512x512) and
//! `train/<variant>/b<B>/48x48/<backend>` (a K = 10 unroll, backward and the
//! trainer's Adam, `ca_sched::Adam`, batch 8 and 32). Throughput is in
//! cell updates per second (`B * H * W * steps`). The reference path is timed only where it takes
//! seconds at most (48/72 rules, batch 8, for training and 512x512).
//!
//! `cargo bench --bench cell_step` (all) or e.g.
//! `cargo bench --bench cell_step -- train/conv3x3-48x72`.

use std::time::Duration;

use ca_core::StepBackend;
use candle_core::Device;
use cellseg::cli::step_cases::{backend_name, variant_name, variants, Forward, Train, UNROLL};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const BACKENDS: [StepBackend; 2] = [StepBackend::Fused, StepBackend::Reference];

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for config in variants() {
        let v = variant_name(&config);
        let main = config.state_channels == 48;
        for (b, h, w) in [(1, 48, 48), (32, 48, 48), (1, 512, 512)] {
            for backend in BACKENDS {
                if backend == StepBackend::Reference && h == 512 && !main {
                    continue;
                }
                let problem = Forward::new(&config, backend, (b, h, w), &Device::Cpu);
                g.throughput(Throughput::Elements((b * h * w) as u64));
                let id = BenchmarkId::new(format!("{v}/b{b}/{h}x{w}"), backend_name(backend));
                g.bench_function(id, |bench| bench.iter(|| problem.run()));
            }
        }
    }
    g.finish();
}

fn train(c: &mut Criterion) {
    let mut g = c.benchmark_group("train");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for config in variants() {
        let v = variant_name(&config);
        let main = config.state_channels == 48;
        for b in [8, 32] {
            for backend in BACKENDS {
                if backend == StepBackend::Reference && (b != 8 || !main) {
                    continue;
                }
                let mut problem = Train::new(&config, backend, (b, 48, 48), &Device::Cpu);
                g.throughput(Throughput::Elements((b * 48 * 48 * UNROLL) as u64));
                let id = BenchmarkId::new(format!("{v}/b{b}/48x48"), backend_name(backend));
                g.bench_function(id, |bench| bench.iter(|| problem.run()));
            }
        }
    }
    g.finish();
}

criterion_group!(benches, forward, train);
criterion_main!(benches);
