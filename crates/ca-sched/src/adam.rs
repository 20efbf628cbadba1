//! Adam (Kingma & Ba) with its moments exposed, so that a checkpoint can
//! store them and a resumed run continues exactly.

use ca_core::ErrorShapes;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SchedError};

/// Optional treatment of each gradient before the Adam update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradNorm {
    /// Gradients as they are.
    None,
    /// Each tensor's gradient divided by its L2 norm (plus 1e-8), as in
    /// the neural-CA literature: every tensor moves at the pace Adam sets,
    /// whatever the scale of its gradient.
    PerTensor,
    /// Each tensor's gradient scaled down to at most this L2 norm.
    Clip(f64),
}

impl std::str::FromStr for GradNorm {
    type Err = String;
    /// `none`, `per-tensor` or `clip:MAX` (the norm is checked by
    /// [`AdamConfig::validate`]).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(GradNorm::None),
            "per-tensor" => Ok(GradNorm::PerTensor),
            _ => match s.strip_prefix("clip:").map(str::parse::<f64>) {
                Some(Ok(c)) => Ok(GradNorm::Clip(c)),
                _ => Err(format!(
                    "unknown gradient treatment '{s}' (none, per-tensor or clip:MAX)"
                )),
            },
        }
    }
}

/// Adam's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
// Fields missing from an older stored config take the defaults.
#[serde(default)]
pub struct AdamConfig {
    /// The base step size: the rate before a schedule's factor (a trainer
    /// passes the scheduled rate to [`Adam::step_grads`]).
    pub learning_rate: f64,
    /// Decay of the first moment, in [0, 1).
    pub beta1: f64,
    /// Decay of the second moment, in [0, 1).
    pub beta2: f64,
    /// Added to the root of the second moment, > 0.
    pub epsilon: f64,
    /// What is done to each gradient before the update (the paper
    /// normalizes each tensor's gradient to unit L2 norm).
    pub grad_norm: GradNorm,
}

impl Default for AdamConfig {
    /// The paper's settings: learning rate 3e-4, betas 0.9 / 0.999,
    /// epsilon 1e-8, per-tensor gradient normalization.
    fn default() -> Self {
        AdamConfig {
            learning_rate: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            grad_norm: GradNorm::PerTensor,
        }
    }
}

impl AdamConfig {
    /// Checks every field; the error names it and its value.
    pub fn validate(&self) -> Result<()> {
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(SchedError::invalid(
                "learning_rate",
                self.learning_rate,
                "must be positive and finite",
            ));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(SchedError::invalid(field, b, "must be in [0, 1)"));
            }
        }
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(SchedError::invalid(
                "epsilon",
                self.epsilon,
                "must be positive",
            ));
        }
        if let GradNorm::Clip(c) = self.grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return Err(SchedError::invalid(
                    "grad_norm",
                    format!("clip:{c}"),
                    "the clip norm must be positive",
                ));
            }
        }
        Ok(())
    }
}

/// Adam over a fixed list of variables.
#[derive(Debug, Clone)]
pub struct Adam {
    vars: Vec<Var>,
    config: AdamConfig,
    /// First moments, one per var.
    m: Vec<Tensor>,
    /// Second moments, one per var.
    v: Vec<Tensor>,
    /// Updates applied so far.
    t: u64,
    /// Factor on the learning rate, one per var.
    lr_scales: Vec<f64>,
}

