//! The CPU time this process has used: what a training budget or a timing
//! is measured in on a machine shared with other jobs, where the wall clock
//! depends on the load and the CPU time hardly does.

/// CPU seconds (user + system, all threads) this process has used so far,
/// from `/proc/self/stat` (Linux); `None` where that is unavailable.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat)
}

/// utime + stime in seconds from a `/proc/PID/stat` line: the 14th and
/// 15th fields, in clock ticks of 1/100 s (Linux's `USER_HZ`), counted after
/// the parenthesized command name (which may contain spaces).
fn parse_stat(stat: &str) -> Option<f64> {
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_the_command_name() {
        let line = "4242 (train (pets)) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3";
        assert_eq!(parse_stat(line), Some(3.0));
        assert_eq!(parse_stat("4242 (x) R 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn grows_with_work() {
        let Some(before) = process_cpu_seconds() else {
            println!("skipped: /proc/self/stat is not available here");
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
