//! What an evaluation measures ([`IouTable`]) and a JSON-lines metrics file
//! per run: one object per line, appended; the records it holds
//! ([`StepRecord`], [`FinalRecord`]) and the one reader of them
//! ([`read_metrics_file`], [`MetricsRecord`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// IoU per class at each evaluated step: intersection and union summed over
/// every pixel of the split, then divided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IouTable {
    /// The CA steps evaluated, ascending.
    pub steps: Vec<usize>,
    /// `iou[k][c]`: IoU of class `c` after `steps[k]` steps (`NaN` when the
    /// class appears neither in labels nor predictions).
    pub iou: Vec<Vec<f64>>,
    /// `stderr[k][c]`: the standard error of `iou[k][c]` over the images
    /// (the ratio estimator's linearisation, `sqrt(sum_i (I_i - R U_i)^2 /
    /// (n (n - 1))) / mean(U)` for per-image intersections `I_i`, unions
    /// `U_i` and `R = sum I / sum U`; `NaN` with fewer than 2 images);
    /// empty when not measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stderr: Vec<Vec<f64>>,
}

impl IouTable {
    /// The IoUs after `step` steps, if evaluated.
    pub fn at(&self, step: usize) -> Option<&[f64]> {
        self.steps
            .iter()
            .position(|&s| s == step)
            .map(|k| self.iou[k].as_slice())
    }

    /// The IoUs after `step` steps on one line, each after its class name
    /// and followed by its standard error where measured (`background
    /// 0.610 ± 0.012, object 0.440 ± 0.015, boundary 0.130 ± 0.008`), or
    /// `-` when the step was not evaluated.
    pub fn line(&self, step: usize, class_names: &[String]) -> String {
        match self.at(step) {
            Some(v) => {
                let k = self.steps.iter().position(|&s| s == step).unwrap_or(0);
                let se = self.stderr.get(k);
                (class_names.iter().zip(v).enumerate())
                    .map(|(c, (n, x))| match se.and_then(|e| e.get(c)) {
                        Some(e) if e.is_finite() => format!("{n} {x:.3} ± {e:.3}"),
                        _ => format!("{n} {x:.3}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            None => "-".into(),
        }
    }
}

/// Appends JSON objects, one per line, to a file.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending (created if absent), so a resumed run
    /// continues the same file.
    pub fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| {
                ModelError::Io(ca_core::PathError {
                    path: path.to_path_buf(),
                    source,
                })
            })?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one record as a line and flushes it.
    pub fn write<R: Serialize>(&mut self, record: &R) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| ModelError::Metrics(format!("record not written: {e}")))?;
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|source| {
                ModelError::Io(ca_core::PathError {
                    path: self.path.clone(),
                    source,
                })
            })
    }
}

/// IoU per class after each evaluated CA step, as a metrics file holds it:
/// `{"40": {"background": 0.74, "object": 0.57, "boundary": 0.32}, ...}`
/// (a class that appeared neither in the labels nor in the predictions is
/// `null`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IouByStep(pub BTreeMap<String, BTreeMap<String, Option<f64>>>);

impl IouByStep {
    /// The record of `table`, its classes named by `class_names` in order.
    pub fn from_table(table: &IouTable, class_names: &[String]) -> Self {
        let by_step = table
            .steps
            .iter()
            .zip(&table.iou)
            .map(|(step, per_class)| {
                let named = class_names
                    .iter()
                    .zip(per_class)
                    .map(|(name, &v)| (name.clone(), v.is_finite().then_some(v)))
                    .collect();
                (step.to_string(), named)
            })
            .collect();
        IouByStep(by_step)
    }

    /// The IoU of each of `classes` after `ca_step` steps, `NaN` for a
    /// class without a value; `None` when that step was not evaluated.
    pub fn at<const N: usize>(&self, ca_step: usize, classes: [&str; N]) -> Option<[f64; N]> {
        let per = self.0.get(&ca_step.to_string())?;
        Some(classes.map(|c| per.get(c).copied().flatten().unwrap_or(f64::NAN)))
    }
}

/// The record `ca_sched::Learner::fit` writes after each optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps done.
    pub step: u64,
    /// The step's training loss (`null` when it was not finite).
    pub loss: Option<f64>,
    /// Wall-clock seconds of this step.
    pub seconds: f64,
    /// Wall-clock seconds of training so far (a resumed run's earlier
    /// ones included).
    pub elapsed: f64,
    /// CPU seconds of training so far (a resumed run's earlier ones
    /// included).
    pub cpu_seconds: f64,
    /// The learning rate of this step.
    pub lr: f64,
    /// Whether the step was a full unroll (curriculum).
    pub full_unroll: bool,
    /// Mean reset-gate activation, every `gate_every` steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_gate_mean: Option<f64>,
    /// The periodic validation, every `eval_every` steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<IouByStep>,
    /// How many validation samples `val` read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_samples: Option<usize>,
}

