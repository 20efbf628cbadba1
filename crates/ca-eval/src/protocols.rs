//! The evaluation protocols of the paper's long-run experiments, as
//! functions a tool or a test calls on any trained model (plain or high
//! resolution, anything that implements [`CellModel`]) and any split:
//!
//! - [`stability`]: IoU per class against CA step, far past the training
//!   target (Figs 10 and 11c);
//! - [`switching`]: the image under each colony changes every `period`
//!   steps while the state is kept (Figs 2 and 11);
//! - [`shift`]: the image is translated by a few pixels mid-run (Fig 11b);
//! - [`norms`]: mean absolute values (L1 norms per dimension) of the state,
//!   the logits and their per-step changes (Appendix A.1, Figs 16 to 19);
//! - [`uncertainty`]: per-pixel variance of the prediction over stochastic
//!   runs with different random draws.
//!
//! Each returns a [`ProtocolOutput`]: its tables (written as CSV by
//! [`ProtocolOutput::write_tables`]), a [`Chart`] saying which columns a plot
//! of it shows, and, for [`uncertainty`], the per-pixel maps of the first
//! images. Drawing them is `ca-viz`'s job (the `evaluate` example does it).

use ca_core::ErrorShapes;
use std::io::Write;
use std::path::{Path, PathBuf};

use ca_core::{CellModel, Colony, Segmenter, Settling};
use ca_data::sequence::{make_sequence, Frame, Motion};
use ca_data::{LoadOptions, PetsDataset, Split, CLASS_NAMES};
use ca_unet::UNet;
use candle_core::{DType, Device, Tensor};

use crate::error::{EvalError, Result};

/// Images and labels of a split, resized to the model's square size.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSet {
    /// Side of the square images and label maps.
    pub size: usize,
    /// Sample names, in split-file order.
    pub names: Vec<String>,
    /// Images `[3, size, size]` in [0, 1].
    pub images: Vec<Vec<f32>>,
    /// Label maps `[size, size]`: 0 background, 1 object, 2 boundary.
    pub labels: Vec<Vec<u8>>,
}

impl EvalSet {
    /// Loads split `split` of the dataset under `root` at `size x size`,
    /// keeping the first `limit` samples (all when `None`).
    pub fn open(root: &Path, split: Split, size: usize, limit: Option<usize>) -> Result<Self> {
        let ds = PetsDataset::open(root, split, &LoadOptions::square(size))?;
        Self::from_dataset(&ds, limit)
    }

    /// The first `limit` samples (all when `None`) of a loaded split whose
    /// images and labels have the same size.
    pub fn from_dataset(ds: &PetsDataset, limit: Option<usize>) -> Result<Self> {
        if ds.image_size() != ds.label_size() {
            return Err(EvalError::invalid(
                "label size",
                ds.label_size(),
                format!("must equal the image size {}", ds.image_size()),
            ));
        }
        if limit == Some(0) {
            return Err(EvalError::invalid("limit", 0, "at least one sample"));
        }
        let n = limit.map_or(ds.len(), |l| l.min(ds.len()));
        let samples = &ds.samples()[..n];
        Ok(EvalSet {
            size: ds.image_size(),
            names: samples.iter().map(|s| s.name.clone()).collect(),
            images: samples.iter().map(|s| s.image.clone()).collect(),
            labels: samples.iter().map(|s| s.label.clone()).collect(),
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// Settings shared by the protocols.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// CA steps per run.
    pub steps: usize,
    /// Colonies evolved at once.
    pub batch: usize,
    /// Seed of the initial states and of every step's random draws.
    pub seed: u64,
    /// Record every `every` steps (step 1 and the last step always).
    pub every: usize,
    /// The training target `T`, marked on the plots.
    pub target: usize,
    /// Runs per image, their probabilities averaged (a pseudo-ensemble,
    /// see [`ca_sched::iou_over_time_ensemble`]; 1: the plain colony).
    /// The IoU curves (stability, switching, shift) take it; the other
    /// protocols need 1.
    pub ensemble: usize,
}

impl RunOptions {
    /// Checks that steps, batch, every, target and ensemble are at least 1.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("steps", self.steps),
            ("batch", self.batch),
            ("every", self.every),
            ("target", self.target),
            ("ensemble", self.ensemble),
        ] {
            if v == 0 {
                return Err(EvalError::invalid(name, v, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The recorded steps: 1, the multiples of `every`, and the last step.
    pub fn record_steps(&self) -> Vec<usize> {
        let mut s: Vec<usize> = std::iter::once(1)
            .chain((self.every..=self.steps).step_by(self.every))
            .chain(std::iter::once(self.steps))
            .filter(|&t| t <= self.steps)
            .collect();
        s.dedup();
        s
    }
}

/// A numeric table: named columns, one row per record.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names (the CSV header).
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<f64>>,
}

impl Table {
    /// The values of column `name`, if present.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let k = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[k]).collect())
    }

    /// Writes the table as CSV (header line, then rows; integers without a
    /// decimal point, other values with 6 significant decimals, `NaN` as
    /// `nan`).
    ///
    /// # Errors
    ///
    /// [`EvalError`] naming `path`: a row whose length is not the number of
    /// columns (nothing is written), or the file cannot be written.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        if let Some(k) = self.rows.iter().position(|r| r.len() != self.columns.len()) {
            return Err(EvalError::invalid(
                "table",
                path.display(),
                format!(
                    "row {k} has {} values for {} columns",
                    self.rows[k].len(),
                    self.columns.len()
                ),
            ));
        }
        let mut text = self.columns.join(",");
        text.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|&v| format_cell(v)).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
        let mut f = std::fs::File::create(path).map_err(|e| EvalError::io(path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| EvalError::io(path, e))
    }

    /// Reads a table written by [`Table::write_csv`] (or any CSV of
    /// numbers with a header line; `nan` reads as NaN).
    pub fn read_csv(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let columns: Vec<String> = lines
            .next()
            .ok_or_else(|| EvalError::invalid("CSV", path.display(), "is empty"))?
            .split(',')
            .map(|c| c.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for (n, line) in lines.enumerate() {
            let row = line
                .split(',')
                .map(|c| c.trim().parse::<f64>())
                .collect::<std::result::Result<Vec<f64>, _>>()
                .map_err(|e| {
                    EvalError::invalid("CSV", path.display(), format!("data line {}: {e}", n + 1))
                })?;
            if row.len() != columns.len() {
                return Err(EvalError::invalid(
                    "CSV",
                    path.display(),
                    format!(
                        "data line {} has {} values, the header {}",
                        n + 1,
                        row.len(),
                        columns.len()
                    ),
                ));
            }
            rows.push(row);
        }
        Ok(Table { columns, rows })
    }
}

fn format_cell(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}")
    }
}

/// What a plot of a protocol's main table shows: some of its columns
/// against its first column (the CA step).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The title.
    pub title: String,
    /// The label of the horizontal axis.
    pub x_label: String,
    /// The label of the vertical axis.
    pub y_label: String,
    /// `(column, legend label)` of each line, in drawing order.
    pub columns: Vec<(String, String)>,
    /// Horizontal positions of vertical marks (the training target, image
    /// switches).
    pub marks: Vec<f64>,
    /// A fixed vertical range, `None` to fit the data.
    pub y_range: Option<(f64, f64)>,
}

