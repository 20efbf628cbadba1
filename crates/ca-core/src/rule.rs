//! The learned cell rule: one CA step as candle ops (the reference
//! implementation, differentiable by candle's autograd, used on every device).

use candle_core::{Device, Tensor};

use crate::config::CellConfig;
use crate::draws::StepDraws;
use crate::error::{CoreError, Result};
use crate::norm::normalize_firing;
use crate::params::{CellParams, Layer, ParamCount, Perceive};

/// Which implementation [`CellRule::step`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepBackend {
    /// Plain candle ops ([`CellRule::step_reference`]): any device,
    /// differentiable by candle's autograd.
    Reference,
    /// The fused CPU op (forward and analytic backward in one custom op);
    /// CPU and f32 only, same results within float tolerance.
    Fused,
}

impl StepBackend {
    /// The default for `device`: fused on CPU, reference elsewhere.
    pub fn default_for(device: &Device) -> Self {
        if device.is_cpu() {
            StepBackend::Fused
        } else {
            StepBackend::Reference
        }
    }
}

/// A cell rule: its config and its tensors. Cloning is cheap (tensors are
/// shared), and clones share their parameters.
#[derive(Debug, Clone)]
pub struct CellRule {
    config: CellConfig,
    params: CellParams,
    device: Device,
    backend: StepBackend,
}

impl CellRule {
    /// A fresh rule with parameters drawn from `seed` (see
    /// [`CellParams::init`]).
    pub fn new(config: CellConfig, seed: u64, device: &Device) -> Result<Self> {
        let params = CellParams::init(&config, seed, device)?;
        Ok(CellRule {
            config,
            params,
            device: device.clone(),
            backend: StepBackend::default_for(device),
        })
    }

    /// A rule from existing parameters, which must be those `config` needs
    /// on `device`: the tensors of [`crate::param_shapes`], each of its
    /// shape, f32.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a config that does not validate;
    /// [`CoreError::Param`] naming the first tensor that is missing, extra,
    /// of another shape (both shapes given), dtype or device.
    pub fn from_params(config: CellConfig, params: CellParams, device: &Device) -> Result<Self> {
        config.validate()?;
        params.check(&config, device)?;
        Ok(CellRule {
            config,
            params,
            device: device.clone(),
            backend: StepBackend::default_for(device),
        })
    }

