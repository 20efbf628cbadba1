//! The command line of `train_pets`: every flag, its default and its
//! parser, and the settings they resolve to (cell config, training
//! schedule, learner settings, augmentation). CLI glue: the example parses
//! [`TrainArgs`] and runs a [`ca_sched::Learner`].

use std::path::PathBuf;

use ca_core::{Cascade, CellConfig, ImageNorm, Norm, Perception};

use ca_data::{Augment, LoadOptions, LoadPolicy, PetsDataset, CLASS_NAMES};
use ca_model::Trainable;
use ca_sched::{
    config_conflicts, AdamConfig, CurriculumConfig, GradNorm, InitConfig, LearnerConfig,
    LossConfig, LrSchedule, LrScheduleConfig, StageConfig, TrainConfig, Trainer, UnrollConfig,
};
use ca_unet::UNetConfig;
use clap::Parser;

use crate::device::parse_device;
use crate::flags::{check_size, levels_for, FlagError};

#[derive(Parser, Debug)]
/// Every flag of `train_pets`, as parsed.
#[command(
    about = "Train a segmentation cellular automaton on Oxford-IIIT Pet data",
    long_about = None
)]
pub struct TrainArgs {
    /// Dataset root in the official layout (else $CA_PETS_DIR, else
    /// data/oxford-iiit-pet, else the bundled synthetic fixture).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Skip samples that cannot be read (and bad split lines), printing a
    /// summary, instead of stopping at the first one.
    #[arg(long)]
    pub lenient: bool,
    /// Square image (and state grid) size in pixels [default: 48; 32 on the fixture].
    #[arg(long)]
    pub size: Option<usize>,
    /// High resolution: image (and label) size in pixels, with
    /// `--state-size`; it must be the state size times 2, 4 or 8.
    #[arg(long, requires = "state_size", conflicts_with = "size")]
    pub image_size: Option<usize>,
    /// High resolution: state grid size in cells, with `--image-size`.
    #[arg(long, requires = "image_size")]
    pub state_size: Option<usize>,
    /// State channels [default: 48; 16 on the fixture].
    #[arg(long = "state", value_name = "STATE", id = "state_channels")]
    pub state: Option<usize>,
    /// Hidden channels [default: 72; 32 on the fixture].
    #[arg(long = "hidden", value_name = "HIDDEN", id = "hidden_channels")]
    pub hidden: Option<usize>,
    /// Hidden 1x1 layers.
    #[arg(long, default_value_t = 2)]
    pub hidden_layers: usize,
    /// Perception: conv3x3, depthwise or random_depthwise.
    #[arg(long, default_value = "conv3x3")]
    pub perception: Perception,
    /// State normalization: none, batch, instance or channel.
    #[arg(long, default_value = "instance")]
    pub norm: Norm,
    /// Reset gate on or off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reset_gate: bool,
    /// Residual update on or off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub residual: bool,
    /// Optimizer steps in total (a resumed run stops at the same total)
    /// [default: 3000; 200 on the fixture].
    #[arg(long = "steps", value_name = "STEPS", id = "max_steps")]
    pub steps: Option<u64>,
    /// Stop after this many minutes of training, whatever `--steps` says
    /// (a resumed run counts its earlier minutes).
    #[arg(long = "minutes", value_name = "MINUTES", id = "max_minutes")]
    pub minutes: Option<f64>,
    /// Stop after this many minutes of CPU time (all threads of this
    /// process, Linux only; counted from the first step, periodic
    /// evaluations included), whatever `--steps` says: an equal budget for
    /// runs that share a machine with other jobs (a resumed run counts its
    /// earlier CPU time, so stopping and resuming keeps the schedule).
    #[arg(
        long = "cpu-minutes",
        value_name = "CPU_MINUTES",
        id = "max_cpu_minutes"
    )]
    pub cpu_minutes: Option<f64>,
    /// Slots per optimizer step [default: 8; 32 with --paper].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Slots in the pool [default: the batch size].
    #[arg(long = "pool", value_name = "POOL", id = "pool_size")]
    pub pool: Option<usize>,
    /// K: CA steps per optimizer step.
    #[arg(long, default_value_t = 10)]
    pub mini_unroll: usize,
    /// T: the target number of CA steps.
    #[arg(long, default_value_t = 40)]
    pub target: usize,
    /// The full-unroll baseline (fresh states and images every step, unroll T).
    #[arg(long)]
    pub full_unroll: bool,
    /// Probability of an image reset within T steps.
    #[arg(long, default_value_t = 0.5)]
    pub p_image: f64,
    /// Probability of a state reset within T steps.
    #[arg(long, default_value_t = 0.5)]
    pub p_state: f64,
    /// Adam learning rate [default: 2e-3; 3e-4 with --paper].
    #[arg(long = "lr", value_name = "LR", id = "learning_rate")]
    pub lr: Option<f64>,
    /// Gradient treatment: none, per-tensor, or clip:MAX.
    #[arg(long, default_value = "per-tensor")]
    pub grad_norm: GradNorm,
    /// Random horizontal flips of training images.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub flip: bool,
    /// Random 90-degree rotations of training images.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub rotate90: bool,
    /// Colour jitter strength in [0, 1] (brightness, contrast, saturation); 0: off.
    #[arg(long, default_value_t = 0.0)]
    pub jitter: f32,
    /// Random scale and crop: smallest crop side as a fraction of the image,
    /// in (0, 1]; 1: off.
    #[arg(long, default_value_t = 1.0)]
    pub min_crop: f32,
    /// Fraction of trainval held out for validation (stratified by breed,
    /// fixed by the names); 0: none (the periodic evaluation is then skipped).
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// K-fold validation instead: hold out fold K of N (`K/N`, 0-based,
    /// stratified by breed and fixed by the names; fold 0 of N is the
    /// `--val-fraction 1/N` part), for a k-fold estimate over N runs.
    #[arg(long, value_parser = parse_fold, conflicts_with = "val_fraction")]
    pub val_fold: Option<(usize, usize)>,
    /// Also evaluate the test split at the end (for final figures only;
    /// recipes are chosen on the validation split).
    #[arg(long)]
    pub final_test: bool,
    /// Class weights of the cross-entropy, `BACKGROUND,OBJECT,BOUNDARY`, or `none`.
    #[arg(long, default_value = "0.7,1,3", value_parser = parse_class_weights)]
    pub class_weights: ClassWeights,
    /// Weight of the soft Dice term added to the cross-entropy; 0: off.
    #[arg(long, default_value_t = 1.0)]
    pub dice_weight: f64,
    /// Start the update layer at zero ("no change").
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub zero_update_init: bool,
    /// Initial bias of the reset gate [default: the rule's own, -2].
    #[arg(
        long = "reset-bias",
        value_name = "RESET_BIAS",
        id = "reset_bias_init",
        allow_hyphen_values = true
    )]
    pub reset_bias: Option<f64>,
    /// Learning-rate schedule over the budget: constant, cosine or step:N.
    #[arg(long, default_value = "cosine")]
    pub lr_schedule: LrSchedule,
    /// Optimizer steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 20)]
    pub warmup_steps: u64,
    /// The scheduled learning rate at the end of the budget, as a fraction of --lr.
    #[arg(long, default_value_t = 0.05)]
    pub lr_floor: f64,
    /// Decay of the moving average of the weights used for evaluation and
    /// the saved model, or `none`.
    #[arg(long = "ema", value_name = "EMA", id = "ema_decay", default_value = "0.99", value_parser = parse_ema)]
    pub ema: Ema,
    /// Standardise the image by the training part's per-channel mean and
    /// standard deviation (recorded in the model file) before the cells
    /// read it [default: true; false with --paper].
    #[arg(long, action = clap::ArgAction::Set)]
    pub image_norm: Option<bool>,
    /// Factor on the standardised image (with `--image-norm true`): a
    /// larger share of the perception's input for the image.
    #[arg(
        long = "image-gain",
        value_name = "IMAGE_GAIN",
        id = "image_norm.gain",
        default_value_t = 3.0
    )]
    pub image_gain: f32,
    /// Factors on the perception layer's initial weights that read the
    /// state and the image, `STATE,IMAGE` (issue 23 item 3).
    #[arg(long = "perception-init", value_name = "PERCEPTION_INIT", id = "perception_init_scale", value_parser = parse_pair, default_value = "1,1")]
    pub perception_init: [f64; 2],
    /// Factor on the perception layer's learning rate.
    #[arg(long, default_value_t = 1.0)]
    pub perception_lr_scale: f64,
    /// Growing NCA's fixed identity, Sobel and Laplacian filters of every
    /// input channel beside the learned 3x3 perception, with a learned mix
    /// (conv3x3 only; the saved model is a plain conv3x3 one) [default:
    /// true for conv3x3; false for the depthwise cells and with --paper].
    #[arg(long, action = clap::ArgAction::Set)]
    pub fixed_filters: Option<bool>,
    /// What to train: `colony` (the cellular automaton) or `unet`, the
    /// U-Net baseline of `--width` trained by the same loop, data, loss,
    /// optimizer and schedule (no pool or unroll; no `--resume`).
    #[arg(
        long = "model",
        value_name = "KIND",
        id = "model_kind",
        default_value = "colony"
    )]
    pub model_kind: ModelKind,
    /// Channels of the U-Net's first level (`--model unet`); 11 gives
    /// 47,952 parameters, the size of the 48/72 colony.
    #[arg(long, default_value_t = 11)]
    pub width: usize,
    /// A coarse-to-fine colony: the grid sides its evolution runs on,
    /// coarsest first, the last one the state grid (e.g. `12,24,48`); one
    /// rule for all, the state upsampled between levels. Needs
    /// `--level-steps`.
    #[arg(long, value_delimiter = ',', requires = "level_steps")]
    pub levels: Option<Vec<usize>>,
    /// CA steps at each side of `--levels` (e.g. `20,10,10`); they sum to
    /// `--target`. Fresh states run the coarse levels, pooled states go on
    /// at the last one.
    #[arg(long, value_delimiter = ',', requires = "levels")]
    pub level_steps: Option<Vec<usize>>,
    /// Curriculum: fraction of the budget trained with full unrolls
    /// (fresh states, unroll T) before the pool phase.
    #[arg(
        long = "curriculum",
        value_name = "CURRICULUM",
        id = "full_unroll_fraction",
        default_value_t = 0.0
    )]
    pub curriculum: f64,
    /// The paper's recipe instead of the default one (chosen on the
    /// validation split, see docs/RESULTS.md): batch 32, lr 3e-4 constant,
    /// plain cross-entropy, the default initialisation, no weight average,
    /// the raw image (the flags of those levers, but `--image-norm`,
    /// cannot be combined with it).
    #[arg(long, conflicts_with_all = [
        "class_weights", "dice_weight", "zero_update_init", "lr_schedule",
        "warmup_steps", "ema_decay",
    ])]
    pub paper: bool,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory [default: runs/pets48 for size 48].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: candle_core::Device,
    /// Continue the run in OUT/checkpoint.safetensors, with its model and
    /// schedule: a model or schedule flag typed with another value than the
    /// checkpoint's is an error naming it (the stopping, evaluation and
    /// checkpoint flags are the new run's; steps and time budgets count
    /// the whole run, the checkpoint's steps and time included).
    #[arg(long)]
    pub resume: bool,
    /// With --resume: count --minutes and --cpu-minutes from zero again,
    /// so the learning-rate schedule starts over (a warm restart, as in
    /// SGDR) while the weights, Adam's moments and the pool go on. Typed
    /// with it, --mini-unroll, --lr, --lr-schedule, --warmup-steps and
    /// --lr-floor start a next stage with those values (e.g.
    /// `--mini-unroll 40`: the paper's Fig. 7b unroll, the pool kept).
    #[arg(long, requires = "resume")]
    pub restart_schedule: bool,
    /// Evaluate on the validation split every N steps (0: only at the end)
    /// [default: 500; 100 on the fixture].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Validation samples used by the periodic evaluation (the final one
    /// uses all).
    #[arg(long, default_value_t = 64)]
    pub eval_samples: usize,
    /// Write a checkpoint every N steps.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
}