/// The per-pixel spread of one image's stochastic runs after the last step
/// (what [`uncertainty`] keeps for its first images).
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadMap {
    /// The image's index in the [`EvalSet`].
    pub index: usize,
    /// The majority vote of the runs, `[size * size]` class ids.
    pub majority: Vec<u32>,
    /// The softmax variance over the runs summed over classes, `[size *
    /// size]`.
    pub prob_variance: Vec<f32>,
}

/// What a protocol produced.
#[derive(Debug, Clone)]
pub struct ProtocolOutput {
    /// The protocol's name: the stem of its files.
    pub name: &'static str,
    /// The main table, written to `NAME.csv`.
    pub table: Table,
    /// Further tables, written to `NAME_SUFFIX.csv`.
    pub extra_tables: Vec<(String, Table)>,
    /// What a plot of [`ProtocolOutput::table`] shows.
    pub chart: Chart,
    /// Per-pixel maps of the first images ([`uncertainty`] only).
    pub maps: Vec<SpreadMap>,
}

impl ProtocolOutput {
    /// Writes every table into `dir` (created if needed): `NAME.csv` and
    /// `NAME_SUFFIX.csv`; returns the paths written.
    pub fn write_tables(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
        let mut paths = Vec::new();
        let csv = dir.join(format!("{}.csv", self.name));
        self.table.write_csv(&csv)?;
        paths.push(csv);
        for (suffix, t) in &self.extra_tables {
            let p = dir.join(format!("{}_{suffix}.csv", self.name));
            t.write_csv(&p)?;
            paths.push(p);
        }
        Ok(paths)
    }
}

/// What the colony under slot `index` sees at each step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Schedule {
    /// The same image throughout.
    Fixed,
    /// Sample `index + k` (cyclically) during steps `k * period + 1 ..=
    /// (k + 1) * period`.
    Switch { period: usize },
    /// The image and its labels translated by `(dx, dy)` pixels after step
    /// `at`.
    Shift { at: usize, dx: isize, dy: isize },
}

impl Schedule {
    /// Whether the environment of step `t` (1-based) differs from that of
    /// step `t - 1`.
    fn changes_at(self, t: usize) -> bool {
        match self {
            Schedule::Fixed => t == 1,
            Schedule::Switch { period } => (t - 1).is_multiple_of(period),
            Schedule::Shift { at, .. } => t == 1 || t == at + 1,
        }
    }

    /// The image and labels slot `index` sees at step `t`.
    fn frame(self, set: &EvalSet, index: usize, t: usize) -> (Vec<f32>, Vec<u8>) {
        match self {
            Schedule::Fixed => (set.images[index].clone(), set.labels[index].clone()),
            Schedule::Switch { period } => {
                let i = (index + (t - 1) / period) % set.len();
                (set.images[i].clone(), set.labels[i].clone())
            }
            Schedule::Shift { at, dx, dy } => {
                let (img, lab) = (&set.images[index], &set.labels[index]);
                if t <= at {
                    (img.clone(), lab.clone())
                } else {
                    let s = set.size;
                    (
                        translate(img, 3, (s, s), (dx, dy)),
                        translate(lab, 1, (s, s), (dx, dy)),
                    )
                }
            }
        }
    }

    /// The steps at which the image changes after the start (plot marks).
    fn marks(self, steps: usize) -> Vec<f64> {
        (2..=steps)
            .filter(|&t| self.changes_at(t))
            .map(|t| t as f64 - 0.5)
            .collect()
    }
}

/// `planes` planes of `h x w` values moved by `(dx, dy)` pixels (right and
/// down for positive values), the uncovered border filled by repeating the
/// nearest edge pixel.
pub fn translate<T: Copy>(
    values: &[T],
    planes: usize,
    (h, w): (usize, usize),
    (dx, dy): (isize, isize),
) -> Vec<T> {
    let src = |i: usize, d: isize, n: usize| (i as isize - d).clamp(0, n as isize - 1) as usize;
    let mut out = Vec::with_capacity(values.len());
    for p in 0..planes {
        let plane = &values[p * h * w..(p + 1) * h * w];
        for y in 0..h {
            let row = src(y, dy, h) * w;
            out.extend((0..w).map(|x| plane[row + src(x, dx, w)]));
        }
    }
    out
}

