//! Helpers shared by the integration tests.

use ca_sched::TrainData;
use candle_core::{Device, Tensor};

/// The largest absolute elementwise difference of two tensors of one shape.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The update layer's weight tensor, as `ca-core` names it.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn update_weight() -> String {
    ca_core::LayerId::Update.tensor(ca_core::TensorKind::Weight)
}

/// `n` images of `size x size`: a bright 6x6 square at a sample-dependent
/// place on a dark ground, labelled 1 inside and 0 outside.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub struct Squares {
    /// Samples.
    pub n: usize,
    /// Side of the images (at least 8).
    pub size: usize,
}

impl TrainData for Squares {
    fn len(&self) -> usize {
        self.n
    }

    fn batch(&self, items: &[(usize, u64)], device: &Device) -> ca_sched::Result<(Tensor, Tensor)> {
        let (size, room) = (self.size, self.size - 7);
        let mut imgs = Vec::new();
        let mut labs = Vec::new();
        for &(i, _) in items {
            let (y0, x0) = (1 + i % room, 1 + (i * 3) % room);
            for c in 0..3 {
                for y in 0..size {
                    for x in 0..size {
                        let inside = (y0..y0 + 6).contains(&y) && (x0..x0 + 6).contains(&x);
                        imgs.push(if inside { 0.8 } else { 0.2 } + 0.01 * c as f32);
                        if c == 0 {
                            labs.push(inside as u32);
                        }
                    }
                }
            }
        }
        let b = items.len();
        Ok((
            Tensor::from_vec(imgs, (b, 3, size, size), device)?,
            Tensor::from_vec(labs, (b, size, size), device)?,
        ))
    }
}
