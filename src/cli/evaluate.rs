//! Evaluation protocols on a trained model (plain or high resolution), each writing `OUT/NAME.csv` and
//! a line plot `OUT/NAME.png`:
//!
//! - `stability`: IoU per class against CA step, 1 to 10 x T (Figs 10, 11c);
//! - `switching`: the image changes every `--period` steps, state kept (Figs 2, 11);
//! - `shift`: the image is translated by `--shift` pixels after step `--at` (Fig 11b);
//! - `norms`: mean absolute state, logits and per-step changes (Appendix A.1);
//! - `uncertainty`: per-pixel spread over `--runs` stochastic runs, with maps;
//! - `probe`: does the model read the image? The agreement of its maps of
//!   each photo with its maps of the photo's pixels shuffled and of a grey
//!   image (`probe.csv`: near 1 = ignores the image), and a picture of
//!   class maps and states at `--at` steps for one or two models
//!   (`probe.png`).
//!
//! `cargo run --release --example evaluate -- stability --data DIR`

use std::path::PathBuf;
use std::time::Instant;

use crate::ca_eval::pets::resolve_data_dir;
use crate::ca_eval::probe;
use crate::ca_eval::protocols::{self, EvalSet, ProtocolOutput, RunOptions, Table};
use crate::device::parse_device;
use crate::report;
use ca_core::{Downsampled, Settling};
use ca_data::sequence::Motion;
use ca_data::{breed_of, LoadOptions, PetsDataset, Split};
use ca_model::{AnyModel, Trainable};
use ca_unet::UNet;
use clap::{Args as ClapArgs, Parser, Subcommand};

/// The flags (`--help` lists them).
#[derive(Parser, Debug)]
#[command(about = "Evaluation protocols of a trained segmentation cellular automaton")]
pub struct Cli {
    #[command(subcommand)]
    protocol: Protocol,
}

#[derive(ClapArgs, Debug, Clone)]
struct Common {
    /// The trained model (plain or high resolution; the file says which).
    #[arg(long, default_value = "models/pets48.safetensors")]
    model: PathBuf,
    /// Dataset root in the official layout (else $CA_PETS_DIR, else
    /// data/oxford-iiit-pet, else the bundled synthetic fixture).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Split: test, trainval, or val (the validation part of trainval that
    /// `train_pets --val-fraction` holds out) or train (the rest of trainval).
    #[arg(long, default_value = "test", value_parser = parse_split)]
    split: EvalSplit,
    /// The fraction of trainval held out as validation, for `--split val`
    /// and `--split train` (as `train_pets --val-fraction`).
    #[arg(long, default_value_t = 0.15)]
    val_fraction: f64,
    /// Keep only the samples of these breeds (comma-separated, as in the
    /// file names: `Abyssinian,american_bulldog`).
    #[arg(long, value_delimiter = ',', conflicts_with = "exclude_breeds")]
    breeds: Vec<String>,
    /// Leave out the samples of these breeds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_breeds: Vec<String>,
    /// Square image size in pixels the data are resized to [default: the
    /// size recorded in the model file, else 48 cells times the model's
    /// stride].
    #[arg(long)]
    size: Option<usize>,
    /// Stability only: score on labels of this square size instead, the
    /// prediction averaged over blocks down to it (a 96/48 model at
    /// `--size 96 --label-size 48` against the 48x48 labels of the 48/48
    /// models); `--size` must be a multiple of it.
    #[arg(long)]
    label_size: Option<usize>,
    /// Colonies evolved at once.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Use only the first N samples of the split.
    #[arg(long)]
    limit: Option<usize>,
    /// T, the training target (the default length of runs is a multiple).
    #[arg(long, default_value_t = crate::ca_core::DEFAULT_STEPS)]
    target: usize,
    /// CA steps per run [default: 10 x T; 4 x T for shift; T for uncertainty].
    #[arg(long)]
    steps: Option<usize>,
    /// Record every N steps.
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// Seed of the initial states and the random updates.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Runs per image, their class probabilities averaged (a
    /// pseudo-ensemble; stability, switching and shift). For a U-Net: 2
    /// averages each image with its mirror (flip test-time augmentation).
    #[arg(long, default_value_t = 1)]
    ensemble: usize,
    /// Output directory.
    #[arg(long, default_value = "out/evaluate")]
    out: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: candle_core::Device,
}

