//! The high-resolution model: encoder, cell rule, decoder.

use ca_core::{CellConfig, CellRule, NamedParam, ParamGroup};
use candle_core::{Device, Tensor};

use crate::error::{HiresError, Result};
use crate::layers::{check_levels, reduced_size, Decoder, Encoder, ENV_CHANNELS};

/// Parameter counts of a [`HiresModel`], split by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiresParamCount {
    /// The update rule (perception, hidden and update layers), as
    /// [`ca_core::ParamCount::rule`]; with 8 environment channels its
    /// perception layer reads 5 more channels than a plain RGB rule.
    pub rule: usize,
    /// The reset gate.
    pub reset_gate: usize,
    /// The encoder.
    pub encoder: usize,
    /// The decoder.
    pub decoder: usize,
    /// Frozen (untrained) parameters, a subset of `rule`.
    pub frozen: usize,
}

impl HiresParamCount {
    /// Everything stored in a model file.
    pub fn total(&self) -> usize {
        self.rule + self.reset_gate + self.encoder + self.decoder
    }

    /// Everything the optimizer updates.
    pub fn trainable(&self) -> usize {
        self.total() - self.frozen
    }
}

/// A cellular automaton whose state grid is `2^levels` times smaller than
/// the image (paper section 3.4): the [`Encoder`] turns images
/// `[B, 3, H, W]` into an environment `[B, 8, h, w]` with
/// `h = ceil(H / 2^levels)`, the cell rule evolves the state `[B, S, h, w]`
/// in it, and the [`Decoder`] turns the state into logits
/// `[B, classes, H, W]`.
///
/// The rule's own 1x1 classifier is not used: the decoder makes the
/// logits. It is held at zero, left out of [`HiresModel::named_params`]
/// (so it is neither trained nor saved) and out of the counts.
///
/// Cloning is cheap and clones share their parameters.
#[derive(Debug, Clone)]
pub struct HiresModel {
    encoder: Encoder,
    rule: CellRule,
    decoder: Decoder,
    levels: usize,
}

impl HiresModel {
    /// A fresh model: the rule drawn from `seed` as by [`CellRule::new`],
    /// the encoder and decoder from salted streams of the same seed.
    /// `cell_config.env_channels` must be [`ENV_CHANNELS`] (8), the
    /// encoder's output; `levels` (1 to 3) sets the factor `2^levels`.
    pub fn new(cell_config: CellConfig, levels: usize, seed: u64, device: &Device) -> Result<Self> {
        check_levels(levels)?;
        check_env_channels(&cell_config)?;
        let decoder = Decoder::new(
            levels,
            cell_config.state_channels,
            cell_config.num_classes,
            seed,
            device,
        )?;
        let encoder = Encoder::new(levels, seed, device)?;
        let rule = CellRule::new(cell_config, seed, device)?;
        let classifier = &rule.params().classifier;
        classifier.weight.set(&classifier.weight.zeros_like()?)?;
        classifier.bias.set(&classifier.bias.zeros_like()?)?;
        Self::from_parts(encoder, rule, decoder)
    }

    /// A model from its parts, which must agree: the same number of levels,
    /// a rule with 8 environment channels, a decoder from the rule's state
    /// channels to its classes.
    pub fn from_parts(encoder: Encoder, rule: CellRule, decoder: Decoder) -> Result<Self> {
        let levels = encoder.levels();
        if decoder.levels() != levels {
            return Err(HiresError::InvalidConfig(ca_core::InvalidValue {
                name: "decoder levels",
                value: decoder.levels().to_string(),
                reason: format!("the encoder has {levels}"),
            }));
        }
        let cfg = rule.config();
        check_env_channels(cfg)?;
        let first = decoder.layers()[0].weight.dim(0)?;
        let last = decoder.layers()[levels - 1].weight.dim(1)?;
        if (first, last) != (cfg.state_channels, cfg.num_classes) {
            return Err(HiresError::InvalidConfig(ca_core::InvalidValue {
                name: "decoder channels",
                value: format!("{first} -> {last}"),
                reason: format!(
                    "the rule has {} state channels and {} classes",
                    cfg.state_channels, cfg.num_classes
                ),
            }));
        }
        Ok(HiresModel {
            encoder,
            rule,
            decoder,
            levels,
        })
    }

    /// Number of stride-2 levels.
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// The resolution factor `2^levels` between the image and the state.
    pub fn factor(&self) -> usize {
        1 << self.levels
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The cell rule.
    pub fn rule(&self) -> &CellRule {
        &self.rule
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The rule's config.
    pub fn config(&self) -> &CellConfig {
        self.rule.config()
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        self.rule.device()
    }

    /// The state grid `(ceil(H / 2^levels), ceil(W / 2^levels))` for images
    /// of `(H, W)` pixels.
    pub fn state_size(&self, (h, w): (usize, usize)) -> (usize, usize) {
        (reduced_size(h, self.levels), reduced_size(w, self.levels))
    }

    /// The environment `[B, 8, h, w]` of images `[B, 3, H, W]`: the
    /// encoder's output of the images, standardised first when the rule's
    /// config has an [`ca_core::ImageNorm`].
    pub fn environment(&self, images: &Tensor) -> Result<Tensor> {
        let images = ca_core::standardise(self.config().image_norm.as_ref(), images)?;
        self.encoder.forward(&images)
    }

    /// Logits `[B, classes, H, W]` of a state `[B, S, h, w]` for images of
    /// `out_size = (H, W)` pixels.
    pub fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor> {
        self.decoder.forward(state, out_size)
    }

    /// Every tensor of the model with its name: the rule's under their
    /// usual names (`perceive.weight`, ..., the classifier left out), then
    /// `encoder.{k}.*` and `decoder.{k}.*`. Encoder and decoder tensors are
    /// in [`ParamGroup::Rule`] (the group only matters to
    /// [`CellRule::param_count`]; [`HiresModel::param_count`] splits them).
    pub fn named_params(&self) -> Vec<NamedParam> {
        let mut out: Vec<NamedParam> = self
            .rule
            .params()
            .named()
            .into_iter()
            .filter(|p| p.group != ParamGroup::Classifier)
            .collect();
        out.extend(self.encoder.named());
        out.extend(self.decoder.named());
        out
    }

    /// Parameter counts per part (the unused classifier not counted).
    pub fn param_count(&self) -> HiresParamCount {
        let rule = self.rule.param_count();
        HiresParamCount {
            rule: rule.rule,
            reset_gate: rule.reset_gate,
            encoder: self.encoder.param_count(),
            decoder: self.decoder.param_count(),
            frozen: rule.frozen,
        }
    }
}

pub(crate) fn check_env_channels(cfg: &CellConfig) -> Result<()> {
    if cfg.env_channels != ENV_CHANNELS {
        return Err(HiresError::InvalidConfig(ca_core::InvalidValue::new(
            "env_channels",
            cfg.env_channels,
            format!(
                "the rule of a high-resolution model reads the encoder's {ENV_CHANNELS} \
                 channels; set env_channels to {ENV_CHANNELS}"
            ),
        )));
    }
    Ok(())
}
