//! State normalizations (paper 3.5) as candle ops, for the reference path.

use candle_core::Tensor;

use crate::config::Norm;
use crate::error::Result;

/// Added to the variance before the square root.
pub const NORM_EPS: f64 = 1e-5;

/// Normalizes `x` `[B, C, H, W]` to zero mean and unit (biased) variance
/// over the dimensions `norm` names; no learned scale or shift.
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
        let x = Tensor::randn(3f32, 2.0, (2, 4, 5, 6), &Device::Cpu).unwrap();
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
}
