//! An opt-in allocator setting for processes that run many CA steps.
//!
//! Every CA step allocates buffers of a few MiB to tens of MiB (the NHWC
//! copies of the inputs, the kept activations, candle's output tensors) and
//! frees them before the next step. glibc serves such sizes from fresh
//! `mmap`s or trims them off the top of the heap when they are freed, so
//! every step faults every page of them back in: a third of the CPU time
//! of a batch-32 inference step went to page faults (`docs/RESULTS.md`,
//! issue 14). Keeping freed memory in the heap avoids that.

/// The largest allocation served from the heap rather than its own `mmap`
/// (glibc caps the setting at 32 MiB on 64-bit systems).
pub const MMAP_THRESHOLD_BYTES: usize = 32 << 20;

/// Free memory at the top of the heap kept rather than returned to the
/// system.
pub const TRIM_THRESHOLD_BYTES: usize = 1 << 30;

/// Tells glibc's `malloc` to serve allocations up to
/// [`MMAP_THRESHOLD_BYTES`] from the heap and to keep up to
/// [`TRIM_THRESHOLD_BYTES`] of freed memory, so that the buffers of one CA
/// step are reused by the next without page faults. Process-wide: call it
/// once at the start of a program that runs many steps (the project's
/// examples do); a library embedding `ca-core` decides for itself. The
/// price is that up to 1 GiB of freed memory stays counted in the
/// process's resident set. Returns whether the setting was applied (false
/// on systems without glibc, where it does nothing).
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters; both values
        // are within glibc's accepted ranges.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_setting_applies_on_glibc() {
        let applied = super::retain_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // Allocation still works after the change.
        let v = vec![1.0f32; 5 << 20];
        assert_eq!(v.iter().sum::<f32>(), (5 << 20) as f32);
    }
}
