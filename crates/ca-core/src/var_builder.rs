//! Building a rule from a [`candle_nn::VarBuilder`], so that a rule can
//! live inside a larger candle model or load weights the way other candle
//! models do (memory-mapped safetensors, a buffer, a [`candle_nn::VarMap`]
//! for training).

use candle_core::{DType, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::config::CellConfig;
use crate::error::{CoreError, Result};
use crate::params::{param_inits, CellParams, ParamInit};
use crate::rule::CellRule;

impl CellRule {
    /// A rule whose tensors come from `vb`, under the names the rule's
    /// safetensors files use (`perceive.weight`, `hidden.0.bias`, ...; see
    /// [`crate::param_shapes`]) below the builder's prefix: with
    /// `vb.pp("ca")` the rule reads `ca.perceive.weight`, and so on. The
    /// rule lives on `vb.device()`; its tensors are f32 (converted from the
    /// stored dtype when loading).
    ///
    /// What the builder does with a name depends on its backend:
    ///
    /// - a [`candle_nn::VarMap`] (`VarBuilder::from_varmap`) creates the
    ///   tensors it does not hold yet as trainable variables, which the map
    ///   and the rule then share (an optimizer over `varmap.all_vars()`
    ///   trains the rule; tensors the map already holds are reused). They
    ///   are drawn from the distribution of [`CellRule::new`] (uniform in
    ///   `(-1/sqrt(fan_in), 1/sqrt(fan_in))`, the reset bias
    ///   [`crate::RESET_BIAS_INIT`]), this rule's own initialisation rather
    ///   than one of the builder's, but by candle's generator: the values
    ///   differ from those of `CellRule::new` with any seed. The map holds
    ///   the frozen filters of [`crate::Perception::RandomDepthwise`] too;
    ///   train [`crate::CellParams::trainable_vars`] to leave them out;
    /// - safetensors (`VarBuilder::from_mmaped_safetensors`, which is
    ///   `unsafe` because the file must not change while mapped,
    ///   `from_buffered_safetensors`, `from_slice_safetensors`) or a map of
    ///   tensors (`VarBuilder::from_tensors`) load them. Such a file's
    ///   metadata is not read: pass the config it was written with, e.g.
    ///   [`crate::io::config_from_metadata`] of a file of
    ///   [`CellRule::save`].
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a config that does not validate;
    /// [`CoreError::Param`] naming the tensor, with the builder's prefix,
    /// that the builder lacks or holds with a shape other than `config`
    /// needs (both shapes given).
    pub fn from_var_builder(config: CellConfig, vb: &VarBuilder) -> Result<Self> {
        config.validate()?;
        let tensors = param_inits(&config)
            .into_iter()
            .map(|(name, shape, init)| get(vb, &name, shape, init))
            .collect::<Result<Vec<_>>>()?;
        let params = CellParams::from_tensors(&config, tensors)?;
        CellRule::from_params(config, params, vb.device())
    }
}

/// Tensor `name` of shape `shape` from `vb`, created with `init` by a
/// builder that creates tensors, f32; the error ([`CoreError::Param`])
/// names the tensor with the builder's prefix and says whether it is
/// missing or of another shape (both shapes given). The rule's tensors
/// come through it, and so can those of a model built around the rule.
pub fn var_builder_tensor(
    vb: &VarBuilder,
    name: &str,
    shape: &[usize],
    init: Init,
) -> Result<Tensor> {
    let err = match vb.get_with_hints_dtype(Shape::from(shape.to_vec()), name, init, DType::F32) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let reason = if !vb.contains_tensor(name) {
        format!("missing from the var builder (the config needs shape {shape:?})")
    } else {
        match vb.get_unchecked_dtype(name, DType::F32) {
            Ok(t) if t.dims() != shape => {
                format!("has shape {:?}, the config needs {shape:?}", t.dims())
            }
            _ => without_backtrace(err).to_string(),
        }
    };
    let prefix = vb.prefix();
    Err(CoreError::Param {
        name: if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        },
        reason,
    })
}

/// [`var_builder_tensor`] with the rule's own initialisation of the tensor.
fn get(vb: &VarBuilder, name: &str, shape: Vec<usize>, init: ParamInit) -> Result<Tensor> {
    let hint = match init {
        ParamInit::Uniform(bound) => Init::Uniform {
            lo: -f64::from(bound),
            up: f64::from(bound),
        },
        ParamInit::Const(v) => Init::Const(f64::from(v)),
    };
    var_builder_tensor(vb, name, &shape, hint)
}

/// The error itself, without the backtrace candle attaches when
/// `RUST_BACKTRACE` is set (it would make the message pages long).
fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => *inner,
        e => e,
    }
}
