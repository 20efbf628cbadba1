//! An adversarial image (paper Appendix A.2): the object region of a test
//! image is filled with flat gray, then a perturbation inside that region is
//! optimised (Adam, gradients through the unrolled CA steps) until the
//! automaton labels the region "object" again.
//!
//! `cargo run --release --example adversarial -- --data DIR --index 0`
//! writes into `OUT/`: `original.png`, `grayed.png`, `adversarial.png`
//! (each the image and the automaton's prediction side by side) and
//! `perturbation.png` (the perturbation amplified: gray 0, scaled by
//! `--amplify`).

use std::path::PathBuf;

use crate::ca_eval::adversarial::{attack, classes_after, region_fraction, AttackOptions};
use crate::ca_eval::pets::resolve_data_dir;
use crate::ca_eval::protocols::EvalSet;
use crate::ca_viz::render;
use crate::device::parse_device;
use ca_data::{Split, OBJECT};
use clap::Parser;

/// The flags (`--help` lists them).
#[derive(Parser, Debug)]
#[command(about = "Optimise an adversarial perturbation inside a gray-filled object region")]
pub struct Args {
    /// The trained rule.
    #[arg(long, default_value = "models/pets48.safetensors")]
    model: PathBuf,
    /// Dataset root in the official layout (else $CA_PETS_DIR, else
    /// data/oxford-iiit-pet, else the bundled synthetic fixture).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Index of the image in the test split.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Square size in pixels of the image [default: the training size
    /// recorded in the model file, else 48].
    #[arg(long)]
    size: Option<usize>,
    /// CA steps unrolled per optimisation step (and for the predictions).
    #[arg(long, default_value_t = crate::ca_core::DEFAULT_STEPS)]
    steps: usize,
    /// Adam steps.
    #[arg(long, default_value_t = 40)]
    iterations: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.02)]
    lr: f64,
    /// Largest absolute perturbation per pixel and channel (images in [0, 1]).
    #[arg(long, default_value_t = 0.5)]
    max_perturbation: f32,
    /// Amplification of the perturbation picture.
    #[arg(long, default_value_t = 4.0)]
    amplify: f32,
    /// Attack one trajectory (the same initial state and random updates in
    /// every iteration) instead of fresh ones per iteration.
    #[arg(long)]
    fixed_draws: bool,
    /// Seed of the states and random updates.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory.
    #[arg(long, default_value = "out/adversarial")]
    out: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: candle_core::Device,
}

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_args(args: Args) {
    // Reuse the freed step buffers instead of faulting them in every step.
    crate::ca_core::alloc::retain_freed_memory();
    crate::error::exit_on_error(run(args));
}

crate::cli::tool!(Args);

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (model, trained_size) = ca_model::load_model(&args.model, &args.device)?;
    let s = args.size.unwrap_or(trained_size);
    if model.levels() > 0 {
        return Err(format!(
            "{}: a high-resolution model ({} stride-2 levels); the attack runs plain models (one cell per pixel) only",
            args.model.display(),
            model.levels()
        )
        .into());
    }
    // A plain model is its rule.
    let rule = model.rule().clone();
    let source = resolve_data_dir(args.data.as_deref());
    let set = EvalSet::open(&source.root, Split::Test, s, None)?;
    let i = args.index;
    if i >= set.len() {
        return Err(format!("--index {i}: the test split has {} images", set.len()).into());
    }
    let image = &set.images[i];
    let region: Vec<bool> = set.labels[i].iter().map(|&c| c == OBJECT).collect();
    let options = AttackOptions {
        steps: args.steps,
        iterations: args.iterations,
        learning_rate: args.lr,
        max_perturbation: args.max_perturbation,
        target_class: u32::from(OBJECT),
        seed: args.seed,
        fixed_draws: args.fixed_draws,
    };
    println!(
        "{} ({}x{s}): object region {} cells; {} Adam steps through {} CA steps",
        set.names[i],
        s,
        region.iter().filter(|&&r| r).count(),
        args.iterations,
        args.steps
    );
    let result = attack(&rule, image, &region, s, &options)?;
    for (k, l) in result.losses.iter().enumerate() {
        if k % 10 == 0 || k + 1 == result.losses.len() {
            println!("  iteration {k:>3}: loss {l:.4}");
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let object = u32::from(OBJECT);
    let eval_seed = args.seed ^ 0xADE5;
    let pictures = [
        ("original", image.clone()),
        ("grayed", result.grayed.clone()),
        ("adversarial", result.adversarial.clone()),
    ];
    for (name, img) in pictures {
        let classes = classes_after(&rule, &img, s, args.steps, eval_seed)?;
        println!(
            "{name:<12} {:5.1}% of the region labelled object",
            100.0 * region_fraction(&classes, &region, object)
        );
        let panel = render::hstack(&[
            render::upscale(&render::chw_to_rgb(&img, s, s), 4),
            render::upscale(&render::class_image(&classes, s, s), 4),
        ]);
        let path = args.out.join(format!("{name}.png"));
        render::save_png(&panel, &path)?;
        println!("wrote {}", path.display());
    }
    let amplified: Vec<f32> = result
        .perturbation
        .iter()
        .map(|p| 0.5 + args.amplify * p)
        .collect();
    let path = args.out.join("perturbation.png");
    render::save_png(
        &render::upscale(&render::chw_to_rgb(&amplified, s, s), 4),
        &path,
    )?;
    println!("wrote {}", path.display());
    Ok(())
}