/// The `train_pets` flag that sets config field `field` (of `CellConfig`,
/// `TrainConfig` and its parts, or `LearnerConfig`), if one does: every
/// such flag carries the field's name as its clap id (`--lr` is
/// `learning_rate`), so the flag is read off the command's own definition.
pub fn flag_of_field(field: &str) -> Option<String> {
    use clap::CommandFactory;
    flag_in(&TrainArgs::command(), field)
}

/// [`flag_of_field`] in an already built `command` (one build for many
/// lookups).
fn flag_in(command: &clap::Command, field: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_id() == field)
        .and_then(|a| a.get_long())
        .map(|long| format!("--{long}"))
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

/// `--model`: the kind of model a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// The cellular automaton (plain, coarse-to-fine or high-resolution).
    Colony,
    /// The U-Net baseline (`ca_unet::UNet`).
    Unet,
}

/// `--class-weights`: one weight per class, or none.
#[derive(Debug, Clone)]
pub struct ClassWeights(pub Option<Vec<f64>>);

/// `--class-weights`: `none` or one weight per class, comma-separated
/// (their values are checked by `TrainConfig::validate`).
pub fn parse_class_weights(s: &str) -> Result<ClassWeights, String> {
    if s == "none" {
        return Ok(ClassWeights(None));
    }
    let w = comma_numbers(s)
        .ok_or_else(|| format!("'{s}' is not 'none' or three comma-separated numbers"))?;
    if w.len() != CLASS_NAMES.len() {
        return Err(format!(
            "'{s}': give {} weights ({})",
            CLASS_NAMES.len(),
            CLASS_NAMES.join(", ")
        ));
    }
    Ok(ClassWeights(Some(w)))
}