    /// The same rule (sharing its parameters) running `backend`.
    pub fn with_backend(mut self, backend: StepBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Switches the implementation [`CellRule::step`] runs.
    pub fn set_backend(&mut self, backend: StepBackend) {
        self.backend = backend;
    }

    /// The implementation [`CellRule::step`] runs.
    pub fn backend(&self) -> StepBackend {
        self.backend
    }

    /// The config.
    pub fn config(&self) -> &CellConfig {
        &self.config
    }

    /// The parameters.
    pub fn params(&self) -> &CellParams {
        &self.params
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Parameter counts (see `docs/PARAMS.md`).
    pub fn param_count(&self) -> ParamCount {
        self.params.count()
    }

    /// One CA step: the new state of every cell from its 3x3 neighbourhood
    /// of states and the environment under it.
    ///
    /// The candidate is `s + U(s)` (or `U(s)` without residual), mixed with
    /// the noise by the reset gate, `r z + (1 - r) cand`, then normalized
    /// with statistics over the firing cells (nonzero mask) only; each
    /// cell takes `s + mask (cand - s)`, so a cell whose mask is 0 keeps `s`
    /// bit for bit and never needs its candidate: the fused backend
    /// evaluates the rule at the firing cells only (`docs/FIRING.md`).
    ///
    /// Runs the rule's [`StepBackend`]; the fused one needs f32 tensors on
    /// the CPU.
    ///
    /// # Shapes
    ///
    /// - `state` `[B, S, H, W]` f32, `S = config().state_channels`;
    /// - `env` `[B, E, H, W]` f32, `E = config().env_channels`: for a plain
    ///   rule the images, RGB with pixel values in `[0, 1]`;
    /// - `draws` for the same `B, H, W` ([`StepDraws::sample`]): mask
    ///   `[B, 1, H, W]`, noise `[B, S, H, W]` when the rule has a reset gate;
    /// - returns the new state `[B, S, H, W]`.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming the argument whose shape does not fit.
    pub fn step(&self, state: &Tensor, env: &Tensor, draws: &StepDraws) -> Result<Tensor> {
        self.check_inputs(state, env, Some(draws))?;
        match self.backend {
            StepBackend::Reference => self.reference_step(state, env, draws),
            StepBackend::Fused => {
                crate::fused::step(&self.config, &self.params, state, env, draws, true)
            }
        }
    }

    /// One CA step for inference: as [`CellRule::step`], but the result is
    /// detached (no autograd graph), and the fused backend keeps no
    /// activations for a backward pass.
    ///
    /// # Shapes
    ///
    /// As [`CellRule::step`]: `state` `[B, S, H, W]`, `env` `[B, E, H, W]`
    /// (images in `[0, 1]` for a plain rule), draws for `B, H, W`; returns
    /// `[B, S, H, W]`.
    pub fn step_detached(&self, state: &Tensor, env: &Tensor, draws: &StepDraws) -> Result<Tensor> {
        self.check_inputs(state, env, Some(draws))?;
        match self.backend {
            StepBackend::Reference => Ok(self.reference_step(state, env, draws)?.detach()),
            StepBackend::Fused => {
                crate::fused::step(&self.config, &self.params, state, env, draws, false)
            }
        }
    }

    /// One CA step as plain candle ops, whatever the backend: the reference
    /// semantics of [`CellRule::step`], on any device.
    ///
    /// # Shapes
    ///
    /// As [`CellRule::step`]: `state` `[B, S, H, W]`, `env` `[B, E, H, W]`
    /// (images in `[0, 1]` for a plain rule), draws for `B, H, W`; returns
    /// `[B, S, H, W]`.
    pub fn step_reference(
        &self,
        state: &Tensor,
        env: &Tensor,
        draws: &StepDraws,
    ) -> Result<Tensor> {
        self.check_inputs(state, env, Some(draws))?;
        self.reference_step(state, env, draws)
    }

    fn reference_step(&self, state: &Tensor, env: &Tensor, draws: &StepDraws) -> Result<Tensor> {
        let hidden = self.last_hidden(state, env)?;
        let update = pointwise(&hidden, &self.params.update)?;
        let mut candidate = if self.config.residual {
            (state + update)?
        } else {
            update
        };
        if let (Some(gate), Some(noise)) = (&self.params.reset, &draws.noise) {
            let r = candle_nn::ops::sigmoid(&pointwise(&hidden, gate)?)?;
            let keep = r.affine(-1.0, 1.0)?;
            candidate = (r.broadcast_mul(noise)? + keep.broadcast_mul(&candidate)?)?;
        }
        let candidate = normalize_firing(&candidate, self.config.norm, &draws.mask)?;
        let delta = (candidate - state)?;
        Ok((state + draws.mask.broadcast_mul(&delta)?)?)
    }

    /// The reset gate `r = sigmoid(W_R H(s))` of every cell, in `(0, 1)`:
    /// the weight of the noise in the candidate state; `None` when the
    /// config has no reset gate.
    ///
    /// # Shapes
    ///
    /// `state` `[B, S, H, W]`, `env` `[B, E, H, W]` (images in `[0, 1]` for
    /// a plain rule) -> `[B, 1, H, W]`.
    pub fn reset_gate(&self, state: &Tensor, env: &Tensor) -> Result<Option<Tensor>> {
        let Some(gate) = &self.params.reset else {
            return Ok(None);
        };
        self.check_inputs(state, env, None)?;
        let hidden = self.last_hidden(state, env)?;
        Ok(Some(candle_nn::ops::sigmoid(&pointwise(&hidden, gate)?)?))
    }

    /// Class logits of every cell, by the rule's 1x1 classifier (unscaled;
    /// the predicted class is the argmax over the channels).
    ///
    /// # Shapes
    ///
    /// `state` `[B, S, H, W]` -> `[B, classes, H, W]`.
    pub fn logits(&self, state: &Tensor) -> Result<Tensor> {
        let s = self.config.state_channels;
        if state.rank() != 4 || state.dim(1)? != s {
            return Err(shape_error("state", format!("[B, {s}, H, W]"), state));
        }
        pointwise(state, &self.params.classifier)
    }

    /// The last hidden layer `H(s)`, `[B, hidden, H, W]`, after its ReLU.
    fn last_hidden(&self, state: &Tensor, env: &Tensor) -> Result<Tensor> {
        let x = Tensor::cat(&[state, env], 1)?;
        let mut h = match &self.params.perceive {
            Perceive::Conv3x3(l) => {
                let y = x.conv2d(l.weight.as_tensor(), 1, 1, 1, 1)?;
                add_channel_bias(&y, &l.bias)?
            }
            Perceive::Depthwise {
                depthwise,
                pointwise: pw,
            } => pointwise(&depthwise3x3(&x, depthwise)?, pw)?,
        }
        .relu()?;
        for l in &self.params.hidden {
            h = pointwise(&h, l)?.relu()?;
        }
        Ok(h)
    }

    fn check_inputs(&self, state: &Tensor, env: &Tensor, draws: Option<&StepDraws>) -> Result<()> {
        let (s, e) = (self.config.state_channels, self.config.env_channels);
        let dims = match state.dims() {
            &[b, c, h, w] if c == s => (b, h, w),
            _ => return Err(shape_error("state", format!("[B, {s}, H, W]"), state)),
        };
        let (b, h, w) = dims;
        if env.dims() != [b, e, h, w] {
            return Err(shape_error(
                "environment",
                format!("[{b}, {e}, {h}, {w}]"),
                env,
            ));
        }
        if let Some(d) = draws {
            if d.mask.dims() != [b, 1, h, w] {
                return Err(shape_error(
                    "update mask",
                    format!("[{b}, 1, {h}, {w}]"),
                    &d.mask,
                ));
            }
            match (&d.noise, self.config.reset_gate) {
                (Some(z), true) if z.dims() != [b, s, h, w] => {
                    return Err(shape_error(
                        "reset noise",
                        format!("[{b}, {s}, {h}, {w}]"),
                        z,
                    ))
                }
                (None, true) => {
                    return Err(CoreError::Shape(crate::ShapeError {
                        what: "reset noise",
                        expected: format!("[{b}, {s}, {h}, {w}] (the config has a reset gate)"),
                        got: vec![],
                    }))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn shape_error(what: &'static str, expected: String, t: &Tensor) -> CoreError {
    CoreError::Shape(crate::ShapeError {
        what,
        expected,
        got: t.dims().to_vec(),
    })
}

/// Adds a bias `[C]` to every cell of `x` `[B, C, H, W]`.
fn add_channel_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_add(&bias.reshape((1, (), 1, 1))?)?)
}

/// A 1x1 layer: `x` `[B, I, H, W]`, weight `[O, I]`, bias `[O]` -> `[B, O, H, W]`.
fn pointwise(x: &Tensor, layer: &Layer) -> Result<Tensor> {
    let (b, i, h, w) = x.dims4()?;
    let y = layer
        .weight
        .broadcast_matmul(&x.reshape((b, i, h * w))?)?
        .reshape((b, (), h, w))?;
    add_channel_bias(&y, &layer.bias)
}

/// A depthwise 3x3 convolution with zero padding, as nine shifted,
/// per-channel scaled copies (candle's grouped conv2d splits into one
/// convolution per group, which is far slower). `x` `[B, C, H, W]`, weight
/// `[C, 1, 3, 3]`, bias `[C]`.
fn depthwise3x3(x: &Tensor, layer: &Layer) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let padded = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let taps = layer.weight.reshape((c, 9))?;
    let mut acc = add_channel_bias(&x.zeros_like()?, &layer.bias)?;
    for dy in 0..3 {
        for dx in 0..3 {
            let tap = taps.narrow(1, dy * 3 + dx, 1)?.reshape((1, c, 1, 1))?;
            let shifted = padded.narrow(2, dy, h)?.narrow(3, dx, w)?;
            acc = (acc + shifted.broadcast_mul(&tap)?)?;
        }
    }
    Ok(acc)
}
