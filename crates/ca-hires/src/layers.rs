//! The strided encoder (image -> environment) and the transposed-convolution
//! decoder (state -> logits), their tensor names and shapes.

use ca_core::{Layer, NamedParam, ParamGroup};
use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{HiresError, Result};
use crate::upsample::conv_transpose_s2;

/// Channels of the input images (RGB).
pub const IMAGE_CHANNELS: usize = 3;
/// Channels of the environment the encoder makes (and the cell rule's
/// `env_channels`), as in the paper (section 5.4).
pub const ENV_CHANNELS: usize = 8;
/// Channels between two stacked decoder layers.
pub const DECODER_CHANNELS: usize = 8;
/// The most stride-2 levels a model may have (factor 8: 384 -> 48).
pub const MAX_LEVELS: usize = 3;

/// `(name, shape)` of every tensor of an encoder with `levels` layers, in
/// application order: `encoder.{k}.weight` `[8, in, 3, 3]` (`in` is 3 for
/// the first layer, 8 after) and `encoder.{k}.bias` `[8]`.
pub fn encoder_shapes(levels: usize) -> Vec<(String, Vec<usize>)> {
    (0..levels)
        .flat_map(|k| {
            let input = if k == 0 { IMAGE_CHANNELS } else { ENV_CHANNELS };
            layer_shapes("encoder", k, vec![ENV_CHANNELS, input, 3, 3])
        })
        .collect()
}

/// `(name, shape)` of every tensor of a decoder with `levels` layers from
/// `state_channels` to `num_classes`, in application order. Weights are in
/// candle's transposed-convolution layout `[in, out, 3, 3]`; biases `[out]`.
/// The first layer reads the state (`S`), the last writes the classes;
/// layers in between have [`DECODER_CHANNELS`] channels; with one level the
/// single layer maps `S -> classes`.
pub fn decoder_shapes(
    levels: usize,
    state_channels: usize,
    num_classes: usize,
) -> Vec<(String, Vec<usize>)> {
    (0..levels)
        .flat_map(|k| {
            let input = if k == 0 {
                state_channels
            } else {
                DECODER_CHANNELS
            };
            let output = if k + 1 == levels {
                num_classes
            } else {
                DECODER_CHANNELS
            };
            let mut shapes = layer_shapes("decoder", k, vec![input, output, 3, 3]);
            shapes[1].1 = vec![output];
            shapes
        })
        .collect()
}

fn layer_shapes(prefix: &str, k: usize, weight: Vec<usize>) -> Vec<(String, Vec<usize>)> {
    let bias = vec![weight[0]];
    vec![
        (format!("{prefix}.{k}.weight"), weight),
        (format!("{prefix}.{k}.bias"), bias),
    ]
}

/// The side of the grid after `levels` stride-2 convolutions with kernel 3
/// and padding 1: `ceil(n / 2^levels)`.
pub fn reduced_size(n: usize, levels: usize) -> usize {
    n.div_ceil(1 << levels)
}

/// The sides `[n, ceil(n/2), ..., ceil(n/2^levels)]` along the encoder.
fn side_chain(n: usize, levels: usize) -> Vec<usize> {
    (0..=levels).map(|l| reduced_size(n, l)).collect()
}

/// Checks that `levels` is in `1..=MAX_LEVELS`.
pub(crate) fn check_levels(levels: usize) -> Result<()> {
    if !(1..=MAX_LEVELS).contains(&levels) {
        return Err(HiresError::InvalidConfig(ca_core::InvalidValue {
            name: "levels",
            value: levels.to_string(),
            reason: format!("must lie in 1..={MAX_LEVELS} (a factor of 2, 4 or 8)"),
        }));
    }
    Ok(())
}

/// Layers with fresh weights and biases, each uniform in
/// `(-1/sqrt(fan_in), 1/sqrt(fan_in))` with `fan_in = in_channels * 9`
/// (PyTorch's default for a convolution).
fn init_layers(
    shapes: &[(String, Vec<usize>)],
    fan_in_dim: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Layer>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tensors = Vec::with_capacity(shapes.len());
    let mut bound = 1.0;
    for (name, shape) in shapes {
        if name.ends_with(".weight") {
            bound = init_bound(shape, fan_in_dim);
        }
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        tensors.push(Tensor::from_vec(values, shape.as_slice(), device)?);
    }
    pair_up(tensors)
}

/// The bound of a fresh 3x3 layer's uniform weights and bias,
/// `1/sqrt(fan_in)` with `fan_in = weight_shape[fan_in_dim] * 9`
/// (PyTorch's default for a convolution).
pub(crate) fn init_bound(weight_shape: &[usize], fan_in_dim: usize) -> f32 {
    1.0 / ((weight_shape[fan_in_dim] * 9) as f32).sqrt()
}