/// `--perception-init`: two comma-separated numbers (their values are
/// checked by `TrainConfig::validate`).
pub fn parse_pair(s: &str) -> Result<[f64; 2], String> {
    let v = comma_numbers(s).ok_or_else(|| format!("'{s}' is not two comma-separated numbers"))?;
    <[f64; 2]>::try_from(v).map_err(|_| format!("'{s}': give two numbers, STATE,IMAGE"))
}

/// The comma-separated numbers of `s`, or `None` when one does not parse.
fn comma_numbers(s: &str) -> Option<Vec<f64>> {
    s.split(',').map(|x| x.trim().parse::<f64>().ok()).collect()
}

/// `--ema`: a decay, or none.
#[derive(Debug, Clone, Copy)]
pub struct Ema(pub Option<f64>);

/// `--val-fold K/N` as `(K, N)` (checked against each other by
/// `PetsDataset::split_fold`).
pub fn parse_fold(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}': expected K/N, e.g. 0/5"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("'{s}': K and N must be whole numbers"))
    };
    Ok((number(k)?, number(n)?))
}

/// `--ema`: `none` or a decay (checked by `TrainConfig::validate`).
pub fn parse_ema(s: &str) -> Result<Ema, String> {
    match s {
        "none" => Ok(Ema(None)),
        _ => (s.parse().map(|d| Ema(Some(d))))
            .map_err(|_| format!("'{s}' is not 'none' or a decay in [0, 1)")),
    }
}