/// The record written once when a training ends: its length and the final
/// evaluations of the EMA (or plain) weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalRecord {
    /// Optimizer steps done.
    pub step: u64,
    /// Wall-clock seconds of the training (a resumed run's earlier ones
    /// included).
    pub train_seconds: f64,
    /// CPU seconds of the training at its end (a resumed run's earlier
    /// ones included).
    pub train_cpu_seconds: f64,
    /// The validation split's IoUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_val: Option<IouByStep>,
    /// How many samples `final_val` read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_samples: Option<usize>,
    /// The test split's IoUs (`--final-test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_eval: Option<IouByStep>,
    /// How many samples `final_eval` read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_samples: Option<usize>,
}

/// Any line of a metrics file, read back: a [`StepRecord`], a
/// [`FinalRecord`], or a line of an older file (whose periodic evaluation
/// of the test split was `eval`). Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MetricsRecord {
    /// Optimizer steps done.
    pub step: Option<u64>,
    /// Training loss of a step record.
    pub loss: Option<f64>,
    /// CPU seconds so far, of a step record.
    pub cpu_seconds: Option<f64>,
    /// CPU seconds of the whole training, of a final record.
    pub train_cpu_seconds: Option<f64>,
    /// Periodic validation.
    pub val: Option<IouByStep>,
    /// Final validation.
    pub final_val: Option<IouByStep>,
    /// Periodic evaluation of the test split (older files).
    pub eval: Option<IouByStep>,
    /// Final evaluation of the test split.
    pub final_eval: Option<IouByStep>,
}

impl MetricsRecord {
    /// The CPU seconds the record reports (a step's or the training's).
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.cpu_seconds.or(self.train_cpu_seconds)
    }
}

/// The records of a metrics file. A malformed line is a
/// [`ModelError::Metrics`] naming `path:line`, except a last line without its
/// newline (a run killed while writing it), which is left out.
pub fn read_metrics_file(path: &Path) -> Result<Vec<MetricsRecord>> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        ModelError::Io(ca_core::PathError {
            path: path.to_path_buf(),
            source,
        })
    })?;
    let lines: Vec<&str> = text.split('\n').collect();
    let mut records = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => {
                return Err(ModelError::Metrics(format!(
                    "line {}:{}: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> IouTable {
        IouTable {
            steps: vec![10, 40],
            iou: vec![vec![0.5, 0.25, f64::NAN], vec![0.75, 0.5, 0.125]],
            stderr: vec![],
        }
    }

    #[test]
    fn a_line_shows_the_standard_errors_where_measured() {
        assert_eq!(
            table().line(40, &names()),
            "background 0.750, object 0.500, boundary 0.125"
        );
        let with = IouTable {
            stderr: vec![vec![0.01, 0.02, f64::NAN], vec![0.011, 0.021, 0.0041]],
            ..table()
        };
        assert_eq!(
            with.line(40, &names()),
            "background 0.750 ± 0.011, object 0.500 ± 0.021, boundary 0.125 ± 0.004"
        );
        assert_eq!(
            with.line(10, &names()),
            "background 0.500 ± 0.010, object 0.250 ± 0.020, boundary NaN"
        );
        assert_eq!(with.line(20, &names()), "-");
    }

    fn names() -> Vec<String> {
        ["background", "object", "boundary"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn records_keep_the_file_format() {
        let iou = IouByStep::from_table(&table(), &names());
        let step = StepRecord {
            step: 3,
            loss: None,
            seconds: 0.5,
            elapsed: 1.5,
            cpu_seconds: 2.0,
            lr: 1e-3,
            full_unroll: false,
            reset_gate_mean: None,
            val: Some(iou.clone()),
            val_samples: Some(8),
        };
        let json: serde_json::Value = serde_json::to_value(&step).unwrap();
        assert_eq!(json["loss"], serde_json::Value::Null);
        assert!(json.get("reset_gate_mean").is_none());
        assert_eq!(json["val"]["40"]["boundary"], 0.125);
        assert_eq!(json["val"]["10"]["boundary"], serde_json::Value::Null);
        let fin = FinalRecord {
            step: 3,
            final_val: Some(iou),
            val_samples: Some(8),
            ..FinalRecord::default()
        };
        let json = serde_json::to_value(&fin).unwrap();
        assert!(json.get("final_eval").is_none());
        assert_eq!(json["final_val"]["40"]["object"], 0.5);

        let back: MetricsRecord = serde_json::from_value(json).unwrap();
        let at40 = back
            .final_val
            .as_ref()
            .unwrap()
            .at(40, ["object", "boundary"]);
        assert_eq!(at40, Some([0.5, 0.125]));
        let at10 = back
            .final_val
            .as_ref()
            .unwrap()
            .at(10, ["boundary"])
            .unwrap();
        assert!(at10[0].is_nan());
        assert_eq!(back.cpu_seconds(), Some(0.0));
    }

    #[test]
    fn reading_names_the_bad_line_and_skips_a_torn_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1,\"loss\":null}\n{\"step\":2,\"lo").unwrap();
        let records = read_metrics_file(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].step, records[0].loss), (Some(1), None));
        std::fs::write(&path, "not json\n{\"step\":2}\n").unwrap();
        let err = read_metrics_file(&path).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:1"), "{err}");
    }
}
