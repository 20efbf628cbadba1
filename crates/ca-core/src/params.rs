//! The learned tensors of a cell rule: their names, shapes, initialisation and
//! counting.

use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::{CellConfig, Perception};
use crate::error::{CoreError, Result};

/// Which part of the model a parameter belongs to, for counting (Table 1
/// counts the update rule alone; see `docs/PARAMS.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamGroup {
    /// The update rule: perception, hidden and update layers.
    Rule,
    /// The reset gate `W_R` and its bias.
    ResetGate,
    /// The classifier `state -> classes`.
    Classifier,
}

/// A dense layer as a weight and a bias. 1x1 layers store the weight as
/// `[out, in]`, the 3x3 convolution as `[out, in, 3, 3]`, the depthwise
/// convolution as `[channels, 1, 3, 3]`; the bias is `[out]`.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The weight.
    pub weight: Var,
    /// The bias, `[out]`.
    pub bias: Var,
}

/// The perception (first) layer.
#[derive(Debug, Clone)]
pub enum Perceive {
    /// Full 3x3 convolution `S+E -> H`.
    Conv3x3(Layer),
    /// Depthwise 3x3 over `S+E` channels, then 1x1 `S+E -> H`.
    Depthwise {
        /// Depthwise filters `[S+E, 1, 3, 3]`, bias `[S+E]`.
        depthwise: Layer,
        /// Pointwise layer `[H, S+E]`, bias `[H]`.
        pointwise: Layer,
    },
}

/// All tensors of a cell rule.
#[derive(Debug, Clone)]
pub struct CellParams {
    /// The perception layer.
    pub perceive: Perceive,
    /// The hidden `H -> H` 1x1 layers.
    pub hidden: Vec<Layer>,
    /// The output layer `H -> S`: the update `U(s)`.
    pub update: Layer,
    /// The reset gate `H -> 1`, when the config has one.
    pub reset: Option<Layer>,
    /// The classifier `S -> classes`.
    pub classifier: Layer,
    /// Whether the depthwise filters are frozen (random depthwise).
    pub frozen_depthwise: bool,
}

/// A layer of a cell rule as its tensors are named in model files:
/// `{layer}.weight` and `{layer}.bias` (`perceive.weight`, `hidden.0.bias`,
/// `update.weight`, ...). The one place those names are spelt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerId {
    /// The full 3x3 perception convolution.
    Perceive,
    /// The depthwise 3x3 filters of the depthwise perception.
    Depthwise,
    /// The 1x1 layer after the depthwise filters.
    Pointwise,
    /// Hidden 1x1 layer `k` (from 0).
    Hidden(usize),
    /// The output layer: the update `U(s)`.
    Update,
    /// The reset gate.
    Reset,
    /// The classifier `state -> classes`.
    Classifier,
}

/// Which tensor of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// `{layer}.weight`.
    Weight,
    /// `{layer}.bias`.
    Bias,
}

impl LayerId {
    /// The layer's name (`hidden.1`, `update`, ...).
    pub fn name(self) -> String {
        match self {
            LayerId::Perceive => "perceive".into(),
            LayerId::Depthwise => "depthwise".into(),
            LayerId::Pointwise => "pointwise".into(),
            LayerId::Hidden(k) => format!("hidden.{k}"),
            LayerId::Update => "update".into(),
            LayerId::Reset => "reset".into(),
            LayerId::Classifier => "classifier".into(),
        }
    }

    /// The name of the layer's weight or bias (`update.weight`).
    pub fn tensor(self, kind: TensorKind) -> String {
        let suffix = match kind {
            TensorKind::Weight => "weight",
            TensorKind::Bias => "bias",
        };
        format!("{}.{suffix}", self.name())
    }

    /// Whether the layer is part of the perception (the first layer: the
    /// 3x3 convolution, or the depthwise filters and the 1x1 after them).
    pub fn is_perception(self) -> bool {
        matches!(
            self,
            LayerId::Perceive | LayerId::Depthwise | LayerId::Pointwise
        )
    }