/// What the flags resolve to, defaults applied and every value checked.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    /// Stride-2 levels between image and state (0: one cell per pixel).
    pub levels: usize,
    /// The square image (and label) size in pixels.
    pub size: usize,
    /// The output folder.
    pub out: PathBuf,
    /// The cell rule of a fresh run (`env_channels` already that of the
    /// encoder for a high-resolution model), without its image
    /// standardisation: see [`TrainPlan::cell_for`].
    pub cell: CellConfig,
    /// The gain of the image standardisation (`--image-norm true`), or
    /// `None` for the raw image.
    pub image_gain: Option<f32>,
    /// The training schedule of a fresh run.
    pub schedule: TrainConfig,
    /// Budgets, cadences and evaluation of the run.
    pub learner: LearnerConfig,
    /// The augmentation of the training batches.
    pub augment: Augment,
    /// How the splits are read: size, and strict or lenient (`--lenient`).
    pub load: LoadOptions,
    /// The U-Net of `--model unet` (its image standardisation set from the
    /// data like the colony's, [`TrainPlan::cell_for`]); `None` for a
    /// colony.
    pub unet: Option<UNetConfig>,
}

impl TrainArgs {
    /// The settings these flags ask for; `fixture` selects the smaller
    /// defaults of the bundled synthetic set. Errors name the flag.
    pub fn plan(&self, fixture: bool) -> Result<TrainPlan, Box<dyn std::error::Error>> {
        let pick = |v: Option<usize>, real: usize, small: usize| {
            v.unwrap_or(if fixture { small } else { real })
        };
        let levels = match (self.image_size, self.state_size) {
            (Some(image), Some(state)) => levels_for(image, state)?,
            _ => 0,
        };
        let size = self.image_size.unwrap_or(pick(self.size, 48, 32));
        check_size(size)?;
        let unet = self.unet(levels)?;
        let batch = self.batch.unwrap_or(if self.paper { 32 } else { 8 });
        let cascade = self.cascade(size >> levels)?;
        let cell = CellConfig {
            cascade,
            state_channels: pick(self.state, 48, 16),
            hidden_channels: pick(self.hidden, 72, 32),
            hidden_layers: self.hidden_layers,
            perception: self.perception,
            norm: self.norm,
            reset_gate: self.reset_gate,
            residual: self.residual,
            env_channels: if levels > 0 {
                ca_hires::ENV_CHANNELS
            } else {
                CellConfig::default().env_channels
            },
            ..CellConfig::default()
        };
        cell.validate()
            .map_err(|e| flag_error(e.invalid_field().cloned(), e))?;
        let image_gain = self
            .image_norm
            .unwrap_or(!self.paper)
            .then_some(self.image_gain);
        if let Some(gain) = image_gain {
            ImageNorm::new([0.0; 3], [1.0; 3], gain)
                .map_err(|e| flag_error(e.invalid_field().cloned(), e))?;
        }
        let augment = Augment {
            flip: self.flip,
            rotate90: self.rotate90,
            jitter: self.jitter,
            min_crop: self.min_crop,
        };
        augment.validate()?;
        let schedule = self.schedule(batch)?;
        let learner = self.learner_config(fixture, batch)?;
        let out = self.out.clone().unwrap_or_else(|| match levels {
            0 => PathBuf::from(format!("runs/pets{size}")),
            _ => PathBuf::from(format!("runs/pets{size}s{}", size >> levels)),
        });
        Ok(TrainPlan {
            levels,
            size,
            out,
            cell,
            image_gain,
            schedule,
            learner,
            augment,
            load: LoadOptions {
                policy: match self.lenient {
                    true => LoadPolicy::Lenient,
                    false => LoadPolicy::Strict,
                },
                ..LoadOptions::square(size)
            },
            unet,
        })
    }