/// Weight/bias pairs from tensors in the order of the shape lists.
pub(crate) fn pair_up(tensors: Vec<Tensor>) -> Result<Vec<Layer>> {
    tensors
        .chunks(2)
        .map(|wb| {
            Ok(Layer {
                weight: Var::from_tensor(&wb[0])?,
                bias: Var::from_tensor(&wb[1])?,
            })
        })
        .collect()
}

/// The tensors of `layers` as trainable [`ParamGroup::Rule`] parameters
/// named `{prefix}.{k}.weight` and `{prefix}.{k}.bias`.
fn named(prefix: &str, layers: &[Layer]) -> Vec<NamedParam> {
    let param = |name: String, var: &Var| NamedParam {
        name,
        var: var.clone(),
        group: ParamGroup::Rule,
        trainable: true,
    };
    layers
        .iter()
        .enumerate()
        .flat_map(|(k, l)| {
            [
                param(format!("{prefix}.{k}.weight"), &l.weight),
                param(format!("{prefix}.{k}.bias"), &l.bias),
            ]
        })
        .collect()
}

fn count(layers: &[Layer]) -> usize {
    layers
        .iter()
        .map(|l| l.weight.elem_count() + l.bias.elem_count())
        .sum()
}

fn add_bias(x: &Tensor, bias: &Var) -> Result<Tensor> {
    Ok(x.broadcast_add(&bias.as_tensor().reshape((1, (), 1, 1))?)?)
}

fn shape_error(what: &'static str, expected: String, t: &Tensor) -> HiresError {
    HiresError::Shape(ca_core::ShapeError {
        what,
        expected,
        got: t.dims().to_vec(),
    })
}

/// Salt of the encoder's initialisation stream (the rule uses the plain seed).
const ENCODER_SALT: u64 = 0x41E5_0001;
/// Salt of the decoder's initialisation stream.
const DECODER_SALT: u64 = 0x41E5_0002;

/// A stack of `levels` convolutions, kernel 3, stride 2, padding 1, from the
/// image's 3 channels to [`ENV_CHANNELS`], with a ReLU between two layers
/// (none after the last, so the environment can be negative like a
/// normalized image). Maps `[B, 3, H, W]` to
/// `[B, 8, ceil(H / 2^levels), ceil(W / 2^levels)]`.
#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<Layer>,
}

impl Encoder {
    /// A fresh encoder with `levels` layers drawn from `seed`.
    pub fn new(levels: usize, seed: u64, device: &Device) -> Result<Self> {
        check_levels(levels)?;
        let layers = init_layers(&encoder_shapes(levels), 1, seed ^ ENCODER_SALT, device)?;
        Ok(Encoder { layers })
    }

    /// An encoder from layers in the shapes of [`encoder_shapes`] (checked
    /// by the caller).
    pub(crate) fn from_layers(layers: Vec<Layer>) -> Self {
        Encoder { layers }
    }

    /// Number of stride-2 layers.
    pub fn levels(&self) -> usize {
        self.layers.len()
    }

    /// The layers, weights `[8, in, 3, 3]`, biases `[8]`.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The tensors under their checkpoint names (`encoder.{k}.weight`, ...),
    /// trainable, in [`ParamGroup::Rule`].
    pub fn named(&self) -> Vec<NamedParam> {
        named("encoder", &self.layers)
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        count(&self.layers)
    }

