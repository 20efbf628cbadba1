//! A model that can be trained and saved: [`Trainable`], the one trait
//! behind model files of either kind.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ca_core::{CellModel, CellRule, NamedParam, ParamGroup};
use ca_hires::HiresModel;

/// A [`CellModel`] that can be trained and saved: its tensors, and the
/// metadata a loader needs to rebuild it ([`crate::load_model`]).
pub trait Trainable: CellModel + std::fmt::Debug {
    /// Every tensor of the model with its name and trainability; the
    /// optimizer updates the trainable ones, checkpoints store them all.
    fn named_params(&self) -> Vec<NamedParam>;

    /// Metadata that lets a loader rebuild the model (its config, its
    /// kind); every key starts with `ca.`.
    fn metadata(&self) -> HashMap<String, String>;

    /// Stride-2 levels between image and state: 0 for one cell per pixel,
    /// `k` when the state grid is `2^k` times smaller than the image.
    fn levels(&self) -> usize {
        let side = 1 << 12;
        let (h, _) = self.state_size((side, side));
        (side / h.max(1)).trailing_zeros() as usize
    }

    /// Number of parameters the optimizer updates.
    fn trainable_params(&self) -> usize {
        self.named_params()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.var.elem_count())
            .sum()
    }

    /// One line on the parts' parameter counts, e.g. `rule 8350, reset gate
    /// 33, classifier 99` (with `encoder` and `decoder` parts for a
    /// high-resolution model).
    fn describe_params(&self) -> String {
        let mut parts: Vec<(&str, usize)> = Vec::new();
        for p in self.named_params() {
            let part = if p.name.starts_with("encoder.") {
                "encoder"
            } else if p.name.starts_with("decoder.") {
                "decoder"
            } else {
                match p.group {
                    ParamGroup::Rule => "rule",
                    ParamGroup::ResetGate => "reset gate",
                    ParamGroup::Classifier => "classifier",
                }
            };
            match parts.iter_mut().find(|(name, _)| *name == part) {
                Some((_, n)) => *n += p.var.elem_count(),
                None => parts.push((part, p.var.elem_count())),
            }
        }
        let mut line: Vec<String> = parts.iter().map(|(n, c)| format!("{n} {c}")).collect();
        if self.levels() > 0 {
            line.push(format!("levels {}", self.levels()));
        }
        line.join(", ")
    }
}

impl Trainable for CellRule {
    fn named_params(&self) -> Vec<NamedParam> {
        self.params().named()
    }

    fn metadata(&self) -> HashMap<String, String> {
        self.to_safetensors_parts().1
    }

    fn levels(&self) -> usize {
        0
    }
}

impl Trainable for HiresModel {
    fn named_params(&self) -> Vec<NamedParam> {
        HiresModel::named_params(self)
    }

    fn metadata(&self) -> HashMap<String, String> {
        HiresModel::metadata(self)
    }

    fn levels(&self) -> usize {
        HiresModel::levels(self)
    }
}

macro_rules! forward_trainable {
    ($($ptr:ty),*) => {$(
        /// Forwards to the model pointed to.
        impl<M: Trainable + ?Sized> Trainable for $ptr {
            fn named_params(&self) -> Vec<NamedParam> {
                (**self).named_params()
            }
            fn metadata(&self) -> HashMap<String, String> {
                (**self).metadata()
            }
            fn levels(&self) -> usize {
                (**self).levels()
            }
        }
    )*};
}

forward_trainable!(&M, Box<M>, Rc<M>, Arc<M>);