/// A fresh colony of `b` `size x size` images for chunk `chunk_id` of a
/// run seeded by `seed`, seeded by the evaluator's rule
/// ([`ca_core::chunk_seed`]).
fn colony<M: CellModel>(
    model: &M,
    b: usize,
    size: usize,
    seed: u64,
    chunk_id: usize,
) -> Result<Colony<&M>> {
    Ok(Colony::new(
        model,
        b,
        size,
        size,
        ca_core::chunk_seed(seed, chunk_id),
    )?)
}

/// The environment of `col` for flat `[3, S, S]` images.
fn env_tensor<M: CellModel>(
    col: &Colony<&M>,
    images: &[Vec<f32>],
    size: usize,
    device: &Device,
) -> Result<Tensor> {
    Ok(col.environment(&images_tensor(images, size, device)?)?)
}

/// Flat `[3, S, S]` images as one tensor `[B, 3, S, S]`.
fn images_tensor(images: &[Vec<f32>], size: usize, device: &Device) -> Result<Tensor> {
    let flat: Vec<f32> = images.concat();
    Ok(Tensor::from_vec(
        flat,
        (images.len(), 3, size, size),
        device,
    )?)
}

/// IoU per class at each recorded step under `schedule`, by the project's
/// one evaluator ([`ca_sched::iou_over_time`]).
fn iou_curve<M: CellModel>(
    model: &M,
    set: &EvalSet,
    opts: &RunOptions,
    schedule: Schedule,
) -> Result<(Table, Table)> {
    opts.validate()?;
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to evaluate"));
    }
    let classes = model.rule().config().num_classes;
    let device = model.rule().device().clone();
    let records = opts.record_steps();
    let table = ca_sched::iou_over_time_ensemble(
        model,
        set.len(),
        opts.batch,
        opts.seed,
        &records,
        opts.ensemble,
        |chunk, t| {
            if !schedule.changes_at(t) {
                return Ok(None);
            }
            let frames: Vec<_> = chunk.iter().map(|&i| schedule.frame(set, i, t)).collect();
            let images: Vec<Vec<f32>> = frames.iter().map(|f| f.0.clone()).collect();
            let labels = frames
                .iter()
                .flat_map(|f| f.1.iter().map(|&c| u32::from(c)))
                .collect();
            let images =
                images_tensor(&images, set.size, &device).map_err(ca_sched::SchedError::data)?;
            Ok(Some((images, labels)))
        },
    )?;
    Ok((iou_rows(&table, classes), stderr_rows(&table, classes)))
}

/// The standard errors of an IoU table (over the images; see
/// [`ca_model::IouTable::stderr`]): `step` and one `stderr_{class}` column
/// per class, written beside the IoUs as `NAME_stderr.csv`.
fn stderr_rows(table: &ca_model::IouTable, classes: usize) -> Table {
    let mut columns = vec!["step".to_string()];
    columns.extend(class_names(classes).iter().map(|n| format!("stderr_{n}")));
    let rows = table
        .steps
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let se = table.stderr.get(k);
            std::iter::once(t as f64)
                .chain((0..classes).map(|c| se.and_then(|e| e.get(c)).copied().unwrap_or(f64::NAN)))
                .collect()
        })
        .collect();
    Table { columns, rows }
}

/// An IoU table as the protocols' table: `step`, one IoU column per class
/// and their mean (over the classes with a value).
fn iou_rows(table: &ca_model::IouTable, classes: usize) -> Table {
    let mut columns = vec!["step".to_string()];
    columns.extend(class_names(classes).iter().map(|n| iou_column(n)));
    columns.push(iou_column("mean"));
    let rows = table
        .steps
        .iter()
        .zip(&table.iou)
        .map(|(&t, ious)| {
            let finite: Vec<f64> = ious.iter().copied().filter(|v| v.is_finite()).collect();
            let mean = if finite.is_empty() {
                f64::NAN
            } else {
                finite.iter().sum::<f64>() / finite.len() as f64
            };
            std::iter::once(t as f64)
                .chain(ious.iter().copied())
                .chain(std::iter::once(mean))
                .collect()
        })
        .collect();
    Table { columns, rows }
}

/// The column of a table holding the IoU of class `name` (or of `mean`):
/// `iou_{name}`, as `stability.csv` names them.
pub fn iou_column(name: &str) -> String {
    format!("{IOU_COLUMN_PREFIX}{name}")
}

/// Whether a table column holds an IoU (a value in `[0, 1]`).
pub fn is_iou_column(column: &str) -> bool {
    column.starts_with(IOU_COLUMN_PREFIX)
}

const IOU_COLUMN_PREFIX: &str = "iou_";

/// Class names for `classes` classes: the dataset's, else `class<k>`.
fn class_names(classes: usize) -> Vec<String> {
    (0..classes)
        .map(|c| {
            CLASS_NAMES
                .get(c)
                .map_or_else(|| format!("class{c}"), |n| n.to_string())
        })
        .collect()
}

fn iou_chart(table: &Table, title: String, marks: Vec<f64>) -> Chart {
    let names = class_names(table.columns.len().saturating_sub(2));
    let columns = names
        .iter()
        .map(|n| (iou_column(n), n.clone()))
        .chain(std::iter::once((iou_column("mean"), "mean".into())))
        .collect();
    Chart {
        title,
        x_label: "CA step".into(),
        y_label: "IoU".into(),
        columns,
        marks,
        y_range: Some((0.0, 1.0)),
    }
}

/// IoU per class against CA step from fresh states on fixed images, from
/// step 1 to `opts.steps` (the paper runs to 10 x T): does the segmentation
/// stay once formed? The plot marks the training target `T`.
pub fn stability<M: CellModel>(
    model: &M,
    set: &EvalSet,
    opts: &RunOptions,
) -> Result<ProtocolOutput> {
    let (table, stderr) = iou_curve(model, set, opts, Schedule::Fixed)?;
    let title = format!(
        "Stability: IoU against CA step ({} images, T = {})",
        set.len(),
        opts.target
    );
    let chart = iou_chart(&table, title, vec![opts.target as f64]);
    Ok(ProtocolOutput {
        name: "stability",
        table,
        extra_tables: vec![("stderr".into(), stderr)],
        chart,
        maps: vec![],
    })
}

