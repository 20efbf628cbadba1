//! Training curves from `train_pets` metrics files (`metrics.jsonl`): the
//! smoothed loss and the periodic IoU (on the validation split; on the test
//! split for runs made before it existed) against the optimizer step, one
//! line per run, as [`LinePlot`]s.

use ca_core::ErrorShapes;
use std::path::Path;

use ca_model::{read_metrics_file, ModelError};

use crate::error::{Result, VizError};
use crate::plot::{LinePlot, Series};

/// The records of one run that the curves use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunCurves {
    /// `(step, loss)` of every step that had a loss.
    pub loss: Vec<(f64, f64)>,
    /// `(step, [background, object, boundary])` of every periodic evaluation
    /// at CA step `ca_step`.
    pub iou: Vec<(f64, [f64; 3])>,
}

/// Reads a metrics file, keeping the losses and the IoUs evaluated after
/// `ca_step` CA steps (periodic `val` and `final_val` records; `eval` and
/// `final_eval` in older files, which evaluated the test split).
pub fn read_metrics(path: &Path, ca_step: usize) -> Result<RunCurves> {
    let records = read_metrics_file(path).map_err(|e| match e {
        ModelError::Io(ca_core::PathError { path, source }) => VizError::io(path, source),
        e => VizError::invalid("metrics file", path.display(), e.to_string()),
    })?;
    let mut out = RunCurves::default();
    let has_val = records
        .iter()
        .any(|r| r.val.is_some() || r.final_val.is_some());
    for record in &records {
        let step = record.step.map_or(f64::NAN, |s| s as f64);
        if let Some(loss) = record.loss {
            out.loss.push((step, loss));
        }
        let (periodic, last) = if has_val {
            (&record.val, &record.final_val)
        } else {
            (&record.eval, &record.final_eval)
        };
        for iou in [periodic, last].into_iter().flatten() {
            if let Some(per_class) = iou.at(ca_step, ca_data::CLASS_NAMES) {
                out.iou.push((step, per_class));
            }
        }
    }
    Ok(out)
}

/// Exponential moving average of the `y` values (weight `1 - alpha` on the
/// past), for readable loss curves.
pub fn smooth(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let mut avg: Option<f64> = None;
    points
        .iter()
        .map(|&(x, y)| {
            let a = avg.map_or(y, |a| (1.0 - alpha) * a + alpha * y);
            avg = Some(a);
            (x, a)
        })
        .collect()
}

/// The loss plot and the IoU plot of named runs; the IoU plot has one line
/// per run and class (`run: class`).
pub fn training_plots(runs: &[(String, RunCurves)], ca_step: usize) -> (LinePlot, LinePlot) {
    let loss = LinePlot {
        title: "training loss (moving average)".into(),
        x_label: "optimizer step".into(),
        y_label: "cross-entropy".into(),
        series: runs
            .iter()
            .map(|(name, r)| Series {
                name: name.clone(),
                points: smooth(&r.loss, 0.02),
            })
            .collect(),
        marks: vec![],
        y_range: None,
    };
    let classes = ca_data::CLASS_NAMES;
    let iou = LinePlot {
        title: format!("IoU after {ca_step} CA steps (validation; test for older runs)"),
        x_label: "optimizer step".into(),
        y_label: "IoU".into(),
        series: runs
            .iter()
            .flat_map(|(name, r)| {
                classes.iter().enumerate().map(move |(c, class)| Series {
                    name: format!("{name}: {class}"),
                    points: r.iou.iter().map(|(s, v)| (*s, v[c])).collect(),
                })
            })
            .collect(),
        marks: vec![],
        y_range: Some((0.0, 1.0)),
    };
    (loss, iou)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_losses_and_evaluations() {
        let dir = std::env::temp_dir().join(format!("curves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"step\":1,\"loss\":null}\n",
                "{\"step\":2,\"loss\":1.5}\n",
                "{\"step\":3,\"loss\":1.0,\"eval\":{\"40\":{\"background\":0.5,\"object\":0.25,\"boundary\":0.1}}}\n",
                "{\"step\":3,\"final_eval\":{\"40\":{\"background\":0.6,\"object\":0.3,\"boundary\":0.2}}}\n",
            ),
        )
        .unwrap();
        let r = read_metrics(&path, 40).unwrap();
        assert_eq!(r.loss, [(2.0, 1.5), (3.0, 1.0)]);
        assert_eq!(r.iou, [(3.0, [0.5, 0.25, 0.1]), (3.0, [0.6, 0.3, 0.2])]);
        assert!(read_metrics(&path, 10).unwrap().iou.is_empty());
        let (loss, iou) = training_plots(&[("a".into(), r)], 40);
        assert_eq!(loss.series.len(), 1);
        assert_eq!(iou.series.len(), 3);
        // A run with a validation split: its `val` records, not the test ones.
        std::fs::write(
            &path,
            concat!(
                "{\"step\":5,\"val\":{\"40\":{\"background\":0.7,\"object\":0.4,\"boundary\":0.2}}}\n",
                "{\"step\":6,\"final_val\":{\"40\":{\"background\":0.8,\"object\":0.5,\"boundary\":0.3}},",
                "\"final_eval\":{\"40\":{\"background\":0.0,\"object\":0.0,\"boundary\":0.0}}}\n",
            ),
        )
        .unwrap();
        let r = read_metrics(&path, 40).unwrap();
        assert_eq!(r.iou, [(5.0, [0.7, 0.4, 0.2]), (6.0, [0.8, 0.5, 0.3])]);
        std::fs::write(&path, "not json\n").unwrap();
        let err = read_metrics(&path, 40).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:1"), "{err}");
    }

    #[test]
    fn smoothing_starts_at_the_first_value() {
        let s = smooth(&[(0.0, 2.0), (1.0, 0.0)], 0.5);
        assert_eq!(s, [(0.0, 2.0), (1.0, 1.0)]);
    }
}