    /// The layer and the kind of a rule's tensor name; `None` for a name
    /// that is not one (a high-resolution model's encoder, say).
    pub fn parse(tensor: &str) -> Option<(LayerId, TensorKind)> {
        let (layer, kind) = tensor.rsplit_once('.')?;
        let kind = match kind {
            "weight" => TensorKind::Weight,
            "bias" => TensorKind::Bias,
            _ => return None,
        };
        let layer = match layer {
            "perceive" => LayerId::Perceive,
            "depthwise" => LayerId::Depthwise,
            "pointwise" => LayerId::Pointwise,
            "update" => LayerId::Update,
            "reset" => LayerId::Reset,
            "classifier" => LayerId::Classifier,
            other => {
                let k = other.strip_prefix("hidden.")?;
                if k.starts_with('+') {
                    return None;
                }
                LayerId::Hidden(k.parse().ok()?)
            }
        };
        Some((layer, kind))
    }
}

/// One named tensor of a rule, as listed by [`CellParams::named`].
#[derive(Debug, Clone)]
pub struct NamedParam {
    /// Stable name, used as the safetensors key (e.g. `hidden.0.weight`).
    pub name: String,
    /// The tensor.
    pub var: Var,
    /// Its group, for counting.
    pub group: ParamGroup,
    /// False for frozen random filters.
    pub trainable: bool,
}

/// Parameter counts of a rule, split the way Table 1 needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamCount {
    /// Update rule (perception incl. depthwise, hidden, update layers), the
    /// figure Table 1 reports. Includes frozen depthwise filters.
    pub rule: usize,
    /// Reset gate weights and bias.
    pub reset_gate: usize,
    /// Classifier weights and bias.
    pub classifier: usize,
    /// Frozen (untrained) parameters, a subset of `rule`.
    pub frozen: usize,
}

impl ParamCount {
    /// Everything stored in a checkpoint.
    pub fn total(&self) -> usize {
        self.rule + self.reset_gate + self.classifier
    }

    /// Everything the optimizer updates.
    pub fn trainable(&self) -> usize {
        self.total() - self.frozen
    }
}

/// Shapes of every tensor a config needs, in the order of
/// [`CellParams::named`]: `(name, weight or bias shape, group, trainable)`.
pub fn param_shapes(config: &CellConfig) -> Vec<(String, Vec<usize>, ParamGroup, bool)> {
    let (s, h, e, c) = (
        config.state_channels,
        config.hidden_channels,
        config.env_channels,
        config.num_classes,
    );
    let i = s + e;
    let mut out = Vec::new();
    let mut layer = |id: LayerId, w: Vec<usize>, group, trainable| {
        let bias = vec![w[0]];
        out.push((id.tensor(TensorKind::Weight), w, group, trainable));
        out.push((id.tensor(TensorKind::Bias), bias, group, trainable));
    };
    match config.perception {
        Perception::Conv3x3 => layer(LayerId::Perceive, vec![h, i, 3, 3], ParamGroup::Rule, true),
        Perception::Depthwise | Perception::RandomDepthwise => {
            let trainable = config.perception == Perception::Depthwise;
            layer(
                LayerId::Depthwise,
                vec![i, 1, 3, 3],
                ParamGroup::Rule,
                trainable,
            );
            layer(LayerId::Pointwise, vec![h, i], ParamGroup::Rule, true);
        }
    }
    for k in 0..config.hidden_layers {
        layer(LayerId::Hidden(k), vec![h, h], ParamGroup::Rule, true);
    }
    layer(LayerId::Update, vec![s, h], ParamGroup::Rule, true);
    if config.reset_gate {
        layer(LayerId::Reset, vec![1, h], ParamGroup::ResetGate, true);
    }
    layer(
        LayerId::Classifier,
        vec![c, s],
        ParamGroup::Classifier,
        true,
    );
    out
}

/// How a fresh rule draws one of its tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ParamInit {
    /// Uniform in `(-bound, bound)`.
    Uniform(f32),
    /// Every element this value.
    Const(f32),
}

