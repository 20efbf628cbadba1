//! The configuration of a cell rule: a plain struct whose `Default` is the
//! paper's main model (Sandler et al. 2020, section 5 and Table 1).

use serde::{Deserialize, Serialize};

use crate::cascade::Cascade;
use crate::error::{CoreError, Result};
use crate::image_norm::ImageNorm;

/// How a cell perceives its 3x3 neighbourhood (the first layer of the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Perception {
    /// A full 3x3 convolution over concat(state, environment), `S+E -> hidden`.
    Conv3x3,
    /// A learned depthwise 3x3 convolution over the `S+E` channels, then a
    /// 1x1 convolution `S+E -> hidden`.
    Depthwise,
    /// As [`Perception::Depthwise`], but the depthwise filters (and their
    /// biases) are random and frozen: never trained, not counted as trainable
    /// (paper 5.3, Fig. 6).
    RandomDepthwise,
}

impl Perception {
    /// The name used on command lines and in printed tables.
    pub fn name(self) -> &'static str {
        match self {
            Perception::Conv3x3 => "conv3x3",
            Perception::Depthwise => "depthwise",
            Perception::RandomDepthwise => "random_depthwise",
        }
    }

    /// Whether this perception has a depthwise layer followed by a 1x1 layer.
    pub fn is_depthwise(self) -> bool {
        !matches!(self, Perception::Conv3x3)
    }
}

impl std::str::FromStr for Perception {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "conv3x3" => Ok(Perception::Conv3x3),
            "depthwise" => Ok(Perception::Depthwise),
            "random_depthwise" | "random-depthwise" => Ok(Perception::RandomDepthwise),
            _ => Err(format!(
                "unknown perception '{s}' (expected conv3x3, depthwise or random_depthwise)"
            )),
        }
    }
}

/// Normalization of the candidate state (paper 3.5). None of them has
/// learned parameters; all use `eps = 1e-5` and the biased variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// No normalization.
    None,
    /// Per channel over `[B, H, W]`, always with the live batch statistics,
    /// also at evaluation (the paper's batch norm "in training mode");
    /// statistics over the firing cells of the step (`docs/FIRING.md`).
    Batch,
    /// Per sample and channel over `[H, W]`, statistics over the firing
    /// cells of the step (`docs/FIRING.md`).
    Instance,
    /// Per cell over the channels (the paper's "pixel" norm).
    Channel,
}

impl Norm {
    /// The name used on command lines and in printed tables.
    pub fn name(self) -> &'static str {
        match self {
            Norm::None => "none",
            Norm::Batch => "batch",
            Norm::Instance => "instance",
            Norm::Channel => "channel",
        }
    }
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Norm::None),
            "batch" => Ok(Norm::Batch),
            "instance" => Ok(Norm::Instance),
            "channel" | "pixel" => Ok(Norm::Channel),
            _ => Err(format!(
                "unknown norm '{s}' (expected none, batch, instance or channel)"
            )),
        }
    }
}

/// The shape and options of a cell rule. `Default` is the paper's main
/// model: state 48, hidden 72, 3 environment channels (RGB), 3 classes, two
/// hidden 1x1 layers, 3x3 perception, instance norm, residual, reset gate,
/// update probability 0.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellConfig {
    /// `S`: channels of a cell's state.
    pub state_channels: usize,
    /// `H`: channels of the hidden layers.
    pub hidden_channels: usize,
    /// `E`: channels of the environment (3 for RGB, 8 behind a high-res encoder).
    pub env_channels: usize,
    /// Number of classes the classifier predicts.
    pub num_classes: usize,
    /// Hidden `H -> H` 1x1 layers after the perception layer.
    pub hidden_layers: usize,
    /// The perception (first) layer.
    pub perception: Perception,
    /// Normalization of the candidate state.
    pub norm: Norm,
    /// Residual update `s + U(s)` (true) or plain `U(s)` (false).
    pub residual: bool,
    /// Whether the reset gate `r = sigmoid(W_R H)` mixes noise into the state.
    pub reset_gate: bool,
    /// Probability, per cell and step, that a cell takes its new state.
    pub update_prob: f64,
    /// Standardisation of the RGB image before the model's environment
    /// reads it (the training set's statistics and a gain); `None` reads
    /// the image as it is. Absent from files written before it existed,
    /// which therefore load as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_norm: Option<ImageNorm>,
    /// Coarse levels that open every evolution (a coarse-to-fine colony);
    /// `None` (and files written before it existed) is the plain colony.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<Cascade>,
}