    /// The U-Net of `--model unet` (`None` for a colony), refusing the
    /// colony's own settings with it. Errors name the flag.
    fn unet(&self, levels: usize) -> Result<Option<UNetConfig>, Box<dyn std::error::Error>> {
        if self.model_kind == ModelKind::Colony {
            return Ok(None);
        }
        if levels > 0 || self.levels.is_some() {
            return Err(
                "--model unet: --image-size/--state-size and --levels shape a colony; \
                        a U-Net runs on --size images"
                    .into(),
            );
        }
        if self.resume {
            return Err(
                "--model unet: U-Net runs keep no resumable checkpoint, so --resume \
                        has nothing to continue; start a fresh run"
                    .into(),
            );
        }
        let config = UNetConfig {
            width: self.width,
            ..UNetConfig::default()
        };
        config
            .validate()
            .map_err(|e| format!("--width {}: {e}", self.width))?;
        Ok(Some(config))
    }

    /// The training schedule the flags ask for (`--paper`'s settings over
    /// them), validated, errors naming the flag.
    fn schedule(&self, batch: usize) -> Result<TrainConfig, Box<dyn std::error::Error>> {
        // --paper: the paper's rate schedule, loss, initialisation and no
        // average over the flags (whose defaults are the recipe's).
        let paper = self.paper.then(TrainConfig::paper);
        let schedule = TrainConfig {
            unroll: UnrollConfig {
                batch,
                pool_size: self.pool.unwrap_or(batch),
                mini_unroll: self.mini_unroll,
                target: self.target,
                full_unroll: self.full_unroll,
                p_image: self.p_image,
                p_state: self.p_state,
            },
            curriculum: CurriculumConfig {
                full_unroll_fraction: self.curriculum,
            },
            optimizer: AdamConfig {
                learning_rate: self.lr.unwrap_or(match &paper {
                    Some(p) => p.optimizer.learning_rate,
                    None => TrainConfig::recipe().optimizer.learning_rate,
                }),
                grad_norm: self.grad_norm,
                ..AdamConfig::default()
            },
            lr_schedule: match &paper {
                Some(p) => p.lr_schedule,
                None => LrScheduleConfig {
                    shape: self.lr_schedule,
                    warmup_steps: self.warmup_steps,
                    floor: self.lr_floor,
                },
            },
            loss: match &paper {
                Some(p) => p.loss.clone(),
                None => LossConfig {
                    class_weights: self.class_weights.0.clone(),
                    dice_weight: self.dice_weight,
                },
            },
            init: InitConfig {
                zero_update_init: self.zero_update_init
                    && paper.as_ref().is_none_or(|p| p.init.zero_update_init),
                reset_bias_init: self.reset_bias,
                perception_init_scale: self.perception_init,
            },
            perception_lr_scale: self.perception_lr_scale,
            fixed_filters: self.fixed_filters.unwrap_or(match &paper {
                Some(p) => p.fixed_filters,
                None => {
                    self.perception == Perception::Conv3x3 && self.model_kind == ModelKind::Colony
                }
            }),
            ema_decay: match &paper {
                Some(p) => p.ema_decay,
                None => self.ema.0,
            },
            seed: self.seed,
            ..TrainConfig::default()
        };
        schedule
            .validate()
            .map_err(|e| flag_error(e.invalid_field().cloned(), e))?;
        Ok(schedule)
    }