/// [`stability`] for the U-Net baseline: its one prediction per image
/// (no CA steps, no draws), the IoU the same at every recorded step, so
/// that its `stability.csv` has the colonies' columns and rows. Its
/// counterpart of an ensemble is flip test-time augmentation: `ensemble`
/// 2 averages each image's prediction with its mirror's; other counts
/// than 1 and 2 are refused.
pub fn stability_unet(model: &UNet, set: &EvalSet, opts: &RunOptions) -> Result<ProtocolOutput> {
    opts.validate()?;
    let flip = match opts.ensemble {
        1 => false,
        2 => true,
        n => {
            return Err(EvalError::invalid(
                "ensemble",
                n,
                "a U-Net has no random runs: 1, or 2 for flip test-time augmentation",
            ))
        }
    };
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to evaluate"));
    }
    let counts = ca_sched::unet_iou(model, set, opts.batch, flip)?;
    let steps = opts.record_steps();
    let table = ca_model::IouTable {
        iou: vec![counts.iou(); steps.len()],
        stderr: vec![counts.stderr(); steps.len()],
        steps,
    };
    let stderr = stderr_rows(&table, model.config().classes);
    let table = iou_rows(&table, model.config().classes);
    let title = format!(
        "Stability of the U-Net baseline ({} images; one prediction, the same at every step)",
        set.len()
    );
    let chart = iou_chart(&table, title, vec![opts.target as f64]);
    Ok(ProtocolOutput {
        name: "stability",
        table,
        extra_tables: vec![("stderr".into(), stderr)],
        chart,
        maps: vec![],
    })
}

/// An evaluation set as training data: its images and labels as they
/// are (no augmentation; the augmentation seed is ignored).
impl ca_sched::TrainData for EvalSet {
    fn len(&self) -> usize {
        self.images.len()
    }

    fn batch(&self, items: &[(usize, u64)], device: &Device) -> ca_sched::Result<(Tensor, Tensor)> {
        let images: Vec<Vec<f32>> = items.iter().map(|&(i, _)| self.images[i].clone()).collect();
        let labels: Vec<u32> = items
            .iter()
            .flat_map(|&(i, _)| self.labels[i].iter().map(|&c| u32::from(c)))
            .collect();
        let images =
            images_tensor(&images, self.size, device).map_err(ca_sched::SchedError::data)?;
        let labels = Tensor::from_vec(labels, (items.len(), self.size, self.size), device)?;
        Ok((images, labels))
    }
}

/// IoU against CA step while the image under each colony changes every
/// `period` steps and the state is kept: slot `i` sees sample `i`, then
/// `i + 1`, `i + 2`, ... (cyclically). IoU is measured against the labels
/// of the image currently shown; the plot marks the switches.
pub fn switching<M: CellModel>(
    model: &M,
    set: &EvalSet,
    opts: &RunOptions,
    period: usize,
) -> Result<ProtocolOutput> {
    if period == 0 {
        return Err(EvalError::invalid("period", 0, "must be at least 1"));
    }
    let schedule = Schedule::Switch { period };
    let (table, _) = iou_curve(model, set, opts, schedule)?;
    let title = format!(
        "Image switching every {period} steps ({} images, state kept)",
        set.len()
    );
    let chart = iou_chart(&table, title, schedule.marks(opts.steps));
    Ok(ProtocolOutput {
        name: "switching",
        table,
        extra_tables: vec![],
        chart,
        maps: vec![],
    })
}

/// IoU against CA step when, after step `at`, each image (and its labels)
/// is translated by `shift` pixels right and down (the uncovered border
/// repeats the edge), the state kept.
pub fn shift<M: CellModel>(
    model: &M,
    set: &EvalSet,
    opts: &RunOptions,
    at: usize,
    shift: isize,
) -> Result<ProtocolOutput> {
    if at == 0 || at >= opts.steps {
        return Err(EvalError::invalid(
            "shift step",
            at,
            format!("must be between 1 and steps - 1 = {}", opts.steps - 1),
        ));
    }
    if shift.unsigned_abs() >= set.size {
        return Err(EvalError::invalid(
            "shift",
            shift,
            format!("must be smaller than the image size {}", set.size),
        ));
    }
    let schedule = Schedule::Shift {
        at,
        dx: shift,
        dy: shift,
    };
    let (table, _) = iou_curve(model, set, opts, schedule)?;
    let title = format!(
        "Image shifted by ({shift}, {shift}) px after step {at} ({} images)",
        set.len()
    );
    let chart = iou_chart(&table, title, schedule.marks(opts.steps));
    Ok(ProtocolOutput {
        name: "shift",
        table,
        extra_tables: vec![],
        chart,
        maps: vec![],
    })
}

/// Refuses an ensemble in a protocol that measures single runs.
fn single_run(opts: &RunOptions, protocol: &str) -> Result<()> {
    match opts.ensemble {
        1 => Ok(()),
        n => Err(EvalError::invalid(
            "ensemble",
            n,
            format!("{protocol} measures single runs; the IoU curves (stability, switching, shift) take an ensemble"),
        )),
    }
}

fn mean_abs(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.abs()?.mean_all()?.to_scalar::<f32>()?))
}

