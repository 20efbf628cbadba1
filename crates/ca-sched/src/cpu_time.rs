//! The CPU time this process has used: what a training budget or a timing
//! is measured in on a machine shared with other jobs, where the wall clock
//! depends on the load and the CPU time hardly does.

/// CPU seconds (user + system, all threads) this process has used so far,
/// from `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (Unix; nanosecond
/// resolution, unlike the 10 ms clock ticks of `/proc/self/stat`, which
/// read a 1 ms step as 0 or 10 ms); `None` where that is unavailable.
pub fn process_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_less_than_a_clock_tick() {
        let Some(first) = process_cpu_seconds() else {
            println!("skipped: no process CPU clock here");
            return;
        };
        // The first change of the reading while this thread runs: a clock
        // counted in 10 ms ticks (`/proc/self/stat`) moves by 0.01 s at once.
        let mut next = first;
        while next == first {
            next = process_cpu_seconds().unwrap();
        }
        assert!(
            next - first < 0.001,
            "the clock moved in a step of {} s",
            next - first
        );
    }

    #[test]
    fn grows_with_work() {
        let Some(before) = process_cpu_seconds() else {
            println!("skipped: no process CPU clock here");
            return;
        };
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = process_cpu_seconds().unwrap();
        assert!(after >= before, "{before} -> {after}");
    }
}
