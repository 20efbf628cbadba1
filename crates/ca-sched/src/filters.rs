//! Growing NCA's fixed perception filters beside the learned 3x3 ones
//! (issue 23 item 3), for a rule whose first layer is a 3x3 convolution.
//!
//! Every input channel `c` (state and image) is filtered by four fixed 3x3
//! kernels `F_k` (identity, Sobel x, Sobel y, Laplacian, each scaled to
//! unit L2 norm), and the `4 C` responses enter the first layer beside the
//! learned 3x3 perception through a learned mix `A` `[H, C, 4]`:
//!
//! `h = conv3x3(x; W) + sum_c sum_k A[h, c, k] (F_k * x_c)`
//!
//! A depthwise fixed filter followed by a linear mix is itself a 3x3
//! convolution with weight `A[h, c, k] F_k`, so the rule keeps one weight,
//! `W_eff = W + sum_k A[.., k] (x) F_k`, and runs, saves and loads as a
//! plain conv3x3 rule. What the fixed channels change is training: the
//! optimizer moves `W` and `A` apart, each by its own gradient
//! (`dW = dW_eff`, `dA[h, c, k] = <dW_eff[h, c], F_k>`), so the mix learns
//! the filter responses as Growing NCA's dense layer does.
//!
//! The trainer keeps `W_eff` in the rule's `perceive.weight` and steps it
//! with Adam on `dW_eff` (the same updates Adam gives `W`, whose gradient is
//! the same), then adds the change of `A` folded through the filters.

use candle_core::{Tensor, Var};

use crate::error::{Result, SchedError};

/// The fixed filters, in the order of the mix's last axis.
pub const FILTER_NAMES: [&str; 4] = ["identity", "sobel_x", "sobel_y", "laplacian"];

/// The fixed 3x3 kernels, row-major (`dy` then `dx`), before scaling.
const FILTERS: [[f32; 9]; 4] = [
    [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0],
    [-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0],
    [1.0, 2.0, 1.0, 2.0, -12.0, 2.0, 1.0, 2.0, 1.0],
];

/// The learned mix of the fixed filters' responses into a conv3x3 rule's
/// first layer.
#[derive(Debug, Clone)]
pub struct FixedFilters {
    mix: Var,
    /// `[4, 9]`: the filters, each of unit L2 norm.
    basis: Tensor,
    hidden: usize,
    inputs: usize,
}

impl FixedFilters {
    /// A zero mix for the perception weight `weight` `[H, C, 3, 3]`: the
    /// rule starts as it was, the fixed channels join as the mix learns.
    ///
    /// # Errors
    ///
    /// [`SchedError::InvalidConfig`] (field `fixed_filters`) when `weight`
    /// is not `[H, C, 3, 3]`.
    pub fn new(weight: &Var) -> Result<Self> {
        let (hidden, inputs) = match weight.dims() {
            &[h, c, 3, 3] => (h, c),
            other => {
                return Err(SchedError::InvalidConfig(ca_core::InvalidValue {
                    name: "fixed_filters",
                    value: "true".into(),
                    reason: format!("needs a 3x3 perception weight [H, C, 3, 3], got {other:?}"),
                }))
            }
        };
        let device = weight.device();
        let rows: Vec<f32> = FILTERS
            .iter()
            .flat_map(|f| {
                let norm = f.iter().map(|x| x * x).sum::<f32>().sqrt();
                f.iter().map(move |x| x / norm)
            })
            .collect();
        let basis = Tensor::from_vec(rows, (4, 9), device)?;
        let mix = Var::zeros((hidden, inputs, 4), weight.dtype(), device)?;
        Ok(FixedFilters {
            mix,
            basis,
            hidden,
            inputs,
        })
    }

    /// The learned mix `A` `[H, C, 4]` (last axis in [`FILTER_NAMES`]'
    /// order).
    pub fn mix(&self) -> &Var {
        &self.mix
    }

    /// The filters `[4, 3, 3]`, each of unit L2 norm.
    pub fn filters(&self) -> Result<Tensor> {
        Ok(self.basis.reshape((4, 3, 3))?)
    }

    /// `sum_k mix[.., k] F_k`: the 3x3 weight `[H, C, 3, 3]` a mix `[H, C,
    /// 4]` stands for.
    pub fn fold(&self, mix: &Tensor) -> Result<Tensor> {
        let (h, c) = (self.hidden, self.inputs);
        Ok(mix
            .reshape((h * c, 4))?
            .matmul(&self.basis)?
            .reshape((h, c, 3, 3))?)
    }

    /// The mix's gradient `[H, C, 4]` from the gradient of the folded
    /// weight `[H, C, 3, 3]`: its inner product with each filter.
    pub fn mix_grad(&self, weight_grad: &Tensor) -> Result<Tensor> {
        let (h, c) = (self.hidden, self.inputs);
        Ok(weight_grad
            .reshape((h * c, 9))?
            .matmul(&self.basis.t()?)?
            .reshape((h, c, 4))?)
    }

    /// Adds to `weight` the fold of the mix's change since `old_mix` (a
    /// copy taken before the optimizer moved the mix).
    pub fn follow_mix(&self, weight: &Var, old_mix: &Tensor) -> Result<()> {
        let delta = self.fold(&(self.mix.as_tensor() - old_mix)?)?;
        weight.set(&(weight.as_tensor() + delta)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_filters_have_unit_norm_and_the_derivatives_sum_to_zero() {
        let w = Var::zeros((2, 3, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let f = FixedFilters::new(&w).unwrap();
        let b = f.basis.to_vec2::<f32>().unwrap();
        for (row, name) in b.iter().zip(FILTER_NAMES) {
            let norm: f32 = row.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-6, "{name}");
        }
        for row in &b[1..] {
            assert!(row.iter().sum::<f32>().abs() < 1e-6);
        }
    }

    #[test]
    fn a_perception_weight_of_another_shape_is_refused() {
        let w = Var::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = FixedFilters::new(&w).unwrap_err().to_string();
        assert!(e.contains("fixed_filters") && e.contains("[2, 3]"), "{e}");
    }
}