/// Mean absolute values ("L1 norms normalized to the number of
/// dimensions", Appendix A.1) against CA step on fixed images from fresh
/// states: of the state, of the logits, of their one-step changes, and the
/// fraction of pixels whose predicted class changed in the step. Averaged
/// over all samples.
pub fn norms<M: CellModel>(model: &M, set: &EvalSet, opts: &RunOptions) -> Result<ProtocolOutput> {
    opts.validate()?;
    single_run(opts, "norms")?;
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to evaluate"));
    }
    let device = model.rule().device();
    let records = opts.record_steps();
    let mut sums = vec![[0f64; 5]; records.len()];
    let indices: Vec<usize> = (0..set.len()).collect();
    for (chunk_id, chunk) in indices.chunks(opts.batch).enumerate() {
        let mut col = colony(model, chunk.len(), set.size, opts.seed, chunk_id)?;
        let images: Vec<Vec<f32>> = chunk.iter().map(|&i| set.images[i].clone()).collect();
        let env = env_tensor(&col, &images, set.size, device)?;
        let mut prev_state = col.state().clone();
        let mut prev_logits = col.logits()?;
        let mut prev_pred = prev_logits.argmax(1)?;
        let weight = chunk.len() as f64;
        let mut k = 0;
        col.evolve_with(&env, opts.steps, |t, col| {
            let state = col.state().clone();
            let logits = col.logits()?;
            let pred = logits.argmax(1)?;
            if records.get(k) == Some(&t) {
                let row = norms_row(
                    [&prev_state, &prev_logits, &prev_pred],
                    [&state, &logits, &pred],
                )?;
                for (s, v) in sums[k].iter_mut().zip(row) {
                    *s += v * weight;
                }
                k += 1;
            }
            (prev_state, prev_logits, prev_pred) = (state, logits, pred);
            Ok::<_, EvalError>(None)
        })?;
    }
    Ok(norms_output(&records, &sums, set.len(), opts))
}

/// One recorded step of the norms protocol from the state, logits and
/// prediction before and after it: `|s|`, `|l|`, `|s_t - s_t-1|`,
/// `|l_t - l_t-1|` (means of absolute values) and the fraction of pixels
/// whose class changed.
fn norms_row(before: [&Tensor; 3], after: [&Tensor; 3]) -> Result<[f64; 5]> {
    let [prev_state, prev_logits, prev_pred] = before;
    let [state, logits, pred] = after;
    let changed = pred
        .ne(prev_pred)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?;
    Ok([
        mean_abs(state)?,
        mean_abs(logits)?,
        mean_abs(&(state - prev_state)?)?,
        mean_abs(&(logits - prev_logits)?)?,
        f64::from(changed),
    ])
}

/// The norms protocol's output from its per-step sums over `images`.
fn norms_output(
    records: &[usize],
    sums: &[[f64; 5]],
    images: usize,
    opts: &RunOptions,
) -> ProtocolOutput {
    let n = images as f64;
    let columns = [
        "step",
        "state_l1",
        "logits_l1",
        "state_change_l1",
        "logits_change_l1",
        "prediction_change",
    ]
    .map(String::from)
    .to_vec();
    let rows = records
        .iter()
        .zip(sums)
        .map(|(&t, s)| {
            std::iter::once(t as f64)
                .chain(s.iter().map(|v| v / n))
                .collect()
        })
        .collect();
    let table = Table { columns, rows };
    let chart = Chart {
        title: format!("Mean absolute values against CA step ({images} images)"),
        x_label: "CA step".into(),
        y_label: "mean |value|".into(),
        columns: labelled(&[
            ("state_l1", "state |s|"),
            ("logits_l1", "logits |l|"),
            ("state_change_l1", "state change |s_t - s_t-1|"),
            ("logits_change_l1", "logits change |l_t - l_t-1|"),
            ("prediction_change", "fraction of pixels changing class"),
        ]),
        marks: vec![opts.target as f64],
        y_range: None,
    };
    ProtocolOutput {
        name: "norms",
        table,
        extra_tables: vec![],
        chart,
        maps: vec![],
    }
}

/// Anytime stopping against a fixed step count: every image segmented
/// until its class map settles ([`ca_core::Segmenter::segment_until_stable`])
/// under each of `settings`, next to the fixed `opts.target` steps (the
/// row whose settling columns are `NaN`); rows in the order of their mean
/// steps, so that the plot is IoU against steps. Columns: `mean_steps`,
/// `max_change`, `window`, `min_steps`, `max_steps`, `smoothing`, `settled` (the
/// fraction of images that settled before `max_steps`), the IoU per class
/// and their mean, and the object IoU's standard error. Chunk `k` of
/// `opts.batch` images is seeded `opts.seed + k`, the same for every row;
/// `opts.ensemble` runs per image.
pub fn anytime<M: CellModel>(
    model: &M,
    set: &EvalSet,
    opts: &RunOptions,
    settings: &[Settling],
) -> Result<ProtocolOutput> {
    opts.validate()?;
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to evaluate"));
    }
    for s in settings {
        s.validate()?;
    }
    let classes = model.rule().config().num_classes;
    let device = model.rule().device().clone();
    // Row 0: the fixed step count; then one row per setting.
    let rows_n = settings.len() + 1;
    let mut counts = vec![ca_sched::IouCounts::new(classes); rows_n];
    let mut steps = vec![0usize; rows_n];
    let mut settled = vec![0usize; rows_n];
    let indices: Vec<usize> = (0..set.len()).collect();
    for (k, chunk) in indices.chunks(opts.batch).enumerate() {
        let images: Vec<Vec<f32>> = chunk.iter().map(|&i| set.images[i].clone()).collect();
        let labels: Vec<u32> = chunk
            .iter()
            .flat_map(|&i| set.labels[i].iter().map(|&c| u32::from(c)))
            .collect();
        let images = images_tensor(&images, set.size, &device)?;
        let pixels = set.size * set.size;
        let segmenter = Segmenter::new(model)
            .with_seed(opts.seed.wrapping_add(k as u64))
            .with_ensemble(opts.ensemble);
        let fixed = segmenter
            .clone()
            .with_steps(opts.target)
            .segment_batch(&images)?;
        counts[0].add(&fixed.flatten_all()?.to_vec1::<u32>()?, &labels, pixels);
        steps[0] += opts.target * chunk.len();
        for (r, setting) in settings.iter().enumerate() {
            let out = segmenter.segment_until_stable(&images, setting)?;
            counts[r + 1].add(
                &out.classes.flatten_all()?.to_vec1::<u32>()?,
                &labels,
                pixels,
            );
            steps[r + 1] += out.steps.iter().sum::<usize>();
            settled[r + 1] += out.settled.iter().filter(|&&s| s).count();
        }
    }
    let n = set.len() as f64;
    let mut columns: Vec<String> = [
        "mean_steps",
        "max_change",
        "window",
        "min_steps",
        "max_steps",
        "smoothing",
        "settled",
    ]
    .map(String::from)
    .to_vec();
    columns.extend(class_names(classes).iter().map(|c| iou_column(c)));
    columns.push(iou_column("mean"));
    columns.push("stderr_object".into());
    let mut rows: Vec<Vec<f64>> = (0..rows_n)
        .map(|r| {
            let head = match r {
                0 => [f64::NAN; 5],
                _ => {
                    let s = &settings[r - 1];
                    [
                        s.max_change,
                        s.window as f64,
                        s.min_steps as f64,
                        s.max_steps as f64,
                        s.smoothing,
                    ]
                }
            };
            let iou = counts[r].iou();
            let finite: Vec<f64> = iou.iter().copied().filter(|v| v.is_finite()).collect();
            let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
            std::iter::once(steps[r] as f64 / n)
                .chain(head)
                .chain(std::iter::once(settled[r] as f64 / n))
                .chain(iou.iter().copied())
                .chain([mean, counts[r].stderr().get(1).copied().unwrap_or(f64::NAN)])
                .collect()
        })
        .collect();
    rows.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let table = Table { columns, rows };
    let chart = Chart {
        title: format!(
            "Anytime stopping: IoU against mean CA steps ({} images; marked: {} fixed steps)",
            set.len(),
            opts.target
        ),
        x_label: "mean CA steps".into(),
        y_label: "IoU".into(),
        columns: vec![
            (iou_column("object"), "object".into()),
            (iou_column("boundary"), "boundary".into()),
        ],
        marks: vec![opts.target as f64],
        y_range: Some((0.0, 1.0)),
    };
    Ok(ProtocolOutput {
        name: "anytime",
        table,
        extra_tables: vec![],
        chart,
        maps: vec![],
    })
}

