//! `train_pets`'s command-line values are checked once, by the validators
//! of the configs they build (`CellConfig`, `TrainConfig`, `LearnerConfig`),
//! before any data is read; this module turns the field a validator names
//! into the flag that set it, so that a nonsense value fails at once with a
//! message that names the flag and the value (`--batch 0: must be at least
//! 1`) instead of a panic or an error deep inside training.

use std::fmt;

use ca_hires::MAX_LEVELS;

/// A command-line value that cannot work: the flag, the value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    /// The flag, with its dashes (`--batch`).
    pub flag: &'static str,
    /// The value given (or defaulted), printed.
    pub value: String,
    /// Why it is rejected.
    pub reason: String,
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.flag, self.value, self.reason)
    }
}

impl std::error::Error for FlagError {}

/// The `train_pets` flag that sets config field `field` (of `CellConfig`,
/// `TrainConfig`, `AdamConfig` or `LearnerConfig`), if one does.
pub fn flag_of_field(field: &str) -> Option<&'static str> {
    Some(match field {
        "state_channels" => "--state",
        "hidden_channels" => "--hidden",
        "hidden_layers" => "--hidden-layers",
        "image_norm.gain" => "--image-gain",
        "cascade" => "--levels",
        "levels" => "--levels",
        "level_steps" => "--level-steps",
        "batch" => "--batch",
        "pool_size" => "--pool",
        "target" => "--target",
        "mini_unroll" => "--mini-unroll",
        "p_image" => "--p-image",
        "p_state" => "--p-state",
        "learning_rate" => "--lr",
        "grad_norm" => "--grad-norm",
        "class_weights" => "--class-weights",
        "dice_weight" => "--dice-weight",
        "reset_bias_init" => "--reset-bias",
        "lr_schedule" => "--lr-schedule",
        "lr_floor" => "--lr-floor",
        "ema_decay" => "--ema",
        "full_unroll_fraction" => "--curriculum",
        "perception_init_scale" => "--perception-init",
        "perception_lr_scale" => "--perception-lr-scale",
        "fixed_filters" => "--fixed-filters",
        "max_steps" => "--steps",
        "max_minutes" => "--minutes",
        "max_cpu_minutes" => "--cpu-minutes",
        "checkpoint_every" => "--checkpoint-every",
        "eval_samples" => "--eval-samples",
        _ => return None,
    })
}

/// A config validator's error as the flag that set the field it names
/// (`field` is the error's [`ca_sched::SchedError::invalid_field`] or
/// [`ca_core::CoreError::invalid_field`]); any other error unchanged.
pub fn flag_error<E>(field: Option<ca_core::InvalidValue>, error: E) -> Box<dyn std::error::Error>
where
    E: Into<Box<dyn std::error::Error>>,
{
    match field.and_then(|v| Some((flag_of_field(v.name)?, v))) {
        Some((flag, v)) => Box::new(FlagError {
            flag,
            value: v.value,
            reason: v.reason,
        }),
        None => error.into(),
    }
}

/// `--size` (no config holds it: it picks the data's size) must be at
/// least 1.
pub fn check_size(size: usize) -> Result<(), FlagError> {
    if size == 0 {
        return Err(FlagError {
            flag: "--size",
            value: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// The number of stride-2 levels `k` with `image_size = state_size * 2^k`,
/// `k` in `1..=3`, from `--image-size` and `--state-size`; the error names
/// the flags and the values.
pub fn levels_for(image_size: usize, state_size: usize) -> Result<usize, FlagError> {
    let error = |reason: String| FlagError {
        flag: "--image-size",
        value: format!("{image_size} --state-size {state_size}"),
        reason,
    };
    if image_size == 0 || state_size == 0 {
        return Err(error("both must be at least 1".into()));
    }
    (1..=MAX_LEVELS)
        .find(|&k| state_size << k == image_size)
        .ok_or_else(|| {
            let factors: Vec<String> = (1..=MAX_LEVELS)
                .map(|k| (state_size << k).to_string())
                .collect();
            error(format!(
                "the image size must be the state size times 2, 4 or 8 ({}); for a plain model with one cell per pixel use --size",
                factors.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ca_core::CellConfig;
    use ca_sched::{LearnerConfig, TrainConfig};

    fn named(e: ca_sched::SchedError) -> String {
        flag_error(e.invalid_field().cloned(), e).to_string()
    }

    #[test]
    fn config_errors_name_the_flag() {
        let bad = TrainConfig {
            batch: 4,
            pool_size: 2,
            ..TrainConfig::default()
        };
        assert_eq!(
            named(bad.validate().unwrap_err()),
            "--pool 2: must be at least the batch size (4)"
        );
        let bad = LearnerConfig {
            max_cpu_minutes: Some(0.0),
            ..LearnerConfig::default()
        };
        assert_eq!(
            named(bad.validate().unwrap_err()),
            "--cpu-minutes 0: must be positive and finite"
        );
        let bad = CellConfig {
            state_channels: 0,
            ..CellConfig::default()
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(
            flag_error(e.invalid_field().cloned(), e).to_string(),
            "--state 0: must be at least 1"
        );
        // A field no flag sets keeps the config's own message.
        let bad = TrainConfig {
            max_bad_steps: 0,
            ..TrainConfig::default()
        };
        assert!(named(bad.validate().unwrap_err()).contains("max_bad_steps = 0"));
    }

    #[test]
    fn levels_from_sizes() {
        assert_eq!((levels_for(96, 48), levels_for(384, 48)), (Ok(1), Ok(3)));
        let msg = levels_for(100, 48).unwrap_err().to_string();
        assert!(
            msg.starts_with("--image-size 100 --state-size 48:") && msg.contains("96, 192, 384")
        );
        assert!(
            levels_for(48, 48).is_err()
                && levels_for(768, 48).is_err()
                && levels_for(0, 0).is_err()
        );
    }
}
