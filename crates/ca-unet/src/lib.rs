//! # ca-unet: a small U-Net baseline
//!
//! A plain convolutional segmenter to train and compare with the
//! cellular-automaton models of the workspace. Images `[B, 3, H, W]` (pixel
//! values in `[0, 1]`) are standardised by the config's optional
//! [`ca_core::ImageNorm`], padded with zeros at the bottom and right to
//! sides that are multiples of 8, and the logits are cropped back to
//! `[B, classes, H, W]`.
//!
//! A block is conv3x3 (padding 1, no bias) -> BatchNorm -> ReLU; `up` is a
//! 2x2 stride-2 transposed convolution with bias; `[a, b]` concatenates on
//! channels. With width `w` and padded sides `H, W`:
//!
//! | stage        | layers                                   | output                   |
//! |--------------|------------------------------------------|--------------------------|
//! | `enc0`       | block `3 -> w`, block `w -> w`            | `[B, w, H, W]`           |
//! | `enc1`       | maxpool 2x2, 2 blocks `w -> w`            | `[B, w, H/2, W/2]`       |
//! | `enc2`       | maxpool, block `w -> 2w`, block `2w -> 2w` | `[B, 2w, H/4, W/4]`      |
//! | `bottleneck` | maxpool, block `2w -> 4w`                 | `[B, 4w, H/8, W/8]`      |
//! | `dec2`       | `[up2(4w -> 4w), enc2]`, block `6w -> 2w`  | `[B, 2w, H/4, W/4]`      |
//! | `dec1`       | `[up1(2w -> 2w), enc1]`, block `3w -> w`   | `[B, w, H/2, W/2]`       |
//! | `dec0`       | `[up0(w -> w), enc0]`, block `2w -> w`     | `[B, w, H, W]`           |
//! | `head`       | conv1x1 `w -> classes` with bias          | `[B, classes, H, W]`     |
//!
//! Width 11 with 3 classes (the default) has 47,952 trainable parameters.
//! [`UNet::forward_train`] normalises with batch statistics and updates
//! the running ones; [`UNet::forward`] uses the running ones. Files:
//! [`UNet::save`] and [`UNet::load`], metadata key [`UNET_KEY`].
//!
//! ```
//! use ca_unet::{UNet, UNetConfig};
//! use candle_core::{DType, Device, Tensor};
//!
//! # fn main() -> Result<(), ca_unet::UNetError> {
//! let config = UNetConfig { width: 4, ..UNetConfig::default() };
//! let model = UNet::new(config, 0, &Device::Cpu)?;
//! let images = Tensor::zeros((1, 3, 16, 16), DType::F32, &Device::Cpu)?;
//! assert_eq!(model.forward(&images)?.dims(), [1, 3, 16, 16]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod checkpoint;
mod error;
mod model;

pub use checkpoint::{unet_config, UNET_FORMAT, UNET_KEY};
pub use error::{Result, UNetError};
pub use model::{UNet, UNetConfig, BN_EPS, BN_MOMENTUM, IMAGE_CHANNELS, MAX_WIDTH, SIDE_MULTIPLE};