/// Video: the colony carried from frame to frame against a fresh colony
/// for every frame, on moving sequences made from the set's photos
/// ([`ca_data::sequence`]). For each motion and each image, a sequence of
/// `frames` frames starts at that image (cuts go on to the next ones). The
/// carried colony gives the first frame `opts.target` steps, then `K`
/// steps to each later frame, for each `K` of `steps_per_frame`; the cold
/// one gives every frame `opts.target` steps from a fresh state. Both are
/// scored on frames 1.. (the first frame is the same full start), the IoU
/// averaged over those frames. `video.csv`: `steps_per_frame` and, per
/// motion, `iou_object_{motion}` and `iou_boundary_{motion}`;
/// `video_cold.csv`: the cold colony's, one row at `opts.target` steps;
/// `video_frames.csv`: every frame's IoU (`frame`, then per motion and
/// class `iou_{class}_{motion}_cold` and `iou_{class}_{motion}_k{K}` for
/// each `K`), to see the recovery after a cut frame by frame.
pub fn video<M: CellModel>(
    model: &M,
    set: &EvalSet,
    opts: &RunOptions,
    motions: &[(&str, Motion)],
    frames: usize,
    steps_per_frame: &[usize],
) -> Result<ProtocolOutput> {
    opts.validate()?;
    single_run(opts, "video")?;
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to evaluate"));
    }
    if frames < 2 {
        return Err(EvalError::invalid("frames", frames, "must be at least 2"));
    }
    if steps_per_frame.is_empty() || steps_per_frame.contains(&0) {
        return Err(EvalError::invalid(
            "steps_per_frame",
            format!("{steps_per_frame:?}"),
            "must be whole numbers of at least 1",
        ));
    }
    let photos: Vec<Frame> = (0..set.len())
        .map(|i| (set.images[i].clone(), set.labels[i].clone()))
        .collect();
    let t0 = opts.target;
    let mut columns = vec!["steps_per_frame".to_string()];
    let mut carried_rows: Vec<Vec<f64>> = steps_per_frame.iter().map(|&k| vec![k as f64]).collect();
    let mut cold_row = vec![t0 as f64];
    let mut frame_columns = vec!["frame".to_string()];
    let mut frame_rows: Vec<Vec<f64>> = (1..frames).map(|f| vec![f as f64]).collect();
    for (name, motion) in motions {
        let sequences: Vec<Vec<Frame>> = (0..set.len())
            .map(|i| make_sequence(&photos, i, set.size, *motion, frames))
            .collect::<std::result::Result<_, _>>()?;
        let frame_tensor = |chunk: &[usize], f: usize| -> ca_sched::Result<Inputs> {
            let images: Vec<Vec<f32>> = chunk.iter().map(|&i| sequences[i][f].0.clone()).collect();
            let labels = chunk
                .iter()
                .flat_map(|&i| sequences[i][f].1.iter().map(|&c| u32::from(c)))
                .collect();
            let images = images_tensor(&images, set.size, model.rule().device())
                .map_err(ca_sched::SchedError::data)?;
            Ok((images, labels))
        };
        // Cold: every later frame from a fresh state.
        let mut cold = Vec::new();
        for f in 1..frames {
            let table = ca_sched::iou_over_time(
                model,
                set.len(),
                opts.batch,
                opts.seed,
                &[t0],
                |chunk, t| (t == 1).then(|| frame_tensor(chunk, f)).transpose(),
            )?;
            cold.push(table.iou[0].clone());
        }
        // Carried: t0 steps on frame 0, then k on each later frame.
        let mut carried = Vec::new();
        for &k in steps_per_frame {
            let records: Vec<usize> = (1..frames).map(|f| t0 + f * k).collect();
            let table = ca_sched::iou_over_time(
                model,
                set.len(),
                opts.batch,
                opts.seed,
                &records,
                |chunk, t| {
                    let f = if t <= t0 { 0 } else { 1 + (t - t0 - 1) / k };
                    let starts = t == 1 || (t > t0 && (t - t0 - 1).is_multiple_of(k));
                    starts
                        .then(|| frame_tensor(chunk, f.min(frames - 1)))
                        .transpose()
                },
            )?;
            carried.push(table.iou);
        }
        let mean_of = |rows: &[Vec<f64>], c: usize| -> f64 {
            let v: Vec<f64> = rows
                .iter()
                .map(|r| r[c])
                .filter(|x| x.is_finite())
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        for c in [1, 2] {
            let class = CLASS_NAMES.get(c).copied().unwrap_or("class");
            columns.push(format!("{IOU_COLUMN_PREFIX}{class}_{name}"));
            cold_row.push(mean_of(&cold, c));
            for (row, rows) in carried_rows.iter_mut().zip(&carried) {
                row.push(mean_of(rows, c));
            }
            frame_columns.push(format!("{IOU_COLUMN_PREFIX}{class}_{name}_cold"));
            for (row, iou) in frame_rows.iter_mut().zip(&cold) {
                row.push(iou[c]);
            }
            for (&k, rows) in steps_per_frame.iter().zip(&carried) {
                frame_columns.push(format!("{IOU_COLUMN_PREFIX}{class}_{name}_k{k}"));
                for (row, iou) in frame_rows.iter_mut().zip(rows) {
                    row.push(iou[c]);
                }
            }
        }
    }
    let chart = Chart {
        title: format!(
            "Carried colony: object IoU per CA steps a frame ({} images, {frames} frames)",
            set.len()
        ),
        x_label: "CA steps per frame".into(),
        y_label: "IoU".into(),
        columns: motions
            .iter()
            .map(|(name, _)| {
                (
                    format!("{IOU_COLUMN_PREFIX}object_{name}"),
                    name.to_string(),
                )
            })
            .collect(),
        marks: vec![],
        y_range: Some((0.0, 1.0)),
    };
    Ok(ProtocolOutput {
        name: "video",
        table: Table {
            columns: columns.clone(),
            rows: carried_rows,
        },
        extra_tables: vec![
            (
                "cold".into(),
                Table {
                    columns: std::iter::once("steps".to_string())
                        .chain(columns.into_iter().skip(1))
                        .collect(),
                    rows: vec![cold_row],
                },
            ),
            (
                "frames".into(),
                Table {
                    columns: frame_columns,
                    rows: frame_rows,
                },
            ),
        ],
        chart,
        maps: vec![],
    })
}

