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
//!
//! A video (an animated GIF, a folder of JPEG/PNG frames, or a video file
//! through `ffmpeg`: `ca_data::video`) is segmented frame by frame with the
//! colony carried over (`--steps` on the first frame, then
//! `--steps-per-frame`; `--cold` for a fresh colony on every frame): it
//! writes the overlay video `OUT/STEM_overlay.mp4` (a video file's input,
//! through `ffmpeg`) or `OUT/STEM_overlay.gif` (a GIF or a folder; either
//! by `--overlay`) and the class map of every frame as
//! `OUT/STEM_classes/NNNNN.png`.

use std::path::PathBuf;

use crate::ca_viz::render;
use crate::ca_viz::segment::{segment, write_outputs, OutputPaths, SegmentOptions};
use crate::ca_viz::video::{segment_video, VideoOptions};
use crate::device::parse_device;
use ca_core::Settling;
use ca_data::video::{read_frames, VideoSource};
use ca_data::CLASS_NAMES;
use clap::Parser;

/// The flags (`--help` lists them).
#[derive(Parser, Debug)]
#[command(about = "Segment a photo with a trained cellular automaton")]
pub struct Args {
    /// The photo: JPEG or PNG (other formats are refused, naming theirs),
    /// at most 4096x4096 pixels, turned by its EXIF orientation; or a video:
    /// a `.gif`, a folder of frames, or a video file (.mp4, .webm, .mov,
    /// .mkv, .avi, ...; needs `ffmpeg`).
    image: PathBuf,
    /// The trained model (`model.safetensors` written by train_pets).
    #[arg(long, default_value = "models/pets48.safetensors")]
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
    /// Milliseconds per GIF frame (and per frame of a video's overlay
    /// where the source gives no rate: a folder of frames).
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
    /// Run until the class map settles (on the probabilities averaged with
    /// smoothing 0.8, at most 1.5% of the cells changing class in each of
    /// 4 steps in a row, 8 to 80 steps: `Settling::default`) instead of
    /// --steps; says how many it took.
    #[arg(long, conflicts_with = "gif")]
    until_stable: bool,
    /// Video: CA steps on each frame after the first, the colony carried.
    #[arg(long, default_value_t = crate::ca_viz::video::DEFAULT_STEPS_PER_FRAME)]
    steps_per_frame: usize,
    /// Video: a fresh colony of --steps steps on every frame instead.
    #[arg(long)]
    cold: bool,
    /// Video: the overlay video's format [default: mp4 for a video file,
    /// gif for a GIF or a folder of frames]; mp4 needs `ffmpeg`.
    #[arg(long, value_enum)]
    overlay: Option<OverlayFormat>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: candle_core::Device,
}

/// The format of a video's overlay.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayFormat {
    /// An animated GIF (no program needed).
    Gif,
    /// An H.264 MP4 through `ffmpeg`.
    Mp4,
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
    if let Some(source) = VideoSource::detect(&args.image) {
        return run_video(&args, &model, trained_size, &source);
    }
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

/// `segment` on a video: the frames read, the colony carried (or cold),
/// an overlay GIF and every frame's class map written.
fn run_video(
    args: &Args,
    model: &ca_model::AnyModel,
    trained_size: usize,
    source: &VideoSource,
) -> Result<(), Box<dyn std::error::Error>> {
    if args.native || args.gif.is_some() || args.until_stable || args.ensemble != 1 {
        return Err(format!(
            "{}: a video takes --steps, --steps-per-frame, --cold, --overlay, --size, --seed and --gif-delay; \
             --native, --gif, --until-stable and --ensemble are for photos",
            args.image.display()
        )
        .into());
    }
    let (frames, delay) = read_frames(source, &ca_data::ImageLimits::default())?;
    let options = VideoOptions {
        size: args.size.unwrap_or(trained_size),
        steps: args.steps,
        steps_per_frame: args.steps_per_frame,
        cold: args.cold,
        seed: args.seed,
    };
    let bar = indicatif::ProgressBar::new(frames.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} frames {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    let maps = segment_video(model, &frames, &options, |k| bar.set_position(k as u64 + 1))?;
    bar.finish_and_clear();
    let stem = args
        .image
        .file_stem()
        .map_or_else(|| "video".into(), |s| s.to_string_lossy().into_owned());
    let map_dir = args.out.join(format!("{stem}_classes"));
    std::fs::create_dir_all(&map_dir)
        .map_err(|e| format!("cannot create {}: {e}", map_dir.display()))?;
    let (w, h) = frames[0].dimensions();
    let grid = (options.size, options.size);
    let mut overlays = Vec::with_capacity(frames.len());
    for (k, (frame, map)) in frames.iter().zip(&maps).enumerate() {
        let up = render::resample_nearest(map, grid, (w as usize, h as usize));
        render::save_png(
            &render::class_image(&up, w as usize, h as usize),
            &map_dir.join(format!("{k:05}.png")),
        )?;
        overlays.push(render::overlay(frame, map, grid, 0.5));
    }
    let format = args.overlay.unwrap_or(match source {
        VideoSource::File(_) => OverlayFormat::Mp4,
        VideoSource::Gif(_) | VideoSource::Folder(_) => OverlayFormat::Gif,
    });
    let delay = delay.unwrap_or(args.gif_delay);
    let overlay = match format {
        OverlayFormat::Gif => {
            let path = args.out.join(format!("{stem}_overlay.gif"));
            render::write_gif(&overlays, delay, &path)?;
            path
        }
        OverlayFormat::Mp4 => {
            let path = args.out.join(format!("{stem}_overlay.mp4"));
            crate::ca_viz::video::write_mp4(&overlays, delay, &path)?;
            path
        }
    };
    println!(
        "{} ({} frames of {w}x{h}) at {}x{} pixels: {}",
        args.image.display(),
        frames.len(),
        options.size,
        options.size,
        match options.cold {
            true => format!("a fresh colony of {} steps on every frame", options.steps),
            false => format!(
                "{} steps on the first frame, then {} on each, the colony carried",
                options.steps, options.steps_per_frame
            ),
        }
    );
    println!(
        "wrote {} and {} class maps in {}",
        overlay.display(),
        maps.len(),
        map_dir.display()
    );
    Ok(())
}