#[derive(Subcommand, Debug)]
enum Protocol {
    /// IoU per class against CA step on fixed images.
    Stability(Common),
    /// IoU against step while the image changes every --period steps.
    Switching {
        #[command(flatten)]
        common: Common,
        /// Steps between image changes.
        #[arg(long, default_value_t = 40)]
        period: usize,
    },
    /// IoU against step when the image is translated mid-run.
    Shift {
        #[command(flatten)]
        common: Common,
        /// Pixels of translation, right and down (negative: left and up).
        #[arg(long, default_value_t = 3, allow_hyphen_values = true)]
        shift: isize,
        /// The translation happens after this step [default: T].
        #[arg(long)]
        at: Option<usize>,
    },
    /// Mean absolute state, logits and per-step changes against step.
    Norms(Common),
    /// One plot of a column of several CSVs written by the protocols (e.g.
    /// one per model): `compare --column iou_object a=out/a/switching.csv
    /// b=out/b/switching.csv`.
    Compare {
        /// NAME=CSV pairs; NAME is the legend entry.
        #[arg(required = true, value_parser = parse_named)]
        tables: Vec<(String, PathBuf)>,
        /// The column to plot against each table's first column.
        #[arg(long, default_value = "iou_object")]
        column: String,
        /// The plot title.
        #[arg(long, default_value = "Comparison")]
        title: String,
        /// The PNG to write.
        #[arg(long, default_value = "out/evaluate/compare.png")]
        out: PathBuf,
    },
    /// Does the model read the image: map agreement with shuffled and grey
    /// images at step T, and a picture of maps and states (`--other` adds
    /// a second model beside the first).
    Probe {
        #[command(flatten)]
        common: Common,
        /// A second model, drawn and measured beside `--model`.
        #[arg(long)]
        other: Option<PathBuf>,
        /// Photos in the picture (the first of the split).
        #[arg(long, default_value_t = 4)]
        photos: usize,
        /// The steps drawn, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,40,400")]
        at: Vec<usize>,
    },
    /// Anytime stopping: the mean steps and the IoU when every image runs
    /// until its class map settles (each --max-change crossed with each
    /// --window), next to T fixed steps.
    Anytime {
        #[command(flatten)]
        common: Common,
        /// Fractions of the cells that may change class in a quiet step.
        #[arg(long, value_delimiter = ',', default_value = "0,0.001,0.005")]
        max_change: Vec<f64>,
        /// Quiet steps in a row that count as settled.
        #[arg(long, value_delimiter = ',', default_value = "3,5")]
        window: Vec<usize>,
        /// Steps every image takes.
        #[arg(long, default_value_t = 10)]
        min_steps: usize,
        /// Steps no image exceeds.
        #[arg(long, default_value_t = 100)]
        max_steps: usize,
        /// Weights of the past in the running average of the class
        /// probabilities (0: the plain map), crossed with the others.
        #[arg(long, value_delimiter = ',', default_value = "0")]
        smoothing: Vec<f64>,
    },
    /// Video: the colony carried from frame to frame (T steps on the
    /// first frame, then --steps-per-frame on each) against a fresh colony
    /// of T steps per frame, on moving sequences made from the photos.
    Video {
        #[command(flatten)]
        common: Common,
        /// Frames per sequence.
        #[arg(long, default_value_t = 20)]
        frames: usize,
        /// CA steps per frame of the carried colony, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20")]
        steps_per_frame: Vec<usize>,
        /// The motions (of slow-pan, fast-pan, zoom, rotate, brightness, cut).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "slow-pan,fast-pan,zoom,rotate,brightness,cut"
        )]
        motions: Vec<String>,
    },
    /// Per-pixel variance of the prediction over stochastic runs.
    Uncertainty {
        #[command(flatten)]
        common: Common,
        /// Stochastic runs per image.
        #[arg(long, default_value_t = 8)]
        runs: usize,
        /// Write uncertainty maps for the first N images.
        #[arg(long, default_value_t = 4)]
        maps: usize,
    },
}

/// The samples `--split` names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EvalSplit {
    /// A whole split file.
    File(Split),
    /// The validation part of trainval.
    Validation,
    /// Trainval without its validation part.
    Training,
}

impl EvalSplit {
    fn name(self) -> &'static str {
        match self {
            EvalSplit::File(Split::TrainVal) => "trainval",
            EvalSplit::File(Split::Test) => "test",
            EvalSplit::Validation => "validation",
            EvalSplit::Training => "training",
        }
    }
}

