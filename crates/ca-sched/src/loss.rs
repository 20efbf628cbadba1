//! The per-pixel cross-entropy of the paper (section 3.1).

use candle_core::{DType, Tensor};

use crate::error::Result;

/// Mean per-pixel cross-entropy of each sample: `logits` `[B, C, H, W]`,
/// `labels` `[B, H, W]` u32 class ids; returns `[B]`.
pub fn per_sample_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let index = labels.to_dtype(DType::U32)?.unsqueeze(1)?.contiguous()?;
    let picked = log_p.gather(&index, 1)?; // [B, 1, H, W]
    Ok(picked.flatten_from(1)?.mean(1)?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_a_hand_computation() {
        // One sample, two classes, two pixels: logits (0, ln 3) and (0, 0).
        let l3 = 3f32.ln();
        let logits = Tensor::new(&[[[[0f32, 0.0]], [[l3, 0.0]]]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[[[1u32, 0]]], &Device::Cpu).unwrap();
        let ce = per_sample_cross_entropy(&logits, &labels).unwrap();
        let expected = (-(0.75f32).ln() - (0.5f32).ln()) / 2.0;
        let got = ce.to_vec1::<f32>().unwrap()[0];
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }
}