/// A batch's images and flat labels, as [`ca_sched::iou_over_time`]
/// takes them.
type Inputs = (Tensor, Vec<u32>);

/// Per-pixel spread of the prediction over `runs` stochastic runs of each
/// image (different initial states and update draws; the runs of one image
/// form one batch, so under batch norm they share statistics).
///
/// Two measures per pixel: the variance of the softmax probabilities over
/// the runs, summed over classes (0 when all runs agree exactly; at most
/// `1 - 1/C`), and the disagreement of the predicted classes, `1 - sum_c
/// f_c^2` with `f_c` the fraction of runs predicting class `c` (the
/// variance of the one-hot prediction summed over classes). Both are
/// averaged over pixels and images at every recorded step (the table and the
/// plot). After the last step, a per-image table (`_samples`: index, both
/// measures, pixel accuracy of the majority vote) and, for the first `maps`
/// images, their majority vote and probability variance per pixel
/// ([`ProtocolOutput::maps`]; the `evaluate` example draws each as a
/// picture `_map_INDEX`).
pub fn uncertainty<M: CellModel>(
    model: &M,
    set: &EvalSet,
    opts: &RunOptions,
    runs: usize,
    maps: usize,
) -> Result<ProtocolOutput> {
    opts.validate()?;
    single_run(opts, "uncertainty")?;
    if runs < 2 {
        return Err(EvalError::invalid(
            "runs",
            runs,
            "a variance needs at least 2 runs",
        ));
    }
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to evaluate"));
    }
    let records = opts.record_steps();
    let classes = model.rule().config().num_classes;
    let device = model.rule().device();
    let s = set.size;
    let mut sums = vec![[0f64; 2]; records.len()];
    let mut per_sample = Vec::with_capacity(set.len());
    let mut kept = Vec::new();
    for (i, image) in set.images.iter().enumerate() {
        let mut col = colony(model, runs, s, opts.seed, i)?;
        let env = env_tensor(&col, &vec![image.clone(); runs], s, device)?;
        let mut k = 0;
        col.evolve_with(&env, opts.steps, |t, col| {
            if records.get(k) != Some(&t) {
                return Ok::<_, EvalError>(None);
            }
            let spread = Spread::of(&col.logits()?, classes)?;
            sums[k][0] += mean(&spread.prob_variance);
            sums[k][1] += mean(&spread.disagreement);
            k += 1;
            if t == opts.steps {
                per_sample.push(spread_row(i, &spread, &set.labels[i]));
                if i < maps {
                    kept.push(SpreadMap {
                        index: i,
                        majority: spread.majority,
                        prob_variance: spread.prob_variance,
                    });
                }
            }
            Ok(None)
        })?;
    }
    let n = set.len() as f64;
    let table = Table {
        columns: ["step", "prob_variance", "disagreement"]
            .map(String::from)
            .to_vec(),
        rows: records
            .iter()
            .zip(&sums)
            .map(|(&t, v)| vec![t as f64, v[0] / n, v[1] / n])
            .collect(),
    };
    Ok(uncertainty_output(
        runs,
        set.len(),
        opts,
        table,
        per_sample,
        kept,
    ))
}

