//! An exponential moving average of a model's trainable weights: the
//! weights evaluated and saved when a run has one (Polyak averaging).

use candle_core::{Tensor, Var};

use crate::error::Result;

/// A running average `a <- d a + (1 - d) w` of a fixed list of variables,
/// with the effective decay of update `n` (0-based) `d_n = min(decay,
/// (1 + n) / (10 + n))`: early updates weigh more, so that a run of a few
/// hundred steps is not averaged over its random start.
#[derive(Debug, Clone)]
pub struct Ema {
    decay: f64,
    average: Vec<Tensor>,
    updates: u64,
}

impl Ema {
    /// An average that starts at the current values of `vars`. The
    /// averages are plain tensors, outside candle's graph: a copy of a
    /// `Var` would record the copy, and every update would then keep the
    /// previous average alive (a leak of the model's size per step).
    pub fn new(vars: &[Var], decay: f64) -> Result<Self> {
        Ok(Ema {
            decay,
            average: vars
                .iter()
                .map(|v| v.as_tensor().detach().copy())
                .collect::<candle_core::Result<_>>()?,
            updates: 0,
        })
    }

    /// The decay given at construction.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Updates applied so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The averages, one per variable, in the order given to [`Ema::new`].
    pub fn average(&self) -> &[Tensor] {
        &self.average
    }

    /// Restores the averages and the update count (from a checkpoint).
    pub fn restore(&mut self, average: Vec<Tensor>, updates: u64) {
        self.average = average;
        self.updates = updates;
    }

    /// Folds the current values of `vars` (same order as at construction)
    /// into the average.
    pub fn update(&mut self, vars: &[Var]) -> Result<()> {
        let n = self.updates as f64;
        let d = self.decay.min((1.0 + n) / (10.0 + n));
        for (a, v) in self.average.iter_mut().zip(vars) {
            *a = ((&*a * d)? + (v.as_tensor().detach() * (1.0 - d))?)?.detach();
        }
        self.updates += 1;
        Ok(())
    }

    /// Runs `f` with the averages in `vars` (same order as at
    /// construction), then puts the trained values back, also when `f`
    /// fails.
    pub fn with_average<T>(&self, vars: &[Var], f: impl FnOnce() -> Result<T>) -> Result<T> {
        let trained: Vec<Tensor> = vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<candle_core::Result<_>>()?;
        for (v, a) in vars.iter().zip(&self.average) {
            v.set(a)?;
        }
        let out = f();
        for (v, t) in vars.iter().zip(&trained) {
            v.set(t)?;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_vec1::<f32>().unwrap()
    }

    /// The averages stay outside candle's graph: on the old code the
    /// first average was a recorded copy of the `Var`, so every update's
    /// average held the previous one (a leak of the model's size per
    /// training step: 5 GB after 30 CPU-minutes of the U-Net).
    #[test]
    fn the_averages_hold_no_graph() {
        let var = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let mut ema = Ema::new(std::slice::from_ref(&var), 0.5).unwrap();
        assert!(!ema.average()[0].track_op());
        for _ in 0..3 {
            ema.update(std::slice::from_ref(&var)).unwrap();
            assert!(!ema.average()[0].track_op(), "an update keeps a graph");
        }
    }

    #[test]
    fn decay_zero_follows_the_weights() {
        let var = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let mut ema = Ema::new(std::slice::from_ref(&var), 0.0).unwrap();
        for x in [3f32, -4.0, 0.5] {
            var.set(&Tensor::new(&[x, 2.0 * x], &Device::Cpu).unwrap())
                .unwrap();
            ema.update(std::slice::from_ref(&var)).unwrap();
            assert_eq!(values(&ema.average()[0]), [x, 2.0 * x]);
        }
    }

    #[test]
    fn the_average_lags_and_the_weights_come_back() {
        let var = Var::new(&[0f32], &Device::Cpu).unwrap();
        let vars = [var.clone()];
        let mut ema = Ema::new(&vars, 0.9).unwrap();
        // Update 0 uses d = min(0.9, 1/10) = 0.1; update 1 d = 2/11.
        var.set(&Tensor::new(&[10f32], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(&vars).unwrap();
        assert!((values(&ema.average()[0])[0] - 9.0).abs() < 1e-5);
        ema.update(&vars).unwrap();
        let expected = 9.0 * 2.0 / 11.0 + 10.0 * 9.0 / 11.0;
        assert!((values(&ema.average()[0])[0] - expected).abs() < 1e-4);
        let seen = ema
            .with_average(&vars, || Ok(values(var.as_tensor())[0]))
            .unwrap();
        assert!((seen - expected).abs() < 1e-4);
        assert_eq!(values(var.as_tensor()), [10.0]);
        assert_eq!(ema.updates(), 2);
    }
}