    /// Budgets, cadences and evaluation of the run (smaller defaults on the
    /// bundled fixture), validated, errors naming the flag.
    fn learner_config(
        &self,
        fixture: bool,
        batch: usize,
    ) -> Result<LearnerConfig, Box<dyn std::error::Error>> {
        let learner = LearnerConfig {
            max_steps: self.steps.unwrap_or(if fixture { 200 } else { 3000 }),
            max_minutes: self.minutes,
            max_cpu_minutes: self.cpu_minutes,
            checkpoint_every: self.checkpoint_every,
            eval_every: self.eval_every.unwrap_or(if fixture { 100 } else { 500 }),
            eval_steps: ca_sched::periodic_eval_steps(self.target),
            eval_samples: self.eval_samples,
            // No gradients: larger batches amortize the per-step cost.
            eval_batch: batch.max(32),
            eval_seed: 1,
            gate_every: 25,
            class_names: ca_core::classes::class_names(),
        };
        learner
            .validate()
            .map_err(|e| flag_error(e.invalid_field().cloned(), e))?;
        Ok(learner)
    }
}

impl TrainArgs {
    /// The cascade of `--levels`/`--level-steps` on a state grid of side
    /// `grid`, or `None` without them. Errors name the flag.
    fn cascade(&self, grid: usize) -> Result<Option<Cascade>, Box<dyn std::error::Error>> {
        let (Some(sides), Some(steps)) = (&self.levels, &self.level_steps) else {
            return Ok(None);
        };
        if sides.last() != Some(&grid) {
            return Err(format!(
                "--levels {sides:?}: the last side must be the state grid, {grid}"
            )
            .into());
        }
        let total: usize = steps.iter().sum();
        if total != self.target {
            return Err(format!(
                "--level-steps {steps:?} sum to {total}; they must sum to --target {}",
                self.target
            )
            .into());
        }
        let cascade = Cascade::from_sides(sides, steps)
            .map_err(|e| flag_error(e.invalid_field().cloned(), e))?;
        Ok((!cascade.levels.is_empty()).then_some(cascade))
    }
}

/// The flags (clap ids) that start a new stage of a resumed run with
/// `--restart-schedule` ([`TrainPlan::stage_over`]) instead of conflicting
/// with the checkpoint's settings.
pub const STAGE_FLAGS: [&str; 5] = [
    "mini_unroll",
    "learning_rate",
    "lr_schedule",
    "warmup_steps",
    "lr_floor",
];

