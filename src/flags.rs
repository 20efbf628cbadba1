//! Checks of `train_pets`'s numeric command-line values, done before any
//! data is read, so that a nonsense value fails at once with a message that
//! names the flag and the value (`--batch 0: must be at least 1`) instead of
//! a panic or an error deep inside training.

use std::fmt;

use ca_hires::MAX_LEVELS;

/// The numeric training flags of `train_pets`, with their defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainFlags {
    /// `--size`: the square image and state grid size in pixels.
    pub size: usize,
    /// `--state`: state channels.
    pub state: usize,
    /// `--hidden`: hidden channels.
    pub hidden: usize,
    /// `--batch`: slots per optimizer step.
    pub batch: usize,
    /// `--pool`: slots in the pool.
    pub pool: usize,
    /// `--mini-unroll`: K, CA steps per optimizer step.
    pub mini_unroll: usize,
    /// `--target`: T, the target number of CA steps.
    pub target: usize,
    /// `--full-unroll`: K is ignored when set.
    pub full_unroll: bool,
    /// `--checkpoint-every`: steps between checkpoints.
    pub checkpoint_every: u64,
    /// `--eval-samples`: test samples of the periodic evaluation.
    pub eval_samples: usize,
    /// `--minutes`: wall-clock budget, if any.
    pub minutes: Option<f64>,
    /// `--cpu-minutes`: CPU-time budget, if any.
    pub cpu_minutes: Option<f64>,
}

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

fn at_least_one(flag: &'static str, value: u64) -> Result<(), FlagError> {
    if value == 0 {
        return Err(FlagError {
            flag,
            value: value.to_string(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

impl TrainFlags {
    /// Checks every value; the first bad one is the error.
    pub fn validate(&self) -> Result<(), FlagError> {
        let positive = [
            ("--size", self.size as u64),
            ("--state", self.state as u64),
            ("--hidden", self.hidden as u64),
            ("--batch", self.batch as u64),
            ("--target", self.target as u64),
            ("--checkpoint-every", self.checkpoint_every),
            ("--eval-samples", self.eval_samples as u64),
        ];
        for (flag, value) in positive {
            at_least_one(flag, value)?;
        }
        if self.pool < self.batch {
            return Err(FlagError {
                flag: "--pool",
                value: self.pool.to_string(),
                reason: format!("must be at least --batch ({})", self.batch),
            });
        }
        for (flag, value) in [
            ("--minutes", self.minutes),
            ("--cpu-minutes", self.cpu_minutes),
        ] {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(FlagError {
                    flag,
                    value: v.to_string(),
                    reason: "must be a positive number of minutes".into(),
                });
            }
        }
        if !self.full_unroll {
            at_least_one("--mini-unroll", self.mini_unroll as u64)?;
            if self.mini_unroll > self.target {
                return Err(FlagError {
                    flag: "--mini-unroll",
                    value: self.mini_unroll.to_string(),
                    reason: format!("must be at most --target ({})", self.target),
                });
            }
        }
        Ok(())
    }
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

    fn good() -> TrainFlags {
        TrainFlags {
            size: 32,
            state: 16,
            hidden: 32,
            batch: 8,
            pool: 8,
            mini_unroll: 10,
            target: 40,
            full_unroll: false,
            checkpoint_every: 100,
            eval_samples: 64,
            minutes: Some(1.5),
            cpu_minutes: None,
        }
    }

    fn message(flags: TrainFlags) -> String {
        flags.validate().expect_err("must be rejected").to_string()
    }

    #[test]
    fn defaults_pass() {
        assert_eq!(good().validate(), Ok(()));
    }

    #[test]
    fn zeros_name_the_flag() {
        type Edit = fn(&mut TrainFlags);
        let cases: [(&str, Edit); 7] = [
            ("--size 0", |f| f.size = 0),
            ("--state 0", |f| f.state = 0),
            ("--hidden 0", |f| f.hidden = 0),
            ("--batch 0", |f| f.batch = 0),
            ("--target 0", |f| f.target = 0),
            ("--checkpoint-every 0", |f| f.checkpoint_every = 0),
            ("--eval-samples 0", |f| f.eval_samples = 0),
        ];
        for (want, edit) in cases {
            let mut f = good();
            edit(&mut f);
            let msg = message(f);
            assert_eq!(msg, format!("{want}: must be at least 1"));
        }
    }

    #[test]
    fn mini_unroll_must_fit_the_target() {
        let msg = message(TrainFlags {
            mini_unroll: 50,
            ..good()
        });
        assert_eq!(msg, "--mini-unroll 50: must be at most --target (40)");
        let msg = message(TrainFlags {
            mini_unroll: 0,
            ..good()
        });
        assert!(msg.starts_with("--mini-unroll 0"), "{msg}");
        // The full unroll ignores K.
        let full = TrainFlags {
            mini_unroll: 50,
            full_unroll: true,
            ..good()
        };
        assert_eq!(full.validate(), Ok(()));
    }

    #[test]
    fn budgets_must_be_positive_minutes() {
        let msg = message(TrainFlags {
            minutes: Some(0.0),
            ..good()
        });
        assert_eq!(msg, "--minutes 0: must be a positive number of minutes");
        let msg = message(TrainFlags {
            cpu_minutes: Some(f64::NAN),
            ..good()
        });
        assert_eq!(
            msg,
            "--cpu-minutes NaN: must be a positive number of minutes"
        );
        let msg = message(TrainFlags {
            cpu_minutes: Some(-2.0),
            ..good()
        });
        assert!(msg.starts_with("--cpu-minutes -2:"), "{msg}");
    }

    #[test]
    fn pool_smaller_than_batch() {
        let msg = message(TrainFlags { pool: 4, ..good() });
        assert_eq!(msg, "--pool 4: must be at least --batch (8)");
    }

    #[test]
    fn levels_from_sizes() {
        assert_eq!(levels_for(96, 48), Ok(1));
        assert_eq!(levels_for(192, 48), Ok(2));
        assert_eq!(levels_for(384, 48), Ok(3));
        let msg = levels_for(100, 48).unwrap_err().to_string();
        assert!(
            msg.starts_with("--image-size 100 --state-size 48:") && msg.contains("96, 192, 384"),
            "{msg}"
        );
        assert!(levels_for(48, 48).is_err());
        assert!(levels_for(768, 48).is_err());
        assert!(levels_for(0, 0).is_err());
    }
}
