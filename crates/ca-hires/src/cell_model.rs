//! [`HiresModel`] as a [`ca_core::CellModel`], so that [`ca_core::Colony`]
//! evolves it (environment from the encoder, logits from the decoder at the
//! images' resolution) and every tool that runs a `CellModel` runs it
//! unchanged.

use ca_core::{CellModel, CellRule, CoreError};
use candle_core::Tensor;

use crate::error::HiresError;
use crate::model::HiresModel;

impl From<HiresError> for CoreError {
    fn from(e: HiresError) -> Self {
        match e {
            HiresError::Shape(ca_core::ShapeError {
                what,
                expected,
                got,
            }) => CoreError::Shape(ca_core::ShapeError {
                what,
                expected,
                got,
            }),
            HiresError::Checkpoint { path, reason } => CoreError::Checkpoint { path, reason },
            HiresError::Core(e) => e,
            HiresError::Candle(e) => CoreError::Candle(e),
            e @ HiresError::InvalidConfig(ca_core::InvalidValue { .. }) => {
                CoreError::Model(e.to_string())
            }
        }
    }
}

impl CellModel for HiresModel {
    fn rule(&self) -> &CellRule {
        HiresModel::rule(self)
    }

    fn environment(&self, images: &Tensor) -> ca_core::Result<Tensor> {
        Ok(HiresModel::environment(self, images)?)
    }

    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> ca_core::Result<Tensor> {
        Ok(HiresModel::logits(self, state, out_size)?)
    }

    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
        HiresModel::state_size(self, image_size)
    }
}