impl TrainPlan {
    /// With `--resume`: the settings given on the command line (`given`:
    /// clap ids of the flags the user typed) that differ from the ones
    /// the checkpoint keeps (its model's `stored_cell`, its training
    /// config `stored_train` as stored JSON), each as `--flag VALUE (the
    /// checkpoint has VALUE)`. A resume takes the model and the schedule
    /// from the checkpoint, so these would be ignored; flags repeated with
    /// the checkpoint's values are fine.
    pub fn conflicts_on_resume(
        &self,
        stored_cell: &CellConfig,
        stored_train: &TrainConfig,
        given: &[String],
    ) -> Vec<String> {
        // A flag's clap id is the name of the config field it sets.
        let typed = |id: &str| given.iter().any(|g| g == id);
        let command = <TrainArgs as clap::CommandFactory>::command();
        // The image standardisation's statistics come from the data, not
        // from a flag: compared below, by its gain.
        let without_norm = |cell: &CellConfig| CellConfig {
            image_norm: None,
            ..cell.clone()
        };
        let mut conflicts: Vec<String> = config_conflicts(&self.schedule, stored_train)
            .into_iter()
            .chain(config_conflicts(
                &without_norm(&self.cell),
                &without_norm(stored_cell),
            ))
            .filter(|c| typed(&c.field))
            .filter_map(|c| {
                let flag = flag_in(&command, &c.field)?;
                Some(format!(
                    "{flag} {} (the checkpoint has {})",
                    c.planned, c.stored
                ))
            })
            .collect();
        // The two settings made of two flags each.
        if (typed("levels") || typed("level_steps")) && stored_cell.cascade != self.cell.cascade {
            let show = |c: &Option<Cascade>| c.as_ref().map_or("none".into(), Cascade::describe);
            conflicts.push(format!(
                "--levels/--level-steps: {} (the checkpoint has {})",
                show(&self.cell.cascade),
                show(&stored_cell.cascade)
            ));
        }
        let stored_gain = stored_cell.image_norm.as_ref().map(|n| n.gain);
        if (typed("image_norm") || typed("image_norm.gain")) && stored_gain != self.image_gain {
            let show =
                |g: Option<f32>| g.map_or("the raw image".to_string(), |g| format!("gain {g}"));
            conflicts.push(format!(
                "--image-norm/--image-gain: {} (the checkpoint has {})",
                show(self.image_gain),
                show(stored_gain)
            ));
        }
        conflicts
    }

    /// The next stage of a run whose checkpoint keeps `stored`: its
    /// mini-unroll and learning-rate settings, each taken from this plan
    /// where its flag (clap id) is in `typed` ([`STAGE_FLAGS`]), else kept.
    pub fn stage_over(&self, stored: &TrainConfig, typed: &[String]) -> StageConfig {
        // The planned value where its flag was typed, else the kept one.
        fn pick<T>(typed: &[String], id: &str, planned: T, kept: T) -> T {
            match typed.iter().any(|t| t == id) {
                true => planned,
                false => kept,
            }
        }
        let (p, k) = (self.schedule.stage(), stored.stage());
        let (ps, ks) = (p.lr_schedule, k.lr_schedule);
        StageConfig {
            mini_unroll: pick(typed, "mini_unroll", p.mini_unroll, k.mini_unroll),
            learning_rate: pick(typed, "learning_rate", p.learning_rate, k.learning_rate),
            lr_schedule: LrScheduleConfig {
                shape: pick(typed, "lr_schedule", ps.shape, ks.shape),
                warmup_steps: pick(typed, "warmup_steps", ps.warmup_steps, ks.warmup_steps),
                floor: pick(typed, "lr_floor", ps.floor, ks.floor),
            },
        }
    }

    /// The cell rule of a fresh run on `train`: [`TrainPlan::cell`] with
    /// the image standardisation of `train`'s per-channel statistics when
    /// the plan asks for one.
    pub fn cell_for(&self, train: &PetsDataset) -> Result<CellConfig, ca_core::CoreError> {
        let image_norm = match self.image_gain {
            Some(gain) => {
                let (mean, std) = train.channel_stats();
                Some(ImageNorm::new(mean, std, gain)?)
            }
            None => None,
        };
        Ok(CellConfig {
            image_norm,
            ..self.cell.clone()
        })
    }
}

