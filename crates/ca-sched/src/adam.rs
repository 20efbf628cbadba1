//! Adam (Kingma & Ba) with its moments exposed, so that a checkpoint can
//! store them and a resumed run continues exactly.

use candle_core::{Tensor, Var};

use crate::config::{GradNorm, TrainConfig};
use crate::error::Result;

/// Adam over a fixed list of variables.
#[derive(Debug, Clone)]
pub struct Adam {
    vars: Vec<Var>,
    /// First moments, one per var.
    m: Vec<Tensor>,
    /// Second moments, one per var.
    v: Vec<Tensor>,
    /// Updates applied so far.
    t: u64,
}

impl Adam {
    /// Fresh moments (zeros) for `vars`.
    pub fn new(vars: Vec<Var>) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Adam {
            v: m.clone(),
            m,
            vars,
            t: 0,
        })
    }

    /// The variables it updates, in the order given to [`Adam::new`].
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moments `(m, v)` of var `i`.
    pub fn moments(&self, i: usize) -> (&Tensor, &Tensor) {
        (&self.m[i], &self.v[i])
    }

    /// Restores the moments and the step count (from a checkpoint).
    pub fn restore(&mut self, m: Vec<Tensor>, v: Vec<Tensor>, t: u64) {
        self.m = m;
        self.v = v;
        self.t = t;
    }

    /// One update from `grads` (one optional gradient per var, same order);
    /// vars without a gradient are left alone.
    pub fn step(&mut self, grads: &[Option<Tensor>], config: &TrainConfig) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (config.beta1, config.beta2);
        let bias1 = 1.0 - b1.powi(self.t as i32);
        let bias2 = 1.0 - b2.powi(self.t as i32);
        for (i, grad) in grads.iter().enumerate() {
            let Some(g) = grad else { continue };
            let g = treat(&g.detach(), config.grad_norm)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&self.m[i] / bias1)?;
            let v_hat = (&self.v[i] / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + config.epsilon)?)?;
            let var = &self.vars[i];
            var.set(&(var.as_tensor() - (update * config.learning_rate)?)?)?;
        }
        Ok(())
    }
}

fn treat(g: &Tensor, norm: GradNorm) -> Result<Tensor> {
    let l2 = || -> Result<f64> { Ok(g.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt() as f64) };
    Ok(match norm {
        GradNorm::None => g.clone(),
        GradNorm::PerTensor => (g / (l2()? + 1e-8))?,
        GradNorm::Clip(max) => {
            let n = l2()?;
            if n > max {
                (g * (max / n))?
            } else {
                g.clone()
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_step_moves_each_weight_by_the_learning_rate() {
        let var = Var::new(&[1f32, -2.0], &Device::Cpu).unwrap();
        let mut adam = Adam::new(vec![var.clone()]).unwrap();
        let cfg = TrainConfig {
            grad_norm: GradNorm::None,
            learning_rate: 0.1,
            ..TrainConfig::default()
        };
        let g = Tensor::new(&[0.5f32, -3.0], &Device::Cpu).unwrap();
        adam.step(&[Some(g)], &cfg).unwrap();
        let w = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (w[0] - 0.9).abs() < 1e-5 && (w[1] + 1.9).abs() < 1e-5,
            "{w:?}"
        );
        assert_eq!(adam.steps(), 1);
    }
}