/// The initialisation of every tensor a config needs, in the order of
/// [`param_shapes`]: `(name, shape, init)`. Weights and biases are uniform
/// in `(-1/sqrt(fan_in), 1/sqrt(fan_in))`, with the fan-in of the layer's
/// weight (its shape past the first dimension); the reset bias is
/// [`RESET_BIAS_INIT`].
pub(crate) fn param_inits(config: &CellConfig) -> Vec<(String, Vec<usize>, ParamInit)> {
    let mut fan_in = 1;
    param_shapes(config)
        .into_iter()
        .map(|(name, shape, _, _)| {
            if name.ends_with(".weight") {
                fan_in = shape[1..].iter().product::<usize>().max(1);
            }
            let init = if LayerId::parse(&name) == Some((LayerId::Reset, TensorKind::Bias)) {
                ParamInit::Const(RESET_BIAS_INIT)
            } else {
                ParamInit::Uniform(1.0 / (fan_in as f32).sqrt())
            };
            (name, shape, init)
        })
        .collect()
}

fn param_error(name: &str, reason: impl Into<String>) -> CoreError {
    CoreError::Param {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Initial bias of the reset gate: `sigmoid(-2) ~ 0.12`, so that a fresh
/// rule resets few cells and the residual path dominates early training.
pub const RESET_BIAS_INIT: f32 = -2.0;

/// One layer of [`CellParams`] as [`CellParams::named`] lists it: its name
/// (`hidden` layers with their index), group and trainability.
struct LayerEntry<'a> {
    name: &'static str,
    index: Option<usize>,
    layer: &'a Layer,
    group: ParamGroup,
    trainable: bool,
}

impl<'a> LayerEntry<'a> {
    fn new(
        name: &'static str,
        index: Option<usize>,
        layer: &'a Layer,
        group: ParamGroup,
        trainable: bool,
    ) -> Self {
        LayerEntry {
            name,
            index,
            layer,
            group,
            trainable,
        }
    }
}

impl CellParams {
    /// Fresh parameters drawn from `seed`: every weight and bias uniform in
    /// `(-1/sqrt(fan_in), 1/sqrt(fan_in))` (PyTorch's default), the reset
    /// bias set to [`RESET_BIAS_INIT`].
    pub fn init(config: &CellConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = Vec::new();
        for (_, shape, init) in param_inits(config) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = match init {
                ParamInit::Const(v) => vec![v; n],
                ParamInit::Uniform(bound) => {
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
            };
            tensors.push(Tensor::from_vec(values, shape, device)?);
        }
        Self::from_tensors(config, tensors)
    }

    /// Builds the structure from tensors in the order of [`param_shapes`];
    /// the caller has checked the shapes.
    pub(crate) fn from_tensors(config: &CellConfig, tensors: Vec<Tensor>) -> Result<Self> {
        let mut it = tensors.into_iter();
        let mut next = || -> Result<Layer> {
            let (w, b) = (it.next(), it.next());
            match (w, b) {
                (Some(w), Some(b)) => Ok(Layer {
                    weight: Var::from_tensor(&w)?,
                    bias: Var::from_tensor(&b)?,
                }),
                _ => Err(candle_core::Error::Msg("too few tensors for config".into()).into()),
            }
        };
        let perceive = if config.perception.is_depthwise() {
            let depthwise = next()?;
            Perceive::Depthwise {
                depthwise,
                pointwise: next()?,
            }
        } else {
            Perceive::Conv3x3(next()?)
        };
        let hidden = (0..config.hidden_layers)
            .map(|_| next())
            .collect::<Result<_>>()?;
        let update = next()?;
        let reset = if config.reset_gate {
            Some(next()?)
        } else {
            None
        };
        let classifier = next()?;
        Ok(CellParams {
            perceive,
            hidden,
            update,
            reset,
            classifier,
            frozen_depthwise: config.perception == Perception::RandomDepthwise,
        })
    }

    /// Checks that these are the tensors a rule with `config` needs on
    /// `device`: the names of [`param_shapes`] in its order, each of the
    /// shape listed there, f32. The error ([`CoreError::Param`]) names the
    /// first tensor that differs and how.
    pub(crate) fn check(&self, config: &CellConfig, device: &Device) -> Result<()> {
        let named = self.named();
        let shapes = param_shapes(config);
        for (k, (name, shape, ..)) in shapes.iter().enumerate() {
            let Some(p) = named.get(k) else {
                return Err(param_error(
                    name,
                    format!("is missing (the config needs shape {shape:?})"),
                ));
            };
            if p.name != *name {
                return Err(if named.iter().any(|q| q.name == *name) {
                    param_error(
                        &p.name,
                        format!("is not part of a rule with this config (expected '{name}' here)"),
                    )
                } else {
                    param_error(
                        name,
                        format!("is missing (the config needs shape {shape:?})"),
                    )
                });
            }
            if p.var.dims() != shape.as_slice() {
                return Err(param_error(
                    name,
                    format!("has shape {:?}, the config needs {shape:?}", p.var.dims()),
                ));
            }
            if p.var.dtype() != DType::F32 {
                return Err(param_error(
                    name,
                    format!("is {:?}, not f32", p.var.dtype()),
                ));
            }
            if !p.var.device().same_device(device) {
                return Err(param_error(
                    name,
                    format!(
                        "is on {:?}, the rule's device is {device:?}",
                        p.var.device()
                    ),
                ));
            }
        }
        if let Some(extra) = named.get(shapes.len()) {
            return Err(param_error(
                &extra.name,
                "is not part of a rule with this config",
            ));
        }
        Ok(())
    }

    /// Every layer with its name, group and trainability, in the order of
    /// [`param_shapes`].
    fn layers(&self) -> Vec<LayerEntry<'_>> {
        let mut out = Vec::new();
        match &self.perceive {
            Perceive::Conv3x3(l) => {
                out.push(LayerEntry::new("perceive", None, l, ParamGroup::Rule, true))
            }
            Perceive::Depthwise {
                depthwise,
                pointwise,
            } => {
                let trainable = !self.frozen_depthwise;
                out.push(LayerEntry::new(
                    "depthwise",
                    None,
                    depthwise,
                    ParamGroup::Rule,
                    trainable,
                ));
                out.push(LayerEntry::new(
                    "pointwise",
                    None,
                    pointwise,
                    ParamGroup::Rule,
                    true,
                ));
            }
        }
        for (k, l) in self.hidden.iter().enumerate() {
            out.push(LayerEntry::new(
                "hidden",
                Some(k),
                l,
                ParamGroup::Rule,
                true,
            ));
        }
        out.push(LayerEntry::new(
            "update",
            None,
            &self.update,
            ParamGroup::Rule,
            true,
        ));
        if let Some(l) = &self.reset {
            out.push(LayerEntry::new(
                "reset",
                None,
                l,
                ParamGroup::ResetGate,
                true,
            ));
        }
        out.push(LayerEntry::new(
            "classifier",
            None,
            &self.classifier,
            ParamGroup::Classifier,
            true,
        ));
        out
    }

    /// Every tensor with its name, group and trainability, in the order of
    /// [`param_shapes`].
    pub fn named(&self) -> Vec<NamedParam> {
        let mut out = Vec::new();
        for LayerEntry {
            name,
            index,
            layer: l,
            group,
            trainable,
        } in self.layers()
        {
            let name = match index {
                Some(k) => format!("{name}.{k}"),
                None => name.to_string(),
            };
            for (suffix, var) in [("weight", &l.weight), ("bias", &l.bias)] {
                out.push(NamedParam {
                    name: format!("{name}.{suffix}"),
                    var: var.clone(),
                    group,
                    trainable,
                });
            }
        }
        out
    }

    /// The variables of the groups `keep` selects, weight then bias of each
    /// layer, in the order of [`CellParams::named`], without building the
    /// names (the fused step packs them at every CA step).
    pub fn vars_of(&self, keep: impl Fn(ParamGroup) -> bool) -> Vec<&Var> {
        self.layers()
            .into_iter()
            .filter(|e| keep(e.group))
            .flat_map(|e| [&e.layer.weight, &e.layer.bias])
            .collect()
    }

    /// The tensors the optimizer should update (frozen filters left out).
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.named()
            .into_iter()
            .filter(|p| p.trainable)
            .map(|p| p.var)
            .collect()
    }

    /// Counts per group.
    pub fn count(&self) -> ParamCount {
        let mut c = ParamCount {
            rule: 0,
            reset_gate: 0,
            classifier: 0,
            frozen: 0,
        };
        for p in self.named() {
            let n = p.var.elem_count();
            match p.group {
                ParamGroup::Rule => c.rule += n,
                ParamGroup::ResetGate => c.reset_gate += n,
                ParamGroup::Classifier => c.classifier += n,
            }
            if !p.trainable {
                c.frozen += n;
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Norm;

    #[test]
    fn every_tensor_name_parses_back_to_its_layer() {
        for perception in [Perception::Conv3x3, Perception::Depthwise] {
            let cfg = CellConfig {
                perception,
                ..CellConfig::default()
            };
            for (name, ..) in param_shapes(&cfg) {
                let (layer, kind) = LayerId::parse(&name).expect(&name);
                assert_eq!(layer.tensor(kind), name);
            }
        }
        assert_eq!(
            LayerId::parse("hidden.1.bias"),
            Some((LayerId::Hidden(1), TensorKind::Bias))
        );
        assert_eq!(LayerId::Update.tensor(TensorKind::Weight), "update.weight");
        assert!(LayerId::Pointwise.is_perception() && !LayerId::Update.is_perception());
        for other in [
            "encoder.0.weight",
            "update",
            "update.scale",
            "hidden.+1.bias",
            "hidden.x.weight",
        ] {
            assert_eq!(LayerId::parse(other), None, "{other}");
        }
    }

    fn count(perception: Perception, s: usize, h: usize) -> ParamCount {
        let cfg = CellConfig {
            state_channels: s,
            hidden_channels: h,
            perception,
            ..CellConfig::default()
        };
        CellParams::init(&cfg, 0, &Device::Cpu).unwrap().count()
    }

    #[test]
    fn table1_counts_within_two_percent() {
        let paper = [
            (32, 48, 8_400.0, 21_400.0),
            (48, 72, 18_300.0, 47_000.0),
            (64, 96, 32_300.0, 82_000.0),
        ];
        for (s, h, dw, c3) in paper {
            let d = count(Perception::Depthwise, s, h).rule as f64;
            let c = count(Perception::Conv3x3, s, h).rule as f64;
            assert!((d / dw - 1.0).abs() < 0.02, "depthwise {s}/{h}: {d}");
            assert!((c / c3 - 1.0).abs() < 0.02, "conv3x3 {s}/{h}: {c}");
        }
    }

    #[test]
    fn exact_counts_of_the_main_model() {
        let c = count(Perception::Conv3x3, 48, 72);
        assert_eq!(c.rule, 51 * 9 * 72 + 72 + 2 * (72 * 72 + 72) + 72 * 48 + 48);
        assert_eq!(c.reset_gate, 73);
        assert_eq!(c.classifier, 48 * 3 + 3);
        assert_eq!(c.frozen, 0);
    }

    #[test]
    fn random_depthwise_filters_are_frozen_and_not_trainable() {
        let c = count(Perception::RandomDepthwise, 48, 72);
        assert_eq!(c.frozen, 51 * 9 + 51);
        assert_eq!(c.trainable(), c.total() - c.frozen);
        let cfg = CellConfig {
            perception: Perception::RandomDepthwise,
            norm: Norm::None,
            ..CellConfig::default()
        };
        let p = CellParams::init(&cfg, 1, &Device::Cpu).unwrap();
        let n_trainable: usize = p.trainable_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(n_trainable, p.count().trainable());
    }

    #[test]
    fn same_seed_same_weights() {
        let cfg = CellConfig::default();
        let a = CellParams::init(&cfg, 5, &Device::Cpu).unwrap();
        let b = CellParams::init(&cfg, 5, &Device::Cpu).unwrap();
        let c = CellParams::init(&cfg, 6, &Device::Cpu).unwrap();
        let w = |p: &CellParams| {
            p.hidden[0]
                .weight
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(w(&a), w(&b));
        assert_ne!(w(&a), w(&c));
    }
}
