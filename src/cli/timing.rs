//! The timing loop shared by `cellseg bench step` and `cellseg bench
//! hires` ([`crate::cli::bench_step`], [`crate::cli::bench_hires`]): warm-up runs, then
//! timed runs, each followed by a device synchronization (CUDA kernels run
//! asynchronously; nothing to wait for on CPU), giving the wall seconds of
//! every timed run and the mean CPU seconds (user + system, all threads of
//! the process) per timed run.

use std::time::Instant;

use candle_core::Device;

/// Wall and CPU seconds of the timed runs of [`measure`].
#[derive(Debug, Clone)]
pub struct Timing {
    /// Wall seconds of each timed run, sorted ascending.
    pub times: Vec<f64>,
    /// Mean CPU seconds per timed run (NaN where the CPU time is unknown).
    pub cpu_s: f64,
}

impl Timing {
    /// Timed runs.
    pub fn reps(&self) -> usize {
        self.times.len()
    }

    /// Median wall seconds (the upper one of an even count).
    pub fn median(&self) -> f64 {
        self.times[self.times.len() / 2]
    }

    /// Fastest wall seconds.
    pub fn min(&self) -> f64 {
        self.times[0]
    }
}

/// CPU seconds this process has used so far (NaN where unknown).
pub fn cpu_seconds() -> f64 {
    crate::ca_sched::process_cpu_seconds().unwrap_or(f64::NAN)
}

/// Least wall seconds of warm-up when there is one: a fresh process's first
/// runs fault in its buffers and wake its threads, and a millisecond step
/// needs more than one run to reach the steady state a long-lived process
/// (a server, PyTorch in its interpreter) times.
pub const WARM_UP_S: f64 = 0.2;

/// Runs `f` untimed at least `warmup` times and, when `warmup > 0`, until
/// [`WARM_UP_S`] seconds have passed; then `reps` (at least 1) times timed.
/// `device` is synchronized after every run, inside the timed region.
pub fn measure<E: From<candle_core::Error>>(
    warmup: usize,
    reps: usize,
    device: &Device,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Timing, E> {
    let start = Instant::now();
    let mut runs = 0;
    while runs < warmup || (warmup > 0 && start.elapsed().as_secs_f64() < WARM_UP_S) {
        f()?;
        device.synchronize()?;
        runs += 1;
    }
    let reps = reps.max(1);
    let cpu0 = cpu_seconds();
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let cpu_s = (cpu_seconds() - cpu0) / reps as f64;
    times.sort_by(f64::total_cmp);
    Ok(Timing { times, cpu_s })
}