fn parse_split(s: &str) -> Result<EvalSplit, String> {
    match s {
        "trainval" => Ok(EvalSplit::File(Split::TrainVal)),
        "test" => Ok(EvalSplit::File(Split::Test)),
        "val" => Ok(EvalSplit::Validation),
        "train" => Ok(EvalSplit::Training),
        _ => Err(format!(
            "unknown split '{s}' (expected test, trainval, val or train)"
        )),
    }
}

/// The samples of `c.split` at `size`, filtered by `--breeds` or
/// `--exclude-breeds`.
fn load_split(
    root: &std::path::Path,
    c: &Common,
    size: usize,
) -> Result<PetsDataset, Box<dyn std::error::Error>> {
    let options = LoadOptions::square(size);
    let ds = match c.split {
        EvalSplit::File(split) => PetsDataset::open(root, split, &options)?,
        EvalSplit::Validation | EvalSplit::Training => {
            let (train, val) = PetsDataset::open(root, Split::TrainVal, &options)?
                .split_validation(c.val_fraction)?;
            if c.split == EvalSplit::Validation {
                val
            } else {
                train
            }
        }
    };
    let ds = if !c.breeds.is_empty() {
        ds.subset(|s| c.breeds.iter().any(|b| b == breed_of(&s.name)))
    } else if !c.exclude_breeds.is_empty() {
        ds.subset(|s| !c.exclude_breeds.iter().any(|b| b == breed_of(&s.name)))
    } else {
        ds
    };
    if ds.is_empty() {
        return Err(format!(
            "no {} samples left under {} (breeds {:?}, excluded {:?})",
            c.split.name(),
            root.display(),
            c.breeds,
            c.exclude_breeds
        )
        .into());
    }
    Ok(ds)
}

fn parse_named(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("'{s}': expected NAME=CSV")),
    }
}

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_args(cli: Cli) {
    // Reuse the freed step buffers instead of faulting them in every step.
    crate::ca_core::alloc::retain_freed_memory();
    crate::error::exit_on_error(run(cli.protocol));
}

crate::cli::tool!(Cli);

/// Loads the model and the data (at the model's training size unless
/// `--size` says otherwise), and the run options with `default_steps`
/// (in multiples of T) unless `--steps` is given.
fn setup(
    c: &Common,
    default_steps: usize,
) -> Result<(AnyModel, EvalSet, RunOptions), Box<dyn std::error::Error>> {
    if let Some(label) = c.label_size {
        return Err(format!(
            "--label-size {label}: only `evaluate stability` of a colony takes it"
        )
        .into());
    }
    let (model, trained_size) = ca_model::load_model(&c.model, &c.device)?;
    let size = c.size.unwrap_or(trained_size);
    let source = resolve_data_dir(c.data.as_deref());
    if source.is_fixture {
        println!(
            "note: no data given, using the bundled synthetic set {}",
            source.root.display()
        );
    }
    let set = EvalSet::from_dataset(&load_split(&source.root, c, size)?, c.limit)?;
    let opts = RunOptions {
        steps: c.steps.unwrap_or(default_steps * c.target),
        batch: c.batch,
        seed: c.seed,
        every: c.every,
        target: c.target,
        ensemble: c.ensemble,
    };
    opts.validate()?;
    println!(
        "model {} ({}), {} {} samples at {size}x{size} from {}, {} steps",
        c.model.display(),
        match model.levels() {
            0 => "plain".to_string(),
            k => format!("high resolution, state {0}x{0}", size >> k),
        },
        set.len(),
        c.split.name(),
        source.root.display(),
        opts.steps
    );
    Ok((model, set, opts))
}

/// The block side that takes images of side `size` to labels of side
/// `label`, or an error naming `--label-size`.
fn label_factor(size: usize, label: usize) -> Result<usize, Box<dyn std::error::Error>> {
    if label == 0 || !size.is_multiple_of(label) {
        return Err(
            format!("--label-size {label}: must divide the image size {size} (--size)").into(),
        );
    }
    Ok(size / label)
}