    /// The environment `[B, 8, ceil(H / 2^levels), ceil(W / 2^levels)]` of
    /// images `[B, 3, H, W]`.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        if images.rank() != 4 || images.dim(1)? != IMAGE_CHANNELS {
            return Err(shape_error(
                "images",
                format!("[B, {IMAGE_CHANNELS}, H, W]"),
                images,
            ));
        }
        let mut x = images.clone();
        for (k, layer) in self.layers.iter().enumerate() {
            // An odd side gets an explicit zero row (column) at its end: the
            // output is the same (that row is the implicit padding of the
            // last window), and candle's conv2d backward, which derives the
            // input-gradient size from the height alone, then stays right
            // on grids whose height and width differ in parity.
            let (_, _, h, w) = x.dims4()?;
            if h % 2 == 1 {
                x = x.pad_with_zeros(2, 0, 1)?;
            }
            if w % 2 == 1 {
                x = x.pad_with_zeros(3, 0, 1)?;
            }
            x = add_bias(
                &x.conv2d(layer.weight.as_tensor(), 1, 2, 1, 1)?,
                &layer.bias,
            )?;
            if k + 1 < self.layers.len() {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// A stack of `levels` transposed convolutions, kernel 3, stride 2, padding
/// 1, from the state's `S` channels to class logits at the image's
/// resolution, with a ReLU between two layers (none after the last). Each
/// layer doubles the grid (output padding 1) and is cropped to the size the
/// matching encoder layer read, so the logits are exactly `H x W` for odd
/// sizes too; the crop drops the last row (column) only, which is what an
/// output padding of 0 would give.
#[derive(Debug, Clone)]
pub struct Decoder {
    layers: Vec<Layer>,
}

impl Decoder {
    /// A fresh decoder with `levels` layers from `state_channels` to
    /// `num_classes`, drawn from `seed` (see [`decoder_shapes`]).
    pub fn new(
        levels: usize,
        state_channels: usize,
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        check_levels(levels)?;
        let shapes = decoder_shapes(levels, state_channels, num_classes);
        let layers = init_layers(&shapes, 0, seed ^ DECODER_SALT, device)?;
        Ok(Decoder { layers })
    }

    /// A decoder from layers in the shapes of [`decoder_shapes`] (checked by
    /// the caller).
    pub(crate) fn from_layers(layers: Vec<Layer>) -> Self {
        Decoder { layers }
    }

    /// Number of stride-2 layers.
    pub fn levels(&self) -> usize {
        self.layers.len()
    }

    /// The layers, weights `[in, out, 3, 3]`, biases `[out]`.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The tensors under their checkpoint names (`decoder.{k}.weight`, ...).
    pub fn named(&self) -> Vec<NamedParam> {
        named("decoder", &self.layers)
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        count(&self.layers)
    }

    /// Logits `[B, classes, H, W]` from a state `[B, S, h, w]`, where
    /// `out_size = (H, W)` and `(h, w) = (ceil(H / 2^levels), ceil(W / 2^levels))`.
    pub fn forward(&self, state: &Tensor, out_size: (usize, usize)) -> Result<Tensor> {
        let levels = self.layers.len();
        let (hs, ws) = (
            side_chain(out_size.0, levels),
            side_chain(out_size.1, levels),
        );
        let input = self.layers[0].weight.dim(0)?;
        let expected = [hs[levels], ws[levels]];
        match state.dims() {
            [_, c, h, w] if *c == input && [*h, *w] == expected => {}
            _ => {
                return Err(shape_error(
                    "decoder input (state)",
                    format!(
                        "[B, {input}, {}, {}] for {}x{} logits",
                        expected[0], expected[1], out_size.0, out_size.1
                    ),
                    state,
                ))
            }
        }
        let mut x = state.clone();
        for (k, layer) in self.layers.iter().enumerate() {
            let level = levels - 1 - k;
            let out = (hs[level], ws[level]);
            let y = match conv_transpose_s2(&x, layer.weight.as_tensor(), out)? {
                Some(y) => y,
                None => x
                    .conv_transpose2d(layer.weight.as_tensor(), 1, 1, 2, 1)?
                    .narrow(2, 0, out.0)?
                    .narrow(3, 0, out.1)?,
            };
            x = add_bias(&y, &layer.bias)?;
            if k + 1 < levels {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_sizes_compose() {
        assert_eq!(reduced_size(96, 1), 48);
        assert_eq!(reduced_size(95, 1), 48);
        assert_eq!(reduced_size(97, 1), 49);
        assert_eq!(reduced_size(384, 3), 48);
        for n in 1..200 {
            assert_eq!(
                reduced_size(reduced_size(n, 1), 1),
                reduced_size(n, 2),
                "{n}"
            );
        }
    }

    #[test]
    fn counts_of_the_papers_models() {
        let e = Encoder::new(1, 0, &Device::Cpu).unwrap();
        let d = Decoder::new(1, 48, 3, 0, &Device::Cpu).unwrap();
        assert_eq!(e.param_count(), 8 * 3 * 9 + 8);
        assert_eq!(d.param_count(), 48 * 3 * 9 + 3);
        // 192/48 and 384/48, as in docs/RESULTS.md.
        for (levels, enc, dec) in [(2, 808, 3_683), (3, 1_392, 4_267)] {
            let e = Encoder::new(levels, 0, &Device::Cpu).unwrap();
            let d = Decoder::new(levels, 48, 3, 0, &Device::Cpu).unwrap();
            assert_eq!((e.param_count(), d.param_count()), (enc, dec));
        }
    }

    #[test]
    fn levels_out_of_range_are_rejected_by_name() {
        for bad in [0, MAX_LEVELS + 1] {
            let msg = Encoder::new(bad, 0, &Device::Cpu).unwrap_err().to_string();
            assert!(msg.contains("levels"), "{msg}");
        }
    }
}