impl Adam {
    /// Fresh moments (zeros) for `vars`, settings `config` (checked).
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Adam {
            v: m.clone(),
            m,
            lr_scales: vec![1.0; vars.len()],
            vars,
            config,
            t: 0,
        })
    }

    /// The same optimizer with var `i` stepping at `scales[i]` times the
    /// learning rate (one positive factor per var, in the order of
    /// [`Adam::new`]).
    pub fn with_lr_scales(mut self, scales: Vec<f64>) -> Result<Self> {
        if scales.len() != self.vars.len() || scales.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
            return Err(SchedError::InvalidConfig(ca_core::InvalidValue {
                name: "lr_scales",
                value: format!("{scales:?}"),
                reason: format!("needs {} positive finite factors", self.vars.len()),
            }));
        }
        self.lr_scales = scales;
        Ok(self)
    }

    /// The variables it updates, in the order given to [`Adam::new`].
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Its settings.
    pub fn config(&self) -> &AdamConfig {
        &self.config
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

    /// One update at step size `learning_rate` (the scheduled rate; var
    /// `i` moves at `learning_rate` times its factor of
    /// [`Adam::with_lr_scales`]) from `grads` (one optional gradient per
    /// var, same order); vars without a gradient are left alone.
    pub fn step_grads(&mut self, grads: &[Option<Tensor>], learning_rate: f64) -> Result<()> {
        self.t += 1;
        let AdamConfig {
            learning_rate: _,
            beta1: b1,
            beta2: b2,
            epsilon,
            grad_norm,
        } = self.config;
        let bias1 = 1.0 - b1.powi(self.t as i32);
        let bias2 = 1.0 - b2.powi(self.t as i32);
        for (i, grad) in grads.iter().enumerate() {
            let Some(g) = grad else { continue };
            let g = treat(&g.detach(), grad_norm)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&self.m[i] / bias1)?;
            let v_hat = (&self.v[i] / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + epsilon)?)?;
            let var = &self.vars[i];
            let rate = learning_rate * self.lr_scales[i];
            var.set(&(var.as_tensor() - (update * rate)?)?)?;
        }
        Ok(())
    }
}

/// Adam as a candle optimizer, so that code written against
/// [`candle_nn::Optimizer`] (`backward_step`, `set_learning_rate`) drives it.
impl candle_nn::Optimizer for Adam {
    type Config = AdamConfig;

    fn new(vars: Vec<Var>, config: AdamConfig) -> candle_core::Result<Self> {
        Adam::new(vars, config).map_err(candle_core::Error::wrap)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let per_var: Vec<Option<Tensor>> = self
            .vars
            .iter()
            .map(|v| grads.get(v.as_tensor()).cloned())
            .collect();
        self.step_grads(&per_var, self.config.learning_rate)
            .map_err(candle_core::Error::wrap)
    }

    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.learning_rate = lr;
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
        let cfg = AdamConfig {
            grad_norm: GradNorm::None,
            learning_rate: 0.1,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(vec![var.clone()], cfg).unwrap();
        let g = Tensor::new(&[0.5f32, -3.0], &Device::Cpu).unwrap();
        adam.step_grads(&[Some(g)], cfg.learning_rate).unwrap();
        let w = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (w[0] - 0.9).abs() < 1e-5 && (w[1] + 1.9).abs() < 1e-5,
            "{w:?}"
        );
        assert_eq!(adam.steps(), 1);
    }

    #[test]
    fn as_a_candle_optimizer_it_minimises_a_quadratic() {
        use candle_nn::Optimizer;
        let var = Var::new(&[3f32, -4.0], &Device::Cpu).unwrap();
        let cfg = AdamConfig {
            grad_norm: GradNorm::None,
            learning_rate: 0.05,
            ..AdamConfig::default()
        };
        let mut adam = <Adam as Optimizer>::new(vec![var.clone()], cfg).unwrap();
        for _ in 0..400 {
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            adam.backward_step(&loss).unwrap();
        }
        let w = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(w.iter().all(|x| x.abs() < 0.05), "{w:?}");
        adam.set_learning_rate(0.5);
        assert_eq!(adam.learning_rate(), 0.5);
        let bad = AdamConfig {
            beta1: 1.0,
            ..AdamConfig::default()
        };
        let err = Adam::new(vec![], bad).unwrap_err().to_string();
        assert!(err.contains("beta1"), "{err}");
    }
}
