//! State normalizations (paper 3.5) as candle ops, for the reference path.

use candle_core::Tensor;

use crate::config::Norm;
use crate::error::Result;

/// Added to the variance before the square root.
pub const NORM_EPS: f64 = 1e-5;

/// Normalizes `x` to zero mean and unit (biased) variance over the
/// dimensions `norm` names; no learned scale or shift.
///
/// # Shapes
///
/// `x` `[B, C, H, W]` -> `[B, C, H, W]`.
pub fn normalize(x: &Tensor, norm: Norm) -> Result<Tensor> {
    let dims: &[usize] = match norm {
        Norm::None => return Ok(x.clone()),
        Norm::Batch => &[0, 2, 3],
        Norm::Instance => &[2, 3],
        Norm::Channel => &[1],
    };
    let mean = x.mean_keepdim(dims)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(dims)?;
    let inv_std = (var + NORM_EPS)?.sqrt()?.recip()?;
    Ok(centered.broadcast_mul(&inv_std)?)
}

/// Normalizes `x` as [`normalize`] does, but with the
/// statistics of batch and instance norm taken over the firing cells only:
/// those where `mask` (`[B, 1, H, W]`) is nonzero. The other cells are
/// normalized with the same statistics (the step discards them). A group
/// with no firing cell gets mean 0 and variance 0. Channel norm is per cell
/// and none is the identity, as in [`normalize`]. See `docs/FIRING.md`.
///
/// # Shapes
///
/// `x` `[B, C, H, W]`, `mask` `[B, 1, H, W]` -> `[B, C, H, W]`.
pub fn normalize_firing(x: &Tensor, norm: Norm, mask: &Tensor) -> Result<Tensor> {
    let dims: &[usize] = match norm {
        Norm::None | Norm::Channel => return normalize(x, norm),
        Norm::Batch => &[0, 2, 3],
        Norm::Instance => &[2, 3],
    };
    let firing = mask.ne(0f64)?.to_dtype(x.dtype())?;
    let count = firing.sum_keepdim(dims)?.maximum(1f64)?;
    let mean = x
        .broadcast_mul(&firing)?
        .sum_keepdim(dims)?
        .broadcast_div(&count)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered
        .sqr()?
        .broadcast_mul(&firing)?
        .sum_keepdim(dims)?
        .broadcast_div(&count)?;
    let inv_std = (var + NORM_EPS)?.sqrt()?.recip()?;
    Ok(centered.broadcast_mul(&inv_std)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draws::{normal_state, step_rng};
    use candle_core::Device;

    /// `[2, 4, 5, 6]` values `N(3, 2^2)`, the same at every run (candle's
    /// `Tensor::randn` is unseeded, and one draw in a hundred or so gives a
    /// cell whose four channels nearly agree, so that `eps` moves its
    /// channel-normed variance by more than the tolerance).
    fn sample(seed: u64) -> Tensor {
        let z = normal_state((2, 4, 5, 6), &mut step_rng(seed, 0), &Device::Cpu).unwrap();
        z.affine(2.0, 3.0).unwrap()
    }

    fn stats(x: &Tensor, dims: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let m = x.mean_keepdim(dims).unwrap();
        let v = x
            .broadcast_sub(&m)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_keepdim(dims)
            .unwrap();
        (
            m.flatten_all().unwrap().to_vec1().unwrap(),
            v.flatten_all().unwrap().to_vec1().unwrap(),
        )
    }

    #[test]
    fn each_norm_standardizes_its_own_dimensions() {
        let x = sample(1);
        for (norm, dims) in [
            (Norm::Batch, vec![0, 2, 3]),
            (Norm::Instance, vec![2, 3]),
            (Norm::Channel, vec![1]),
        ] {
            let y = normalize(&x, norm).unwrap();
            let (m, v) = stats(&y, &dims);
            assert!(m.iter().all(|m| m.abs() < 1e-4), "{norm:?} mean {m:?}");
            assert!(
                v.iter().all(|v| (v - 1.0).abs() < 1e-3),
                "{norm:?} var {v:?}"
            );
        }
        let y = normalize(&x, Norm::None).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn firing_statistics_ignore_the_cells_that_do_not_fire() {
        let dev = &Device::Cpu;
        let x = sample(2);
        let all = Tensor::ones((2, 1, 5, 6), candle_core::DType::F32, dev).unwrap();
        for norm in [Norm::Batch, Norm::Instance, Norm::Channel, Norm::None] {
            let a = normalize_firing(&x, norm, &all).unwrap();
            let b = normalize(&x, norm).unwrap();
            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "{norm:?}");
        }
        // Fire the left half only: the right half's values must not matter,
        // and the left half comes out standardized.
        let left: Vec<f32> = (0..2 * 5 * 6).map(|i| f32::from(i % 6 < 3)).collect();
        let mask = Tensor::from_vec(left, (2, 1, 5, 6), dev).unwrap();
        let noisy = x
            .broadcast_add(&mask.affine(-100.0, 100.0).unwrap())
            .unwrap();
        let a = normalize_firing(&x, Norm::Instance, &mask).unwrap();
        let b = normalize_firing(&noisy, Norm::Instance, &mask).unwrap();
        let fired = |t: &Tensor| t.narrow(3, 0, 3).unwrap();
        let diff = (fired(&a) - fired(&b))
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
        let (m, v) = stats(&fired(&a).contiguous().unwrap(), &[2, 3]);
        assert!(m.iter().all(|m| m.abs() < 1e-4), "mean {m:?}");
        assert!(v.iter().all(|v| (v - 1.0).abs() < 1e-3), "var {v:?}");
    }
}
