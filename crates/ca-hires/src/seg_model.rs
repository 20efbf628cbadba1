//! [`HiresModel`] as a [`ca_sched::SegModel`] (feature `sched`, on by
//! default), so that [`ca_sched::Trainer`] and [`ca_sched::evaluate_iou`]
//! run it unchanged.

use std::collections::HashMap;

use ca_core::{CellRule, CoreError, NamedParam};
use ca_sched::{SchedError, SegModel};
use candle_core::Tensor;

use crate::error::HiresError;
use crate::model::HiresModel;

impl From<HiresError> for SchedError {
    fn from(e: HiresError) -> Self {
        match e {
            HiresError::InvalidConfig {
                field,
                value,
                reason,
            } => SchedError::InvalidConfig {
                field,
                value,
                reason,
            },
            HiresError::Shape {
                what,
                expected,
                got,
            } => SchedError::Core(CoreError::Shape {
                what,
                expected,
                got,
            }),
            HiresError::Checkpoint { path, reason } => SchedError::Checkpoint { path, reason },
            HiresError::Core(e) => SchedError::Core(e),
            HiresError::Candle(e) => SchedError::Candle(e),
        }
    }
}

impl SegModel for HiresModel {
    fn rule(&self) -> &CellRule {
        HiresModel::rule(self)
    }

    fn environment(&self, images: &Tensor) -> ca_sched::Result<Tensor> {
        Ok(HiresModel::environment(self, images)?)
    }

    fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> ca_sched::Result<Tensor> {
        Ok(HiresModel::logits(self, state, out_size)?)
    }

    fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
        HiresModel::state_size(self, image_size)
    }

    fn named_params(&self) -> Vec<NamedParam> {
        HiresModel::named_params(self)
    }

    fn metadata(&self) -> HashMap<String, String> {
        HiresModel::metadata(self)
    }
}