impl Default for CellConfig {
    fn default() -> Self {
        CellConfig {
            state_channels: 48,
            hidden_channels: 72,
            env_channels: 3,
            num_classes: crate::classes::NUM_CLASSES,
            hidden_layers: 2,
            perception: Perception::Conv3x3,
            norm: Norm::Instance,
            residual: true,
            reset_gate: true,
            update_prob: 0.5,
            image_norm: None,
            cascade: None,
        }
    }
}

impl CellConfig {
    /// Checks that every field makes sense; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("state_channels", self.state_channels),
            ("hidden_channels", self.hidden_channels),
            ("env_channels", self.env_channels),
            ("num_classes", self.num_classes),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(CoreError::InvalidConfig(crate::InvalidValue {
                    name: field,
                    value: value.to_string(),
                    reason: "must be at least 1".into(),
                }));
            }
        }
        if !(self.update_prob > 0.0 && self.update_prob <= 1.0) {
            return Err(CoreError::InvalidConfig(crate::InvalidValue {
                name: "update_prob",
                value: self.update_prob.to_string(),
                reason: "must lie in (0, 1]".into(),
            }));
        }
        if let Some(norm) = &self.image_norm {
            norm.validate()?;
        }
        if let Some(cascade) = &self.cascade {
            cascade.validate()?;
        }
        if self.hidden_layers > 64 {
            return Err(CoreError::InvalidConfig(crate::InvalidValue {
                name: "hidden_layers",
                value: self.hidden_layers.to_string(),
                reason: "more than 64 hidden layers is not a cell rule".into(),
            }));
        }
        Ok(())
    }

    /// `S + E`: the channels the perception layer reads.
    pub fn input_channels(&self) -> usize {
        self.state_channels + self.env_channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_papers_main_model() {
        let c = CellConfig::default();
        assert_eq!((c.state_channels, c.hidden_channels), (48, 72));
        assert_eq!((c.env_channels, c.num_classes, c.hidden_layers), (3, 3, 2));
        assert_eq!(c.perception, Perception::Conv3x3);
        assert_eq!(c.norm, Norm::Instance);
        assert!(c.residual && c.reset_gate);
        assert_eq!(c.update_prob, 0.5);
        c.validate().unwrap();
    }

    #[test]
    fn nonsense_is_rejected_with_the_field_named() {
        let bad = |f: fn(&mut CellConfig), field: &str| {
            let mut c = CellConfig::default();
            f(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(field), "{msg}");
        };
        bad(|c| c.state_channels = 0, "state_channels");
        bad(|c| c.hidden_channels = 0, "hidden_channels");
        bad(|c| c.env_channels = 0, "env_channels");
        bad(|c| c.num_classes = 0, "num_classes");
        bad(|c| c.update_prob = 0.0, "update_prob");
        bad(|c| c.update_prob = 1.5, "update_prob");
        bad(|c| c.update_prob = f64::NAN, "update_prob");
    }

    #[test]
    fn names_parse_back() {
        for p in [
            Perception::Conv3x3,
            Perception::Depthwise,
            Perception::RandomDepthwise,
        ] {
            assert_eq!(p.name().parse::<Perception>().unwrap(), p);
        }
        for n in [Norm::None, Norm::Batch, Norm::Instance, Norm::Channel] {
            assert_eq!(n.name().parse::<Norm>().unwrap(), n);
        }
        assert!("conv5x5".parse::<Perception>().is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = CellConfig {
            perception: Perception::RandomDepthwise,
            norm: Norm::Channel,
            ..CellConfig::default()
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CellConfig>(&s).unwrap(), c);
    }
}
