//! A strided single-threaded GEMM (the `gemm` crate) and the small vector
//! kernels around it. Parallelism comes from the callers, one tile of cells
//! per task.

/// Defines `fn $name(args)` running `$imp(args)` (an `#[inline(always)]`
/// function) compiled for AVX2 + FMA when the CPU has them, and for the
/// baseline target otherwise: the elementwise loops around the GEMMs then
/// vectorize over 8 lanes without a crate-wide `target-cpu`.
macro_rules! with_avx2 {
    ($(#[$m:meta])* fn $name:ident => $imp:ident ($($arg:ident : $ty:ty),* $(,)?)) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) {
                    $imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `fast` is compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}
pub(crate) use with_avx2;

/// A read-only strided matrix: element `(i, j)` at `data[i * rs + j * cs]`.
pub(crate) type Strided<'a> = (&'a [f32], usize, usize);

/// `dst[m, n] = (acc ? dst : 0) + a[m, k] * b[k, n]`; `dst` is row-major with
/// row stride `dst_rs`. Panics if a view is too short for its shape (a bug,
/// never a user error).
pub(crate) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    a: Strided,
    b: Strided,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * dst_rs + n <= dst.len(), "matmul: dst too short");
    if k == 0 {
        if !acc {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    let extent = |v: &Strided, rows: usize, cols: usize| (rows - 1) * v.1 + (cols - 1) * v.2 + 1;
    assert!(extent(&a, m, k) <= a.0.len(), "matmul: lhs too short");
    assert!(extent(&b, k, n) <= b.0.len(), "matmul: rhs too short");
    // SAFETY: every element the three views address lies inside its slice
    // (checked above); `dst` is borrowed mutably, so it overlaps neither
    // input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            acc,
            a.0.as_ptr(),
            a.2 as isize,
            a.1 as isize,
            b.0.as_ptr(),
            b.2 as isize,
            b.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Adds `bias` to each of the `m` rows (stride `rs`, width `bias.len()`) of
/// `x`, then applies ReLU.
#[inline(always)]
pub(crate) fn bias_relu(x: &mut [f32], rs: usize, m: usize, bias: &[f32]) {
    for i in 0..m {
        let row = &mut x[i * rs..i * rs + bias.len()];
        for (v, b) in row.iter_mut().zip(bias) {
            *v = (*v + b).max(0.0);
        }
    }
}

/// `acc[j] += sum_i x[i * rs + j]` over `m` rows of width `acc.len()`.
#[inline(always)]
pub(crate) fn add_colsum(acc: &mut [f32], x: &[f32], rs: usize, m: usize) {
    let n = acc.len();
    for i in 0..m {
        for (a, v) in acc.iter_mut().zip(&x[i * rs..i * rs + n]) {
            *a += v;
        }
    }
}

/// `g[i * rs + j] = 0` where `h[i * hrs + j] <= 0` (ReLU backward), for `m`
/// rows of width `n`.
#[inline(always)]
pub(crate) fn relu_mask(g: &mut [f32], rs: usize, h: &[f32], hrs: usize, (m, n): (usize, usize)) {
    for i in 0..m {
        let (gr, hr) = (&mut g[i * rs..i * rs + n], &h[i * hrs..i * hrs + n]);
        for (gv, hv) in gr.iter_mut().zip(hr) {
            *gv = if *hv > 0.0 { *gv } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_matmul_matches_naive() {
        let (m, n, k) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.7).cos()).collect();
        // a as given (row-major), b read transposed from a [n, k] buffer.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut dst = vec![1.0; m * 4];
        matmul((m, n, k), &mut dst, 4, true, (&a, k, 1), (&bt, 1, k));
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f32>();
                assert!((dst[i * 4 + j] - want).abs() < 1e-5);
            }
            assert_eq!(dst[i * 4 + 3], 1.0);
        }
    }
}
