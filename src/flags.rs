//! `train_pets`'s command-line values are checked once, by the validators
//! of the configs they build (`CellConfig`, `TrainConfig`, `LearnerConfig`),
//! before any data is read; a validator's error names the field, and
//! [`crate::train_cli::flag_error`] turns it into the flag that set it, so
//! that a nonsense value fails at once with a message that names the flag
//! and the value (`--batch 0: must be at least 1`) instead of a panic or an
//! error deep inside training. This module holds that error and the checks
//! of the flags no config holds (`--size`, `--image-size`).

use std::fmt;

use ca_hires::MAX_LEVELS;

/// A command-line value that cannot work: the flag, the value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    /// The flag, with its dashes (`--batch`).
    pub flag: String,
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

/// `--size` (no config holds it: it picks the data's size) must be at
/// least 1.
pub fn check_size(size: usize) -> Result<(), FlagError> {
    if size == 0 {
        return Err(FlagError {
            flag: "--size".into(),
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
        flag: "--image-size".into(),
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
