//! The U-Net: config, layers, seeded initialisation, the two forward passes
//! and the named parameters.

use ca_core::{ImageNorm, InvalidValue, NamedParam, ParamGroup, ShapeError};
use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::{Result, UNetError};

/// Channels of the input images (RGB).
pub const IMAGE_CHANNELS: usize = 3;
/// The largest [`UNetConfig::width`] accepted.
pub const MAX_WIDTH: usize = 256;
/// Image sides are padded (zeros, bottom and right) to a multiple of this:
/// three 2x2 poolings.
pub const SIDE_MULTIPLE: usize = 8;
/// The `eps` added to the variance in BatchNorm.
pub const BN_EPS: f64 = 1e-5;
/// Weight of the batch statistics in the running-statistics update
/// (`running = (1 - m) * running + m * batch`, as PyTorch).
pub const BN_MOMENTUM: f64 = 0.1;

/// The size of a [`UNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Channels `w` of the full-size stage; the deeper stages have `2w` and
    /// `4w`. In `1..=256`.
    pub width: usize,
    /// Output classes (logit channels), at least 2.
    pub classes: usize,
    /// Standardisation applied to the images first (none: read as they are).
    pub image_norm: Option<ImageNorm>,
}

impl Default for UNetConfig {
    /// Width 11, 3 classes (background, object, boundary), no
    /// standardisation: 47,952 trainable parameters.
    fn default() -> Self {
        UNetConfig {
            width: 11,
            classes: 3,
            image_norm: None,
        }
    }
}

impl UNetConfig {
    /// Checks every field; the error names the field at fault.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_WIDTH).contains(&self.width) {
            let reason = format!("must lie in 1..={MAX_WIDTH}");
            return Err(InvalidValue::new("width", self.width, reason).into());
        }
        if self.classes < 2 {
            return Err(InvalidValue::new("classes", self.classes, "must be at least 2").into());
        }
        if let Some(norm) = &self.image_norm {
            norm.validate().map_err(|e| match e.invalid_field() {
                Some(v) => UNetError::InvalidConfig(v.clone()),
                None => e.into(),
            })?;
        }
        Ok(())
    }
}

/// A tensor of `shape` drawn normal with standard deviation `std`.
fn normal(rng: &mut StdRng, shape: &[usize], std: f64, device: &Device) -> Result<Var> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| (std * rng.sample::<f64, _>(StandardNormal)) as f32)
        .collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?)
}

/// A tensor `[n]` holding `value` everywhere.
fn filled(value: f32, n: usize, device: &Device) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::full(value, n, device)?)?)
}

/// A per-channel vector `[C]` as `[1, C, 1, 1]`, to broadcast over images.
fn channels(v: &Tensor) -> Result<Tensor> {
    Ok(v.reshape((1, (), 1, 1))?)
}

/// A 1x1 convolution without bias: weight `[O, C]`, `x` `[B, C, h, w]` ->
/// `[B, O, h * w]`.
fn pointwise(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(weight.broadcast_matmul(&x.reshape((b, c, h * w))?)?)
}

/// A 2x2 stride-2 transposed convolution with bias, `[B, C, h, w]` ->
/// `[B, O, 2h, 2w]`, weight `[C, O, 2, 2]` (candle's `conv_transpose2d`
/// layout), bias `[O]`. The kernel's four taps never overlap, so this is a
/// 1x1 convolution to `4O` channels followed by depth-to-space, which is
/// much faster on the CPU than candle's direct transposed convolution.
pub(crate) fn up_conv(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let o = weight.dim(1)?;
    let y = pointwise(x, &weight.reshape((c, o * 4))?.t()?)?;
    let y = y
        .reshape((b, o, 2, 2, h, w))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((b, o, 2 * h, 2 * w))?;
    Ok(y.broadcast_add(&channels(bias)?)?)
}