/// The per-sample row of the uncertainty protocol at its last step: the
/// sample's index, its mean softmax variance and class disagreement, and
/// the pixel accuracy of the runs' majority against `labels`.
fn spread_row(index: usize, spread: &Spread, labels: &[u8]) -> Vec<f64> {
    let correct = spread
        .majority
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == u32::from(**l))
        .count();
    vec![
        index as f64,
        mean(&spread.prob_variance),
        mean(&spread.disagreement),
        correct as f64 / labels.len().max(1) as f64,
    ]
}

/// The uncertainty protocol's output from its step table, its per-sample
/// rows and the spread maps it kept.
fn uncertainty_output(
    runs: usize,
    images: usize,
    opts: &RunOptions,
    table: Table,
    per_sample: Vec<Vec<f64>>,
    kept: Vec<SpreadMap>,
) -> ProtocolOutput {
    let samples = Table {
        columns: ["index", "prob_variance", "disagreement", "pixel_accuracy"]
            .map(String::from)
            .to_vec(),
        rows: per_sample,
    };
    let chart = Chart {
        title: format!("Spread over {runs} stochastic runs against CA step ({images} images)"),
        x_label: "CA step".into(),
        y_label: "mean per-pixel spread".into(),
        columns: labelled(&[
            ("prob_variance", "softmax variance (sum over classes)"),
            ("disagreement", "class disagreement 1 - sum f_c^2"),
        ]),
        marks: vec![opts.target as f64],
        y_range: None,
    };
    ProtocolOutput {
        name: "uncertainty",
        table,
        extra_tables: vec![("samples".into(), samples)],
        chart,
        maps: kept,
    }
}

/// Owned `(column, label)` pairs.
fn labelled(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(c, l)| (c.to_string(), l.to_string()))
        .collect()
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

/// The spread of `R` runs' predictions of one image, per pixel.
struct Spread {
    /// Softmax variance over runs, summed over classes, `[H * W]`.
    prob_variance: Vec<f32>,
    /// `1 - sum_c f_c^2`, `[H * W]`.
    disagreement: Vec<f32>,
    /// The most frequent class (lowest id on ties), `[H * W]`.
    majority: Vec<u32>,
}

impl Spread {
    /// From logits `[R, C, H, W]` of `R` runs of the same image.
    fn of(logits: &Tensor, classes: usize) -> Result<Self> {
        let (r, _, h, w) = logits.dims4()?;
        let probs = candle_nn::ops::softmax(logits, 1)?;
        let m = probs.mean_keepdim(0)?;
        let var = probs.broadcast_sub(&m)?.sqr()?.mean(0)?.sum(0)?; // [H, W]
        let pred = logits.argmax(1)?.to_dtype(DType::U32)?; // [R, H, W]
        let pred = pred.flatten_from(1)?.to_vec2::<u32>()?;
        let cells = h * w;
        let mut counts = vec![0u32; cells * classes];
        for run in &pred {
            for (p, &c) in run.iter().enumerate() {
                if let Some(n) = counts.get_mut(p * classes + c as usize) {
                    *n += 1;
                }
            }
        }
        let mut disagreement = Vec::with_capacity(cells);
        let mut majority = Vec::with_capacity(cells);
        for cell in counts.chunks(classes) {
            let sq: f32 = cell.iter().map(|&n| (n as f32 / r as f32).powi(2)).sum();
            disagreement.push(1.0 - sq);
            let best = (0..classes).max_by_key(|&c| (cell[c], std::cmp::Reverse(c)));
            majority.push(best.unwrap_or(0) as u32);
        }
        Ok(Spread {
            prob_variance: var.flatten_all()?.to_vec1::<f32>()?,
            disagreement,
            majority,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_repeats_edges() {
        let v = [1, 2, 3, 4, 5, 6]; // 2 rows of 3
        assert_eq!(translate(&v, 1, (2, 3), (1, 0)), vec![1, 1, 2, 4, 4, 5]);
        assert_eq!(translate(&v, 1, (2, 3), (0, -1)), vec![4, 5, 6, 4, 5, 6]);
        assert_eq!(translate(&v, 2, (1, 3), (-1, 0)), vec![2, 3, 3, 5, 6, 6]);
    }

    #[test]
    fn record_steps_cover_ends() {
        let o = RunOptions {
            steps: 10,
            batch: 1,
            seed: 0,
            every: 4,
            target: 5,
            ensemble: 1,
        };
        assert_eq!(o.record_steps(), vec![1, 4, 8, 10]);
        let o = RunOptions {
            every: 1,
            steps: 3,
            ..o
        };
        assert_eq!(o.record_steps(), vec![1, 2, 3]);
    }

    #[test]
    fn schedules() {
        let s = Schedule::Switch { period: 4 };
        assert!(s.changes_at(1) && s.changes_at(5) && !s.changes_at(4));
        assert_eq!(s.marks(10), vec![4.5, 8.5]);
        let s = Schedule::Shift {
            at: 3,
            dx: 1,
            dy: 1,
        };
        assert_eq!(s.marks(10), vec![3.5]);
    }

    #[test]
    fn spread_of_identical_runs_is_zero() {
        let logits = Tensor::from_vec(
            vec![1f32, 0.0, 0.0, 2.0, 1f32, 0.0, 0.0, 2.0],
            (2, 2, 1, 2),
            &Device::Cpu,
        )
        .unwrap();
        let s = Spread::of(&logits, 2).unwrap();
        assert_eq!(s.majority, vec![0, 1]);
        assert!(s.prob_variance.iter().all(|&v| v.abs() < 1e-7));
        assert_eq!(s.disagreement, vec![0.0, 0.0]);
    }

    #[test]
    fn csv_cells() {
        assert_eq!(format_cell(3.0), "3");
        assert_eq!(format_cell(0.25), "0.250000");
        assert_eq!(format_cell(f64::NAN), "nan");
    }
}
