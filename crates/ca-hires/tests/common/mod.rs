//! Helpers shared by the integration tests.

#![allow(dead_code)]

use ca_core::{CellConfig, Norm};
use ca_hires::HiresModel;
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// A small rule config for a high-resolution model.
pub fn small_config() -> CellConfig {
    CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        env_channels: 8,
        norm: Norm::Instance,
        ..CellConfig::default()
    }
}

/// A small model with `levels` levels.
pub fn small_model(levels: usize, seed: u64) -> HiresModel {
    HiresModel::new(small_config(), levels, seed, &Device::Cpu).unwrap()
}

/// A tensor of `shape` with entries uniform in `(-1, 1)`.
pub fn uniform(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Labels `[b, h, w]` with classes drawn in `0..3`.
pub fn labels(b: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<u32> = (0..b * h * w).map(|_| rng.random_range(0..3)).collect();
    Tensor::from_vec(v, (b, h, w), &Device::Cpu).unwrap()
}

/// A fresh, empty directory `$TMPDIR/ca-hires-NAME-XXXXXX`, removed on drop.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ca-hires-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// The largest absolute elementwise difference of two tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