/// conv3x3 (padding 1, no bias) -> BatchNorm -> ReLU.
#[derive(Debug, Clone)]
struct Block {
    /// `[out, in, 3, 3]`.
    conv: Var,
    /// BatchNorm scale `[out]`.
    gamma: Var,
    /// BatchNorm shift `[out]`.
    beta: Var,
    /// `[out]`, not trained.
    running_mean: Var,
    /// `[out]`, not trained.
    running_var: Var,
}

impl Block {
    /// Kaiming-normal convolution (fan-in `9 * c_in`, ReLU gain), gamma 1,
    /// beta 0, running mean 0 and variance 1.
    fn new(c_in: usize, c_out: usize, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let std = (2.0 / (9 * c_in) as f64).sqrt();
        Ok(Block {
            conv: normal(rng, &[c_out, c_in, 3, 3], std, device)?,
            gamma: filled(1.0, c_out, device)?,
            beta: filled(0.0, c_out, device)?,
            running_mean: filled(0.0, c_out, device)?,
            running_var: filled(1.0, c_out, device)?,
        })
    }

    /// `[B, in, h, w]` -> `[B, out, h, w]`; with `train`, normalised by the
    /// batch statistics, which update the running ones.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = x.conv2d(self.conv.as_tensor(), 1, 1, 1, 1)?;
        let (centered, var) = if train {
            let mean = y.mean_keepdim((0, 2, 3))?;
            let centered = y.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
            let (b, _, h, w) = y.dims4()?;
            let n = (b * h * w) as f64;
            let m = BN_MOMENTUM;
            let update = |running: &Var, batch: &Tensor, scale: f64| -> Result<()> {
                let batch = batch.detach().flatten_all()?.affine(m * scale, 0.0)?;
                let new = running.as_tensor().affine(1.0 - m, 0.0)?.add(&batch)?;
                Ok(running.set(&new.detach())?)
            };
            update(&self.running_mean, &mean, 1.0)?;
            update(&self.running_var, &var, n / (n - 1.0))?;
            (centered, var)
        } else {
            let centered = y.broadcast_sub(&channels(self.running_mean.as_tensor())?)?;
            (centered, channels(self.running_var.as_tensor())?)
        };
        let scale = var
            .affine(1.0, BN_EPS)?
            .sqrt()?
            .recip()?
            .broadcast_mul(&channels(self.gamma.as_tensor())?)?;
        let out = centered
            .broadcast_mul(&scale)?
            .broadcast_add(&channels(self.beta.as_tensor())?)?;
        Ok(out.relu()?)
    }

    fn named(&self, prefix: &str, out: &mut Vec<NamedParam>) {
        for (suffix, var, trainable) in [
            ("conv.weight", &self.conv, true),
            ("bn.weight", &self.gamma, true),
            ("bn.bias", &self.beta, true),
            ("bn.running_mean", &self.running_mean, false),
            ("bn.running_var", &self.running_var, false),
        ] {
            out.push(param(format!("{prefix}.{suffix}"), var, trainable));
        }
    }
}

fn param(name: String, var: &Var, trainable: bool) -> NamedParam {
    let group = if name.starts_with("head.") {
        ParamGroup::Classifier
    } else {
        ParamGroup::Rule
    };
    NamedParam {
        name,
        var: var.clone(),
        group,
        trainable,
    }
}

/// A 2x2 stride-2 transposed convolution with bias, `c -> c` channels.
#[derive(Debug, Clone)]
struct Up {
    /// `[c, c, 2, 2]`.
    weight: Var,
    /// `[c]`.
    bias: Var,
}