/// [`setup`] for a U-Net file (`stability` only): the data at its
/// training size unless `--size` says otherwise, the steps of `--steps`
/// (default 10 T) at which its one prediction is reported.
fn unet_setup(
    c: &Common,
    unet: &UNet,
    trained_size: usize,
) -> Result<(EvalSet, RunOptions), Box<dyn std::error::Error>> {
    if let Some(label) = c.label_size {
        return Err(format!(
            "--label-size {label}: only `evaluate stability` of a colony takes it"
        )
        .into());
    }
    let size = c.size.unwrap_or(trained_size);
    let source = resolve_data_dir(c.data.as_deref());
    let set = EvalSet::from_dataset(&load_split(&source.root, c, size)?, c.limit)?;
    let opts = RunOptions {
        steps: c.steps.unwrap_or(10 * c.target),
        batch: c.batch,
        seed: c.seed,
        every: c.every,
        target: c.target,
        ensemble: c.ensemble,
    };
    opts.validate()?;
    println!(
        "model {} (U-Net baseline, width {}: one prediction, the same at every step), \
         {} {} samples at {size}x{size} from {}",
        c.model.display(),
        unet.config().width,
        set.len(),
        c.split.name(),
        source.root.display(),
    );
    Ok((set, opts))
}

fn run(protocol: Protocol) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let (output, set, out_dir): (ProtocolOutput, EvalSet, PathBuf) = match &protocol {
        Protocol::Stability(c) => match ca_model::load_unet(&c.model, &c.device)? {
            Some((unet, trained_size)) => {
                let (set, opts) = unet_setup(c, &unet, trained_size)?;
                let out = protocols::stability_unet(&unet, &set, &opts)?;
                (out, set, c.out.clone())
            }
            None => {
                let plain = Common {
                    label_size: None,
                    ..c.clone()
                };
                let (model, mut set, opts) = setup(&plain, 10)?;
                let out = match c.label_size {
                    None => protocols::stability(&model, &set, &opts)?,
                    Some(label) => {
                        let factor = label_factor(set.size, label)?;
                        let source = resolve_data_dir(c.data.as_deref());
                        set.labels =
                            EvalSet::from_dataset(&load_split(&source.root, c, label)?, c.limit)?
                                .labels;
                        println!("labels at {label}x{label}: the prediction averaged over {factor}x{factor} blocks");
                        protocols::stability(&Downsampled::new(&model, factor)?, &set, &opts)?
                    }
                };
                (out, set, c.out.clone())
            }
        },
        Protocol::Switching { common: c, period } => {
            let (model, set, opts) = setup(c, 10)?;
            let out = protocols::switching(&model, &set, &opts, *period)?;
            (out, set, c.out.clone())
        }
        Protocol::Shift {
            common: c,
            shift,
            at,
        } => {
            let (model, set, opts) = setup(c, 4)?;
            let at = at.unwrap_or(c.target);
            let out = protocols::shift(&model, &set, &opts, at, *shift)?;
            (out, set, c.out.clone())
        }
        Protocol::Norms(c) => {
            let (model, set, opts) = setup(c, 10)?;
            let out = protocols::norms(&model, &set, &opts)?;
            (out, set, c.out.clone())
        }
        Protocol::Anytime {
            common: c,
            max_change,
            window,
            min_steps,
            max_steps,
            smoothing,
        } => {
            let (model, set, opts) = setup(c, 1)?;
            let mut settings = Vec::new();
            for &s in smoothing {
                for &m in max_change {
                    for &w in window {
                        settings.push(Settling {
                            max_change: m,
                            window: w,
                            min_steps: *min_steps,
                            max_steps: *max_steps,
                            smoothing: s,
                        });
                    }
                }
            }
            let out = protocols::anytime(&model, &set, &opts, &settings)?;
            (out, set, c.out.clone())
        }
        Protocol::Video {
            common: c,
            frames,
            steps_per_frame,
            motions,
        } => {
            let standard = Motion::standard();
            let chosen = motions
                .iter()
                .map(|name| {
                    standard
                        .iter()
                        .find(|(n, _)| n == name)
                        .copied()
                        .ok_or_else(|| {
                            let known: Vec<&str> = standard.iter().map(|m| m.0).collect();
                            format!(
                                "--motions: unknown motion '{name}' (known: {})",
                                known.join(", ")
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (model, set, opts) = setup(c, 1)?;
            let out = protocols::video(&model, &set, &opts, &chosen, *frames, steps_per_frame)?;
            (out, set, c.out.clone())
        }
        Protocol::Uncertainty {
            common: c,
            runs,
            maps,
        } => {
            let (model, set, opts) = setup(c, 1)?;
            let out = protocols::uncertainty(&model, &set, &opts, *runs, *maps)?;
            (out, set, c.out.clone())
        }
        Protocol::Compare {
            tables,
            column,
            title,
            out,
        } => return compare(tables, column, title, out),
        Protocol::Probe {
            common,
            other,
            photos,
            at,
        } => return probe(common, other.as_deref(), *photos, at),
    };
    print_summary(&output);
    for p in report::write_protocol(&output, &set, &out_dir)? {
        println!("wrote {}", p.display());
    }
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Plots `column` of the named CSVs into `out`.
fn compare(
    tables: &[(String, PathBuf)],
    column: &str,
    title: &str,
    out: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let loaded = tables
        .iter()
        .map(|(name, path)| Ok((name.clone(), Table::read_csv(path)?)))
        .collect::<Result<Vec<_>, crate::ca_eval::EvalError>>()?;
    let plot = report::compare(&loaded, column, title.to_string())?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    plot.save(out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `evaluate probe`: the image-reading agreement of each model at step T
/// over the split (`OUT/probe.csv`) and the picture of the first `photos`
/// photos (`OUT/probe.png`): per row the photo, then per model its class
/// maps at the `at` steps and its states there.
fn probe(
    c: &Common,
    other: Option<&std::path::Path>,
    photos: usize,
    at: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    use crate::ca_viz::render::{
        chw_to_rgb, class_image, hstack, save_png, upscale, vstack, StateProjection,
    };
    let mut models = vec![c.model.clone()];
    models.extend(other.map(std::path::Path::to_path_buf));
    std::fs::create_dir_all(&c.out).map_err(|e| format!("{}: {e}", c.out.display()))?;
    let mut csv = String::from("model,step,agreement_shuffled,agreement_grey,iou_labels,samples\n");
    let mut rows: Vec<Vec<image::RgbImage>> = Vec::new();
    for path in &models {
        let (model, set, opts) = setup(
            &Common {
                model: path.clone(),
                ..c.clone()
            },
            1,
        )?;
        let reading = probe::image_reading(&model, &set, opts.target, opts.batch, opts.seed)?;
        println!(
            "{}: at step {} map agreement with shuffled pixels {:.3}, with grey {:.3} (1 = ignores the image); IoU with labels {:.3}",
            path.display(), reading.step, reading.shuffled, reading.grey, reading.labels
        );
        csv += &format!(
            "{},{},{:.4},{:.4},{:.4},{}\n",
            path.display(),
            reading.step,
            reading.shuffled,
            reading.grey,
            reading.labels,
            reading.samples
        );
        let head = EvalSet {
            names: set.names.iter().take(photos).cloned().collect(),
            images: set.images.iter().take(photos).cloned().collect(),
            labels: set.labels.iter().take(photos).cloned().collect(),
            size: set.size,
        };
        let frames = probe::probe_frames(&model, &head, at, opts.seed)?;
        let projection = StateProjection::new(frames.state_channels);
        let (s, (h, w)) = (frames.image_size, frames.state_size);
        let scale = |n: usize| (144 / n.max(1)).max(1) as u32;
        for i in 0..head.len() {
            if rows.len() <= i {
                rows.push(vec![upscale(&chw_to_rgb(&head.images[i], s, s), scale(s))]);
            }
            let maps = frames.classes[i]
                .iter()
                .map(|m| upscale(&class_image(m, s, s), scale(s)));
            let states = frames.states[i]
                .iter()
                .map(|st| upscale(&projection.project(st, w, h), scale(w)));
            rows[i].push(image::RgbImage::new(8, 1));
            rows[i].extend(maps.chain(states));
        }
    }
    let csv_path = c.out.join("probe.csv");
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let png = c.out.join("probe.png");
    save_png(
        &vstack(&rows.iter().map(|r| hstack(r)).collect::<Vec<_>>()),
        &png,
    )?;
    println!("wrote {} and {} (per row: photo, then per model maps at steps {at:?}, states at those steps)", csv_path.display(), png.display());
    Ok(())
}

/// Prints the main table's first row, a few middle rows and its last row.
fn print_summary(output: &ProtocolOutput) {
    let t = &output.table;
    println!("{}", t.columns.join("  "));
    let n = t.rows.len();
    let picks: Vec<usize> = if n <= 8 {
        (0..n).collect()
    } else {
        (0..8).map(|k| k * (n - 1) / 7).collect()
    };
    for i in picks {
        let cells: Vec<String> = t.rows[i]
            .iter()
            .enumerate()
            .map(|(k, v)| {
                if k == 0 {
                    format!("{v:>5}")
                } else {
                    format!("{v:.4}")
                }
            })
            .collect();
        println!("{}", cells.join("  "));
    }
}