/// The lines `train_pets` prints before training: the model, its
/// parameters, the grid sizes, the schedule and the recipe.
pub fn describe_run<M: Trainable>(trainer: &Trainer<M>, plan: &TrainPlan) -> Vec<String> {
    let (model, sched) = (trainer.model(), trainer.config());
    let cell = model.rule().config();
    let mut lines = vec![
        format!(
            "model: {} state {} hidden {} norm {} reset_gate {} residual {} ({} trainable parameters)",
            cell.perception.name(),
            cell.state_channels,
            cell.hidden_channels,
            cell.norm.name(),
            cell.reset_gate,
            cell.residual,
            model.trainable_params()
        ),
        format!("parameters: {}", model.describe_params()),
    ];
    if let Some(c) = &cell.cascade {
        lines.push(format!(
            "coarse-to-fine: {} ({} coarse steps), then the full grid",
            c.describe(),
            c.coarse_steps()
        ));
    }
    if plan.levels > 0 {
        let (size, state) = (plan.size, plan.size >> plan.levels);
        lines.push(format!(
            "high resolution: {size}x{size} images and labels, {state}x{state} state"
        ));
    }
    lines.push(format!(
        "schedule: batch {} pool {} K {} T {} full_unroll {} lr {} p_i {} p_s {} seed {} -> {} steps, out {}",
        sched.unroll.batch, sched.unroll.pool_size, sched.unroll.unroll(), sched.unroll.target, sched.unroll.full_unroll,
        sched.optimizer.learning_rate, sched.unroll.p_image, sched.unroll.p_state, sched.seed,
        plan.learner.max_steps, plan.out.display()
    ));
    lines.push(format!(
        "recipe: class_weights {:?} dice {} zero_update_init {} reset_bias {:?} lr_schedule {:?} warmup {} floor {} ema {:?} curriculum {} perception_init {:?} perception_lr_scale {} fixed_filters {} augment {:?}",
        sched.loss.class_weights, sched.loss.dice_weight, sched.init.zero_update_init, sched.init.reset_bias_init,
        sched.lr_schedule.shape, sched.lr_schedule.warmup_steps, sched.lr_schedule.floor, sched.ema_decay,
        sched.curriculum.full_unroll_fraction, sched.init.perception_init_scale, sched.perception_lr_scale,
        sched.fixed_filters, plan.augment
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config as JSON, for comparing field by field.
    fn to_json<T: serde::Serialize>(config: &T) -> serde_json::Value {
        serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
    }

    fn named(e: ca_sched::SchedError) -> String {
        flag_error(e.invalid_field().cloned(), e).to_string()
    }

    #[test]
    fn config_errors_name_the_flag() {
        let bad = TrainConfig {
            unroll: UnrollConfig {
                batch: 4,
                pool_size: 2,
                ..UnrollConfig::default()
            },
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

    /// Every field a user can set has its flag, found by the clap id; the
    /// ones without a flag are the ones meant to have none.
    #[test]
    fn every_flag_set_field_finds_its_flag() {
        let unflagged = |config: serde_json::Value| -> Vec<String> {
            let mut v: Vec<String> = config
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| flag_of_field(k).is_none())
                .cloned()
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            unflagged(to_json(&TrainConfig::default())),
            ["beta1", "beta2", "epsilon", "max_bad_steps"]
        );
        assert_eq!(
            unflagged(to_json(&CellConfig::default())),
            ["env_channels", "num_classes", "update_prob"]
        );
        let learner = [
            "max_steps",
            "max_minutes",
            "max_cpu_minutes",
            "checkpoint_every",
            "eval_every",
            "eval_samples",
        ];
        assert!(learner.iter().all(|f| flag_of_field(f).is_some()));
        assert_eq!(flag_of_field("learning_rate").as_deref(), Some("--lr"));
        assert_eq!(
            flag_of_field("image_norm.gain").as_deref(),
            Some("--image-gain")
        );
        assert_eq!(flag_of_field("levels").as_deref(), Some("--levels"));
    }

    /// The fixed filters pay on the conv3x3 cell (docs/RESULTS.md), so its
    /// recipe has them by default; the depthwise cells cannot take them and
    /// `--paper` is the paper's plain perception.
    /// The flags' defaults are the library's presets: no flags train with
    /// `TrainConfig::recipe()`, `--paper` with `TrainConfig::paper()`.
    #[test]
    fn the_defaults_are_the_presets() {
        let schedule = |args: &[&str]| {
            let args = TrainArgs::try_parse_from(["train_pets"].iter().chain(args)).unwrap();
            args.plan(false).unwrap().schedule
        };
        assert_eq!(schedule(&[]), TrainConfig::recipe());
        assert_eq!(schedule(&["--paper"]), TrainConfig::paper());
        let seeded = schedule(&["--seed", "4", "--lr", "0.01"]);
        assert_eq!((seeded.seed, seeded.optimizer.learning_rate), (4, 0.01));
    }

    #[test]
    fn fixed_filters_default_to_the_conv3x3_recipe() {
        let filters = |args: &[&str]| {
            let args = TrainArgs::try_parse_from(["train_pets"].iter().chain(args)).unwrap();
            args.plan(true).unwrap().schedule.fixed_filters
        };
        assert!(filters(&[]));
        assert!(!filters(&["--perception", "depthwise"]));
        assert!(!filters(&["--paper"]));
        assert!(!filters(&["--fixed-filters", "false"]));
        assert!(filters(&["--paper", "--fixed-filters", "true"]));
    }
}
