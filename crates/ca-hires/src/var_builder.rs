//! Building the encoder, the decoder and a whole [`HiresModel`] from a
//! [`candle_nn::VarBuilder`], as [`CellRule::from_var_builder`] builds a
//! rule: inside a larger candle model, from a memory-mapped safetensors
//! file, or as trainable variables of a [`candle_nn::VarMap`].

use ca_core::{var_builder_tensor, CellConfig, CellRule};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::error::Result;
use crate::layers::{
    check_levels, decoder_shapes, encoder_shapes, init_bound, pair_up, Decoder, Encoder,
};
use crate::model::{check_env_channels, HiresModel};

/// The layers of `shapes` (full names `{part}.{k}.weight|bias`) from `vb`
/// under `{k}.weight|bias`, created uniform in `(-1/sqrt(fan_in),
/// 1/sqrt(fan_in))` with `fan_in = shape[fan_in_dim] * 9`, as the fresh
/// layers are.
fn layers(
    vb: &VarBuilder,
    shapes: &[(String, Vec<usize>)],
    fan_in_dim: usize,
) -> Result<Vec<ca_core::Layer>> {
    let mut tensors = Vec::with_capacity(shapes.len());
    let mut bound = 1.0;
    for (name, shape) in shapes {
        if name.ends_with(".weight") {
            bound = f64::from(init_bound(shape, fan_in_dim));
        }
        let local = name.split_once('.').map_or(name.as_str(), |(_, rest)| rest);
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        tensors.push(var_builder_tensor(vb, local, shape, init)?);
    }
    pair_up(tensors)
}

impl Encoder {
    /// An encoder of `levels` layers whose tensors come from `vb` under
    /// `{k}.weight` `[8, in, 3, 3]` and `{k}.bias` `[8]` (a model file's
    /// `encoder.{k}.*` with `vb.pp("encoder")`); a builder that creates
    /// tensors draws them as [`Encoder::new`] does (not the same values).
    ///
    /// # Errors
    ///
    /// [`crate::HiresError::InvalidConfig`] for `levels` outside 1 to 3;
    /// [`crate::HiresError::Core`] naming a tensor the builder lacks or
    /// holds in another shape.
    pub fn from_var_builder(levels: usize, vb: &VarBuilder) -> Result<Self> {
        check_levels(levels)?;
        Ok(Encoder::from_layers(layers(
            vb,
            &encoder_shapes(levels),
            1,
        )?))
    }
}

/// The encoder as a candle module, `[B, 3, H, W]` ->
/// `[B, 8, ceil(H / 2^levels), ceil(W / 2^levels)]`, to sit in a
/// `candle_nn::Sequential` or any code written against `Module`. (The
/// decoder is not one: it needs the image size it decodes to, see
/// [`Decoder::forward`].)
impl candle_nn::Module for Encoder {
    fn forward(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        Encoder::forward(self, images).map_err(candle_core::Error::wrap)
    }
}

impl Decoder {
    /// A decoder of `levels` layers from `state_channels` to `num_classes`
    /// whose tensors come from `vb` under `{k}.weight` (`[in, out, 3, 3]`,
    /// see [`decoder_shapes`]) and `{k}.bias` (a model file's
    /// `decoder.{k}.*` with `vb.pp("decoder")`).
    ///
    /// # Errors
    ///
    /// As [`Encoder::from_var_builder`].
    pub fn from_var_builder(
        levels: usize,
        state_channels: usize,
        num_classes: usize,
        vb: &VarBuilder,
    ) -> Result<Self> {
        check_levels(levels)?;
        let shapes = decoder_shapes(levels, state_channels, num_classes);
        Ok(Decoder::from_layers(layers(vb, &shapes, 0)?))
    }
}

impl HiresModel {
    /// A model whose tensors come from `vb` under the names of its
    /// safetensors files: the rule's (`perceive.weight`, ...; no
    /// classifier: the decoder makes the logits, and the rule's classifier
    /// is held at zero, as in [`HiresModel::new`]), `encoder.{k}.*` and
    /// `decoder.{k}.*`. A file of [`HiresModel::save`] loads with
    /// `VarBuilder::from_mmaped_safetensors` and the config and levels of
    /// its metadata; a [`candle_nn::VarMap`] builder creates every tensor
    /// as a trainable variable (the classifier excepted).
    ///
    /// # Errors
    ///
    /// [`crate::HiresError::InvalidConfig`] for `levels` outside 1 to 3 or
    /// a config without 8 environment channels; a [`ca_core::CoreError`]
    /// naming a tensor the builder lacks or holds in another shape.
    pub fn from_var_builder(
        cell_config: CellConfig,
        levels: usize,
        vb: &VarBuilder,
    ) -> Result<Self> {
        check_levels(levels)?;
        check_env_channels(&cell_config)?;
        let encoder = Encoder::from_var_builder(levels, &vb.pp("encoder"))?;
        let decoder = Decoder::from_var_builder(
            levels,
            cell_config.state_channels,
            cell_config.num_classes,
            &vb.pp("decoder"),
        )?;
        let rule_vb = VarBuilder::from_backend(
            Box::new(ZeroClassifier { inner: vb.clone() }),
            DType::F32,
            vb.device().clone(),
        );
        let rule = CellRule::from_var_builder(cell_config, &rule_vb)?;
        HiresModel::from_parts(encoder, rule, decoder)
    }
}

/// The rule's tensors from the model's builder, with a zero classifier
/// that the builder neither holds nor creates.
struct ZeroClassifier<'a> {
    inner: VarBuilder<'a>,
}

impl ZeroClassifier<'_> {
    fn is_classifier(name: &str) -> bool {
        name.starts_with("classifier.")
    }
}

impl SimpleBackend for ZeroClassifier<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if Self::is_classifier(name) {
            return Tensor::zeros(s, dtype, dev);
        }
        self.inner.get_with_hints_dtype(s, name, h, dtype)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.inner.get_unchecked_dtype(name, dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        Self::is_classifier(name) || self.inner.contains_tensor(name)
    }
}
