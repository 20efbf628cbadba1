//! Recycled f32 buffers of the fused step. A training unroll keeps the
//! activations of every step until the backward, then frees them all; the
//! next unroll asks for buffers of the same sizes. Taking them from here
//! spares zeroing memory that is overwritten anyway (`memset` was 5-6% of
//! a training step in the profile, issue 26). A recycled buffer holds
//! values left by an earlier step: only buffers the caller writes entirely
//! before reading come from here.

use std::sync::Mutex;

/// The most bytes the process-wide pool keeps.
const MAX_BYTES: usize = 1 << 30;

/// The process-wide pool of the fused step.
static POOL: Mutex<Pool> = Mutex::new(Pool::new(MAX_BYTES));

/// Free buffers, at most `max_bytes` of them.
struct Pool {
    buffers: Vec<Vec<f32>>,
    bytes: usize,
    max_bytes: usize,
}

impl Pool {
    const fn new(max_bytes: usize) -> Self {
        Pool {
            buffers: Vec::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The smallest free buffer with room for `n` values and at most twice
    /// that, as it was given back, or a new empty one.
    fn take_recycled(&mut self, n: usize) -> Vec<f32> {
        let best = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n && v.capacity() <= 2 * n.max(1))
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let v = self.buffers.swap_remove(i);
                self.bytes -= v.capacity() * 4;
                v
            }
            None => Vec::with_capacity(n),
        }
    }

    /// Keeps `v` if it fits under the byte limit; frees it otherwise.
    fn give(&mut self, v: Vec<f32>) {
        let size = v.capacity() * 4;
        if size > 0 && self.bytes + size <= self.max_bytes {
            self.bytes += size;
            self.buffers.push(v);
        }
    }
}

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A recycled buffer with room for `n` values, emptied (`len` 0), or a
/// new one: for callers that write it through `spare_capacity_mut`.
pub(crate) fn take_empty(n: usize) -> Vec<f32> {
    let mut v = pool().take_recycled(n);
    v.clear();
    v
}

/// A buffer of `n` values whose contents are unspecified (left by an
/// earlier step, zero where it had to grow): for callers that write every
/// value before reading any.
pub(crate) fn take(n: usize) -> Vec<f32> {
    let mut v = pool().take_recycled(n);
    if cfg!(debug_assertions) {
        // Debug builds poison the buffer, so that a read before a write
        // shows as NaN in the equivalence tests (they passed so in release
        // too when this was written).
        v.clear();
        v.resize(n, f32::NAN);
    } else {
        // Keeps the old values: only a grown tail is written (zeros).
        v.resize(n, 0.0);
    }
    v
}

/// Gives `v` back for a later [`take`].
pub(crate) fn give(v: Vec<f32>) {
    pool().give(v)
}

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn a_given_buffer_comes_back_unzeroed_at_a_size_close_to_its_own() {
        let mut pool = Pool::new(1 << 20);
        let mut v = pool.take_recycled(1000);
        assert!(v.is_empty());
        v.resize(1000, 7.0);
        let ptr = v.as_ptr();
        pool.give(v);
        // Too small for 3000, more than twice 100: new buffers.
        let (large, small) = (pool.take_recycled(3000), pool.take_recycled(100));
        assert_ne!(large.as_ptr(), ptr);
        assert_ne!(small.as_ptr(), ptr);
        let mut again = pool.take_recycled(900);
        assert_eq!(again.as_ptr(), ptr);
        again.resize(900, 0.0);
        assert!(
            again.iter().all(|&x| x == 7.0),
            "the old values, not zeroed"
        );
        // Over the byte limit: freed, not kept.
        pool.give(vec![0.0; 1 << 20]);
        assert!(pool.buffers.is_empty());
    }
}