impl Up {
    /// Kaiming-normal weight (ReLU gain, fan-in `c`: each output pixel sees
    /// one tap of every input channel), zero bias.
    fn new(c: usize, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let std = (2.0 / c as f64).sqrt();
        Ok(Up {
            weight: normal(rng, &[c, c, 2, 2], std, device)?,
            bias: filled(0.0, c, device)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        up_conv(x, self.weight.as_tensor(), self.bias.as_tensor())
    }
}

/// A small U-Net for segmentation (see the crate documentation for the
/// architecture and shapes). Cloning is cheap and clones share their
/// parameters, running statistics included.
#[derive(Debug, Clone)]
pub struct UNet {
    config: UNetConfig,
    device: Device,
    enc0: [Block; 2],
    enc1: [Block; 2],
    enc2: [Block; 2],
    bottleneck: Block,
    up2: Up,
    dec2: Block,
    up1: Up,
    dec1: Block,
    up0: Up,
    dec0: Block,
    /// `[classes, w]`.
    head_weight: Var,
    /// `[classes]`.
    head_bias: Var,
}

impl UNet {
    /// A fresh model drawn from `seed` (the same seed gives the same
    /// weights): 3x3 and transposed convolutions Kaiming-normal with the
    /// ReLU gain, BatchNorm gamma 1 and beta 0, running mean 0 and variance
    /// 1, biases 0, head weight normal with standard deviation 0.01.
    pub fn new(config: UNetConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let (w, rng, dev) = (config.width, &mut StdRng::seed_from_u64(seed), device);
        Ok(UNet {
            enc0: [
                Block::new(IMAGE_CHANNELS, w, rng, dev)?,
                Block::new(w, w, rng, dev)?,
            ],
            enc1: [Block::new(w, w, rng, dev)?, Block::new(w, w, rng, dev)?],
            enc2: [
                Block::new(w, 2 * w, rng, dev)?,
                Block::new(2 * w, 2 * w, rng, dev)?,
            ],
            bottleneck: Block::new(2 * w, 4 * w, rng, dev)?,
            up2: Up::new(4 * w, rng, dev)?,
            dec2: Block::new(6 * w, 2 * w, rng, dev)?,
            up1: Up::new(2 * w, rng, dev)?,
            dec1: Block::new(3 * w, w, rng, dev)?,
            up0: Up::new(w, rng, dev)?,
            dec0: Block::new(2 * w, w, rng, dev)?,
            head_weight: normal(rng, &[config.classes, w], 0.01, dev)?,
            head_bias: filled(0.0, config.classes, dev)?,
            device: device.clone(),
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Inference: logits `[B, classes, H, W]` of images `[B, 3, H, W]`
    /// (pixel values in `[0, 1]`), BatchNorm using the running statistics.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        self.run(images, false)
    }

    /// Inference with optional flip test-time augmentation: the softmax
    /// probabilities `[B, classes, H, W]` of [`UNet::forward`], with
    /// `flip` averaged with those of the horizontally mirrored images
    /// (mirrored back): the U-Net's counterpart of a colony's ensemble.
    pub fn probabilities(&self, images: &Tensor, flip: bool) -> Result<Tensor> {
        let p = softmax_classes(&self.forward(images)?)?;
        if !flip {
            return Ok(p);
        }
        let mirrored = mirror(&self.forward(&mirror(images)?)?)?;
        Ok(((p + softmax_classes(&mirrored)?)? * 0.5)?)
    }

    /// Training: logits `[B, classes, H, W]` of images `[B, 3, H, W]`,
    /// BatchNorm using the batch's statistics (mean and biased variance
    /// over `B, H, W` per channel, zero padding included), and updating the
    /// running statistics in place (momentum 0.1; the running variance
    /// takes the unbiased batch variance, as PyTorch). Gradients flow to
    /// every trainable parameter.
    ///
    /// # Errors
    ///
    /// [`UNetError::Shape`] for images not `[B, 3, H, W]`, or when the
    /// bottleneck would hold one value per
    /// channel (`B * ceil(H/8) * ceil(W/8) == 1`): no variance to estimate.
    pub fn forward_train(&self, images: &Tensor) -> Result<Tensor> {
        self.run(images, true)
    }

    fn run(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let shape_error = |expected: &str| {
            let what = "images";
            UNetError::Shape(ShapeError::new(what, expected, images.dims()))
        };
        let (b, h, w) = match images.dims() {
            &[b, IMAGE_CHANNELS, h, w] if b * h * w > 0 => (b, h, w),
            _ => return Err(shape_error("[B, 3, H, W], none of them 0")),
        };
        let (hp, wp) = (
            h.next_multiple_of(SIDE_MULTIPLE),
            w.next_multiple_of(SIDE_MULTIPLE),
        );
        if train && b * (hp / SIDE_MULTIPLE) * (wp / SIDE_MULTIPLE) < 2 {
            return Err(shape_error(
                "B * ceil(H/8) * ceil(W/8) > 1 in training (BatchNorm needs 2 values per channel)",
            ));
        }
        let x = ca_core::standardise(self.config.image_norm.as_ref(), images)?;
        let x = x
            .pad_with_zeros(2, 0, hp - h)?
            .pad_with_zeros(3, 0, wp - w)?;
        let pair = |blocks: &[Block; 2], x: &Tensor| -> Result<Tensor> {
            blocks[1].forward(&blocks[0].forward(x, train)?, train)
        };
        let e0 = pair(&self.enc0, &x)?;
        let e1 = pair(&self.enc1, &e0.max_pool2d(2)?)?;
        let e2 = pair(&self.enc2, &e1.max_pool2d(2)?)?;
        let mid = self.bottleneck.forward(&e2.max_pool2d(2)?, train)?;
        let d2 = Tensor::cat(&[&self.up2.forward(&mid)?, &e2], 1)?;
        let d2 = self.dec2.forward(&d2, train)?;
        let d1 = Tensor::cat(&[&self.up1.forward(&d2)?, &e1], 1)?;
        let d1 = self.dec1.forward(&d1, train)?;
        let d0 = Tensor::cat(&[&self.up0.forward(&d1)?, &e0], 1)?;
        let d0 = self.dec0.forward(&d0, train)?;
        let logits = pointwise(&d0, self.head_weight.as_tensor())?
            .reshape((b, self.config.classes, hp, wp))?
            .broadcast_add(&channels(self.head_bias.as_tensor())?)?;
        Ok(logits.narrow(2, 0, h)?.narrow(3, 0, w)?)
    }

    /// Every tensor with its stable name (the safetensors key): the blocks
    /// `enc0.0`, `enc0.1`, `enc1.0`, `enc1.1`, `enc2.0`, `enc2.1`,
    /// `bottleneck`, `dec2`, `dec1`, `dec0`, each as `{block}.conv.weight`
    /// `[out, in, 3, 3]`, `{block}.bn.weight|bias` `[out]` and
    /// `{block}.bn.running_mean|running_var` `[out]` (not trainable); the
    /// transposed convolutions `up2`, `up1`, `up0` as `{up}.weight`
    /// `[c, c, 2, 2]` and `{up}.bias` `[c]`; `head.weight` `[classes, w]`
    /// and `head.bias` `[classes]`. The head is in
    /// [`ParamGroup::Classifier`], everything else in [`ParamGroup::Rule`]
    /// (the groups only split counts).
    pub fn named_params(&self) -> Vec<NamedParam> {
        let mut out = Vec::new();
        let blocks = [
            ("enc0.0", &self.enc0[0]),
            ("enc0.1", &self.enc0[1]),
            ("enc1.0", &self.enc1[0]),
            ("enc1.1", &self.enc1[1]),
            ("enc2.0", &self.enc2[0]),
            ("enc2.1", &self.enc2[1]),
            ("bottleneck", &self.bottleneck),
            ("dec2", &self.dec2),
            ("dec1", &self.dec1),
            ("dec0", &self.dec0),
        ];
        for (prefix, block) in blocks {
            block.named(prefix, &mut out);
        }
        for (prefix, up) in [("up2", &self.up2), ("up1", &self.up1), ("up0", &self.up0)] {
            out.push(param(format!("{prefix}.weight"), &up.weight, true));
            out.push(param(format!("{prefix}.bias"), &up.bias, true));
        }
        out.push(param("head.weight".into(), &self.head_weight, true));
        out.push(param("head.bias".into(), &self.head_bias, true));
        out
    }

    /// Number of trainable parameters (the running statistics not counted):
    /// 47,952 for the default config.
    pub fn trainable_params(&self) -> usize {
        self.named_params()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.var.elem_count())
            .sum()
    }
}

/// Softmax over the class axis of logits `[B, C, H, W]`.
fn softmax_classes(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(1)?;
    let e = logits.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(1)?)?)
}

/// `[B, C, H, W]` mirrored left to right.
fn mirror(t: &Tensor) -> Result<Tensor> {
    let w = t.dim(3)?;
    let reversed: Vec<u32> = (0..w as u32).rev().collect();
    let index = Tensor::new(reversed.as_slice(), t.device())?;
    Ok(t.index_select(&index, 3)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn cpu() -> Device {
        Device::Cpu
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn flip_averaging_is_the_mean_of_both_passes() {
        let model = UNet::new(UNetConfig::default(), 1, &cpu()).unwrap();
        let images = Tensor::rand(0f32, 1.0, (2, 3, 16, 24), &cpu()).unwrap();
        let plain = model.probabilities(&images, false).unwrap();
        let sums = plain.sum(1).unwrap();
        assert!(max_diff(&sums, &sums.ones_like().unwrap()) < 1e-5);
        let flipped = model.probabilities(&images, true).unwrap();
        let other = mirror(
            &model
                .probabilities(&mirror(&images).unwrap(), false)
                .unwrap(),
        )
        .unwrap();
        let want = ((plain + other).unwrap() * 0.5).unwrap();
        assert!(max_diff(&flipped, &want) < 1e-6);
        // Mirroring twice is the identity.
        assert_eq!(
            max_diff(&mirror(&mirror(&images).unwrap()).unwrap(), &images),
            0.0
        );
    }

    #[test]
    fn default_model_has_the_expected_parameter_count() {
        let n = UNet::new(UNetConfig::default(), 0, &cpu())
            .unwrap()
            .trainable_params();
        assert_eq!(n, 47_952);
        assert!((n as f64 - 47_886.0).abs() / 47_886.0 < 0.01);
    }

    #[test]
    fn names_are_unique_and_grouped() {
        let params = UNet::new(UNetConfig::default(), 0, &cpu())
            .unwrap()
            .named_params();
        let names: std::collections::HashSet<_> = params.iter().map(|p| &p.name).collect();
        assert_eq!(names.len(), params.len());
        for p in &params {
            assert_eq!(p.trainable, !p.name.contains("running"), "{}", p.name);
            let head = p.group == ParamGroup::Classifier;
            assert_eq!(head, p.name.starts_with("head."), "{}", p.name);
        }
        let dims = |n: &str| {
            params
                .iter()
                .find(|p| p.name == n)
                .unwrap()
                .var
                .dims()
                .to_vec()
        };
        assert_eq!(dims("dec2.conv.weight"), [22, 66, 3, 3]);
        assert_eq!(dims("up2.weight"), [44, 44, 2, 2]);
        assert_eq!(dims("head.weight"), [3, 11]);
    }

    #[test]
    fn up_conv_equals_candles_transposed_convolution() {
        let x = Tensor::randn(0f32, 1.0, (2, 5, 3, 4), &cpu()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (5, 7, 2, 2), &cpu()).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 7, &cpu()).unwrap();
        let want = x.conv_transpose2d(&w, 0, 0, 2, 1).unwrap();
        let want = want.broadcast_add(&channels(&bias).unwrap()).unwrap();
        let got = up_conv(&x, &w, &bias).unwrap();
        assert_eq!(got.dims(), [2, 7, 6, 8]);
        assert!(max_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn odd_sizes_give_logits_of_the_image_size() {
        let norm = ImageNorm::new([0.5; 3], [0.25; 3], 1.0).unwrap();
        let config = UNetConfig {
            image_norm: Some(norm),
            ..UNetConfig::default()
        };
        let model = UNet::new(config, 1, &cpu()).unwrap();
        let images = Tensor::rand(0f32, 1.0, (2, 3, 45, 50), &cpu()).unwrap();
        assert_eq!(model.forward(&images).unwrap().dims(), [2, 3, 45, 50]);
        assert_eq!(model.forward_train(&images).unwrap().dims(), [2, 3, 45, 50]);
        let four = Tensor::zeros((1, 4, 8, 8), DType::F32, &cpu()).unwrap();
        let msg = model.forward(&four).err().unwrap().to_string();
        assert!(msg.contains("images"), "{msg}");
        let single = Tensor::zeros((1, 3, 8, 8), DType::F32, &cpu()).unwrap();
        let msg = model.forward_train(&single).err().unwrap().to_string();
        assert!(msg.contains("BatchNorm"), "{msg}");
    }

    #[test]
    fn same_seed_same_weights() {
        let values = |seed| -> Vec<Vec<f32>> {
            let model = UNet::new(UNetConfig::default(), seed, &cpu()).unwrap();
            let params = model.named_params().into_iter();
            params
                .map(|p| p.var.flatten_all().unwrap().to_vec1().unwrap())
                .collect()
        };
        assert_eq!(values(7), values(7));
        assert_ne!(values(7), values(8));
    }

    #[test]
    fn batch_norm_uses_batch_statistics_and_updates_running_ones() {
        let rng = &mut StdRng::seed_from_u64(3);
        let block = Block::new(2, 3, rng, &cpu()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 2, 5, 6), &cpu()).unwrap();
        block.forward(&x, true).unwrap();
        let y = x.conv2d(block.conv.as_tensor(), 1, 1, 1, 1).unwrap();
        let y = y.transpose(0, 1).unwrap().flatten_from(1).unwrap(); // [C, n]
        let mean = y.mean_keepdim(1).unwrap();
        let var = y.var_keepdim(1).unwrap(); // unbiased
        let want_mean = (mean.flatten_all().unwrap() * 0.1).unwrap();
        let want_var = var.flatten_all().unwrap().affine(0.1, 0.9).unwrap();
        assert!(max_diff(block.running_mean.as_tensor(), &want_mean) < 1e-5);
        assert!(max_diff(block.running_var.as_tensor(), &want_var) < 1e-5);
        // Inference leaves the running statistics as they are.
        let before = block.running_mean.as_tensor().copy().unwrap();
        block.forward(&x, false).unwrap();
        assert_eq!(max_diff(block.running_mean.as_tensor(), &before), 0.0);
    }

    #[test]
    fn gradients_reach_every_trainable_var_and_no_running_stat() {
        let config = UNetConfig {
            width: 4,
            ..UNetConfig::default()
        };
        let model = UNet::new(config, 2, &cpu()).unwrap();
        let images = Tensor::rand(0f32, 1.0, (2, 3, 16, 12), &cpu()).unwrap();
        let loss = model
            .forward_train(&images)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        for p in model.named_params() {
            assert_eq!(grads.get(&p.var).is_some(), p.trainable, "{}", p.name);
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        for (config, field) in [
            (
                UNetConfig {
                    width: 0,
                    ..UNetConfig::default()
                },
                "width",
            ),
            (
                UNetConfig {
                    width: 257,
                    ..UNetConfig::default()
                },
                "width",
            ),
            (
                UNetConfig {
                    classes: 1,
                    ..UNetConfig::default()
                },
                "classes",
            ),
            (
                UNetConfig {
                    image_norm: Some(ImageNorm {
                        mean: [0.5; 3],
                        std: [0.0; 3],
                        gain: 1.0,
                    }),
                    ..UNetConfig::default()
                },
                "image_norm.std",
            ),
        ] {
            let msg = config.validate().unwrap_err().to_string();
            assert!(msg.contains(field) && msg.contains("U-Net"), "{msg}");
        }
    }
}
