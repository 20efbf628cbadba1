//! Segments one photo (JPEG or PNG, within `ca_data::ImageLimits`, turned
//! by its EXIF orientation) with a trained model, plain
//! or high resolution (the model file says which, and its training size).
//!
//! `cargo run --release --example segment -- PHOTO [--gif evolution.gif]`
//! writes `OUT/STEM_classes.png` (the class map in the palette: background
//! dark blue, object orange, boundary light yellow) and
//! `OUT/STEM_overlay.png` (the map blended on the photo), both at the
//! photo's resolution, and with `--gif` an animated GIF of the evolution:
//! the prediction above, the hidden state projected to RGB below (see
//! `crate::ca_viz::render::StateProjection`).

use std::path::PathBuf;

use crate::ca_viz::segment::{segment, write_outputs, OutputPaths, SegmentOptions};
use crate::device::parse_device;
use ca_core::Settling;
use ca_data::CLASS_NAMES;
use clap::Parser;

/// The flags (`--help` lists them).
#[derive(Parser, Debug)]
#[command(about = "Segment a photo with a trained cellular automaton")]
pub struct Args {
    /// The photo: JPEG or PNG (other formats are refused, naming theirs),
    /// at most 4096x4096 pixels, turned by its EXIF orientation.
    image: PathBuf,
    /// The trained model (`model.safetensors` written by train_pets).
    #[arg(long, default_value = "models/pets48-cascade.safetensors")]
    model: PathBuf,
    /// Square size in pixels the photo is resized to [default: the training
    /// size recorded in the model file, else 48 cells times its stride].
    #[arg(long)]
    size: Option<usize>,
    /// Run on the photo's own pixel grid instead of resizing it (the rule
    /// is local, but it learned the scale of pets at the training size).
    #[arg(long)]
    native: bool,
    /// CA steps.
    #[arg(long, default_value_t = crate::ca_core::DEFAULT_STEPS)]
    steps: usize,
    /// Output directory of the class map and the overlay.
    #[arg(long, default_value = "out/segment")]
    out: PathBuf,
    /// Also write an animated GIF of the evolution to this file.
    #[arg(long)]
    gif: Option<PathBuf>,
    /// A GIF frame every this many steps.
    #[arg(long, default_value_t = 1)]
    gif_every: usize,
    /// Enlargement of the GIF frames [default: 4, or 1 with --native].
    #[arg(long)]
    gif_scale: Option<u32>,
    /// Milliseconds per GIF frame.
    #[arg(long, default_value_t = 100)]
    gif_delay: u32,
    /// Seed of the initial state and the random updates.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Colonies per photo, their class probabilities averaged (a
    /// pseudo-ensemble); above 1 it also writes `STEM_uncertainty.png`,
    /// their spread (no --gif).
    #[arg(long, default_value_t = 1)]
    ensemble: usize,
    /// Run until the class map settles (at most 3% of the cells changing
    /// class in each of 4 steps in a row, 8 to 80 steps:
    /// `Settling::default`) instead of --steps; says how many it took.
    #[arg(long, conflicts_with = "gif")]
    until_stable: bool,
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
    let photo = ca_data::load_photo(&args.image, &ca_data::ImageLimits::default())?;
    let options = SegmentOptions {
        size: args.size.unwrap_or(trained_size),
        native: args.native,
        steps: args.steps,
        seed: args.seed,
        frame_every: args.gif.as_ref().map(|_| args.gif_every),
        frame_scale: args.gif_scale.unwrap_or(if args.native { 1 } else { 4 }),
        ensemble: args.ensemble,
        until_stable: args.until_stable.then(Settling::default),
    };
    let seg = segment(&model, &photo, &options)?;
    let paths = OutputPaths::in_dir(&args.out, &args.image, args.gif.clone());
    write_outputs(&seg, &photo, &paths, args.gif_delay)?;
    let (w, h) = photo.dimensions();
    let (steps, settled) = seg.steps;
    println!(
        "{} ({w}x{h}) at {}x{} pixels, state {}x{} cells, {}:",
        args.image.display(),
        seg.grid.0,
        seg.grid.1,
        seg.state_grid.0,
        seg.state_grid.1,
        match (args.until_stable, settled) {
            (false, _) => format!("{steps} steps"),
            (true, true) => format!("settled after {steps} steps"),
            (true, false) => format!("not settled within {steps} steps"),
        }
    );
    for (name, f) in CLASS_NAMES
        .iter()
        .zip(seg.class_fractions(CLASS_NAMES.len()))
    {
        println!("  {name:<10} {:5.1}% of pixels", 100.0 * f);
    }
    println!("wrote {}", paths.classes.display());
    println!("wrote {}", paths.overlay.display());
    if let Some(g) = &paths.gif {
        println!("wrote {} ({} frames)", g.display(), seg.frames.len());
    }
    Ok(())
}
