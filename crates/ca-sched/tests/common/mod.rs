//! Helpers shared by the integration tests.

use candle_core::Tensor;

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
