//! The learning-rate schedule: a factor on the optimizer's base rate
//! ([`crate::AdamConfig::learning_rate`]) that follows the run's progress
//! through its budget, after a linear warm-up.

use ca_core::ErrorShapes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SchedError};

/// How the learning rate moves over a run, after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Half a cosine from the base rate at progress 0 to the floor times
    /// it at progress 1 (see [`LrScheduleConfig::floor`]).
    Cosine,
    /// Piecewise constant: `drops` equal drops (geometric) at progress
    /// `1/(drops+1), 2/(drops+1), ...`, the last one reaching the floor.
    Step {
        /// Number of drops (at least 1).
        drops: u32,
    },
}

impl std::str::FromStr for LrSchedule {
    type Err = String;
    /// `constant`, `cosine` or `step:N` (`N` is checked by
    /// [`LrScheduleConfig::validate`]).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "constant" => Ok(LrSchedule::Constant),
            "cosine" => Ok(LrSchedule::Cosine),
            _ => match s.strip_prefix("step:").map(str::parse::<u32>) {
                Some(Ok(drops)) => Ok(LrSchedule::Step { drops }),
                _ => Err(format!(
                    "unknown schedule '{s}' (constant, cosine or step:N)"
                )),
            },
        }
    }
}

/// The learning-rate schedule's settings (flat in a stored
/// [`crate::TrainConfig`]: `lr_schedule`, `warmup_steps`, `lr_floor`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
// Fields missing from an older stored config take the defaults.
#[serde(default)]
pub struct LrScheduleConfig {
    /// The schedule's shape over the run's progress (see
    /// [`crate::Trainer::set_progress`]).
    #[serde(rename = "lr_schedule")]
    pub shape: LrSchedule,
    /// Optimizer steps of linear warm-up from `1 / warmup_steps` of the
    /// scheduled rate to all of it; 0: none.
    pub warmup_steps: u64,
    /// The scheduled rate at the end of the run, as a fraction of the base
    /// rate, in [0, 1].
    #[serde(rename = "lr_floor")]
    pub floor: f64,
}

impl Default for LrScheduleConfig {
    /// The paper's: the base rate throughout, no warm-up.
    fn default() -> Self {
        LrScheduleConfig {
            shape: LrSchedule::Constant,
            warmup_steps: 0,
            floor: 1.0,
        }
    }
}

impl LrScheduleConfig {
    /// Checks every field; the error names it (`lr_schedule`, `lr_floor`).
    pub fn validate(&self) -> Result<()> {
        if let LrSchedule::Step { drops: 0 } = self.shape {
            return Err(SchedError::invalid(
                "lr_schedule",
                "step:0",
                "needs at least one drop",
            ));
        }
        if !(0.0..=1.0).contains(&self.floor) {
            return Err(SchedError::invalid(
                "lr_floor",
                self.floor,
                "must lie in [0, 1]",
            ));
        }
        Ok(())
    }

    /// The factor on the base rate at optimizer step `step` (0-based) and
    /// run progress `progress` in [0, 1]: the warm-up ramp times the
    /// schedule's factor.
    pub fn factor(&self, step: u64, progress: f64) -> f64 {
        let p = progress.clamp(0.0, 1.0);
        let floor = self.floor;
        let factor = match self.shape {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => {
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            LrSchedule::Step { drops } => {
                let passed = ((p * f64::from(drops + 1)).floor() as u32).min(drops);
                floor.powf(f64::from(passed) / f64::from(drops))
            }
        };
        let warm = if self.warmup_steps > 0 && step < self.warmup_steps {
            (step + 1) as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        factor * warm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_start_at_the_rate_and_end_at_their_floor() {
        for shape in [LrSchedule::Cosine, LrSchedule::Step { drops: 2 }] {
            let c = LrScheduleConfig {
                shape,
                floor: 0.05,
                ..LrScheduleConfig::default()
            };
            assert!((c.factor(100, 0.0) - 1.0).abs() < 1e-15, "{shape:?}");
            assert!((c.factor(100, 1.0) - 0.05).abs() < 1e-12, "{shape:?}");
            // Never rises, never goes below the floor.
            let mut last = f64::INFINITY;
            for i in 0..=100 {
                let f = c.factor(100, i as f64 / 100.0);
                assert!(
                    f <= last + 1e-15 && f >= 0.05 - 1e-12,
                    "{shape:?} at {i}: {f}"
                );
                last = f;
            }
        }
        let step = LrScheduleConfig {
            shape: LrSchedule::Step { drops: 2 },
            floor: 0.01,
            ..LrScheduleConfig::default()
        };
        assert!((step.factor(0, 0.5) - 0.1).abs() < 1e-12);
        assert_eq!(LrScheduleConfig::default().factor(0, 1.0), 1.0);
    }

    #[test]
    fn warmup_ramps_linearly_to_the_rate() {
        let c = LrScheduleConfig {
            warmup_steps: 4,
            ..LrScheduleConfig::default()
        };
        let ramp: Vec<f64> = (0..6).map(|s| c.factor(s, 0.0)).collect();
        assert_eq!(ramp, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn nonsense_is_rejected_with_the_field_named() {
        let step0 = LrScheduleConfig {
            shape: LrSchedule::Step { drops: 0 },
            ..LrScheduleConfig::default()
        };
        assert!(step0
            .validate()
            .unwrap_err()
            .to_string()
            .contains("lr_schedule"));
        let floor = LrScheduleConfig {
            floor: 1.5,
            ..LrScheduleConfig::default()
        };
        assert!(floor
            .validate()
            .unwrap_err()
            .to_string()
            .contains("lr_floor"));
    }
}
