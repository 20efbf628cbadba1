//! Segmenting one photo of any size with a trained model (plain or high
//! resolution): the class map, an overlay on the photo, and the frames of an
//! evolution GIF.

use ca_core::ErrorShapes;
use std::path::{Path, PathBuf};

use ca_core::{CellModel, Colony, Segmenter, Settling};
use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::error::{Result, VizError};
use crate::render::{self, StateProjection};

/// Largest side `--native` accepts: the colony holds `S` floats per pixel
/// and a step costs tens of thousands of operations per pixel.
pub const MAX_NATIVE_SIDE: u32 = 2048;

/// How to segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentOptions {
    /// The square size in pixels the image is resized to (the training
    /// image size); ignored when `native` is set.
    pub size: usize,
    /// Run on the photo's own pixel grid instead (a high-resolution model
    /// then runs its state on that grid divided by its stride).
    pub native: bool,
    /// CA steps.
    pub steps: usize,
    /// Seed of the initial state and the step draws.
    pub seed: u64,
    /// Keep an evolution frame every this many steps (and the first and
    /// last); `None`: no frames.
    pub frame_every: Option<usize>,
    /// Enlargement of the frames.
    pub frame_scale: u32,
    /// Colonies per image, their class probabilities averaged
    /// ([`ca_core::Segmenter::with_ensemble`]; 1: one colony). With more
    /// than one, [`Segmentation::variance`] holds their spread; evolution
    /// frames show one colony and need 1.
    pub ensemble: usize,
    /// Run until the class map settles instead of `steps` steps
    /// ([`ca_core::Segmenter::segment_until_stable`]; no frames).
    pub until_stable: Option<Settling>,
}

impl SegmentOptions {
    /// Options for the square `size` the model was trained at (the second
    /// value of `ca_model::load_model`): [`ca_core::DEFAULT_STEPS`] steps
    /// from seed 0, no frames, as `cellseg segment` runs.
    pub fn new(size: usize) -> Self {
        SegmentOptions {
            size,
            native: false,
            steps: ca_core::DEFAULT_STEPS,
            seed: 0,
            frame_every: None,
            frame_scale: 1,
            ensemble: 1,
            until_stable: None,
        }
    }
}

/// The result of a segmentation.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// The pixel grid of the prediction, `(width, height)`: the photo's
    /// with `native`, else `size x size`.
    pub grid: (usize, usize),
    /// The state grid the colony ran on, `(width, height)` (the pixel grid
    /// for a plain model, smaller for a high-resolution one).
    pub state_grid: (usize, usize),
    /// The class of every pixel of `grid`, row-major.
    pub classes: Vec<u32>,
    /// Evolution frames (prediction above, projected state below, the state
    /// enlarged to the pixel grid by nearest neighbour), with the step each
    /// shows.
    pub frames: Vec<(usize, RgbImage)>,
    /// With an ensemble, the variance over its colonies of each class's
    /// probability, averaged over the classes, per pixel of `grid`
    /// (row-major, in `[0, 0.25]`); `None` for one colony (and with
    /// `until_stable`).
    pub variance: Option<Vec<f32>>,
    /// The CA steps run, and whether the map settled before the limit
    /// (always true without `until_stable`).
    pub steps: (usize, bool),
}

/// Runs `model` on `photo` as `options` say.
pub fn segment<M: CellModel>(
    model: &M,
    photo: &RgbImage,
    options: &SegmentOptions,
) -> Result<Segmentation> {
    if options.steps == 0 {
        return Err(VizError::invalid("steps", 0, "must be at least 1"));
    }
    if options.frame_every == Some(0) {
        return Err(VizError::invalid("frame interval", 0, "must be at least 1"));
    }
    let (pw, ph) = photo.dimensions();
    let (grid, chw) = if options.native {
        if pw.max(ph) > MAX_NATIVE_SIDE {
            return Err(VizError::invalid(
                "image size",
                format!("{pw}x{ph}"),
                format!("--native runs at most {MAX_NATIVE_SIDE} pixels a side; resize the image"),
            ));
        }
        ((pw as usize, ph as usize), render::rgb_to_chw(photo))
    } else {
        if options.size == 0 || options.size > 4096 {
            return Err(VizError::invalid(
                "size",
                options.size,
                "must be 1 to 4096 pixels",
            ));
        }
        let s = options.size;
        ((s, s), ca_data::resize::image_to_chw(photo, s))
    };
    let (w, h) = grid;
    let image = Tensor::from_vec(chw, (1, 3, h, w), model.rule().device())?;
    let segmenter = Segmenter::new(model)
        .with_seed(options.seed)
        .with_steps(options.steps)
        .with_ensemble(options.ensemble);
    if let Some(settling) = &options.until_stable {
        if options.frame_every.is_some() {
            return Err(VizError::invalid(
                "until_stable",
                "set",
                "evolution frames need a fixed step count",
            ));
        }
        let out = segmenter.segment_until_stable(&image, settling)?;
        let (sh, sw) = model.state_size((h, w));
        return Ok(Segmentation {
            grid,
            state_grid: (sw, sh),
            classes: out.classes.flatten_all()?.to_vec1::<u32>()?,
            frames: Vec::new(),
            variance: None,
            steps: (out.steps[0], out.settled[0]),
        });
    }
    if options.ensemble != 1 {
        if options.frame_every.is_some() {
            return Err(VizError::invalid(
                "ensemble",
                options.ensemble,
                "evolution frames show one colony: use an ensemble of 1 for a GIF",
            ));
        }
        let out = segmenter.probabilities_batch(&image)?;
        let (sh, sw) = model.state_size((h, w));
        return Ok(Segmentation {
            grid,
            state_grid: (sw, sh),
            classes: out.classes()?.flatten_all()?.to_vec1::<u32>()?,
            frames: Vec::new(),
            variance: Some(out.variance.flatten_all()?.to_vec1::<f32>()?),
            steps: (options.steps, true),
        });
    }
    let (mut colony, env) = segmenter.start(&image)?;
    let (sh, sw) = colony.state_size();
    let channels = model.rule().config().state_channels;
    let projection = StateProjection::new(channels);
    let mut frames = Vec::new();
    colony.evolve_with(&env, options.steps, |t, colony| {
        let keep = options
            .frame_every
            .is_some_and(|e| t == 1 || t.is_multiple_of(e) || t == options.steps);
        if keep {
            let classes = classes_of(colony)?;
            let state = colony.state().flatten_all()?.to_vec1::<f32>()?;
            let state = if (sw, sh) == grid {
                state
            } else {
                state
                    .chunks(sh * sw)
                    .flat_map(|plane| render::resample_nearest(plane, (sw, sh), grid))
                    .collect()
            };
            let frame =
                render::evolution_frame(&classes, &state, grid, &projection, options.frame_scale);
            frames.push((t, frame));
        }
        Ok::<_, VizError>(None)
    })?;
    Ok(Segmentation {
        grid,
        state_grid: (sw, sh),
        classes: classes_of(&colony)?,
        frames,
        variance: None,
        steps: (options.steps, true),
    })
}

fn classes_of<M: CellModel>(colony: &Colony<M>) -> Result<Vec<u32>> {
    Ok(colony
        .predict()?
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?)
}

impl Segmentation {
    /// The class map in the palette, upsampled by nearest neighbour to
    /// `width x height`.
    pub fn class_image(&self, width: u32, height: u32) -> RgbImage {
        let up = self.classes_at(width, height);
        render::class_image(&up, width as usize, height as usize)
    }

    /// The class of every pixel of a `width x height` picture (the photo's
    /// own size), row-major: the map upsampled by nearest neighbour.
    pub fn classes_at(&self, width: u32, height: u32) -> Vec<u32> {
        render::resample_nearest(&self.classes, self.grid, (width as usize, height as usize))
    }

    /// The fraction of cells of each class id `0..classes`.
    pub fn class_fractions(&self, classes: usize) -> Vec<f64> {
        let mut counts = vec![0usize; classes];
        for &c in &self.classes {
            if let Some(n) = counts.get_mut(c as usize) {
                *n += 1;
            }
        }
        let total = self.classes.len().max(1) as f64;
        counts.into_iter().map(|n| n as f64 / total).collect()
    }
}

/// Where [`write_outputs`] puts its files.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputPaths {
    /// The class map at the photo's resolution (palette PNG).
    pub classes: PathBuf,
    /// The overlay on the photo.
    pub overlay: PathBuf,
    /// The evolution GIF, if wanted.
    pub gif: Option<PathBuf>,
    /// The ensemble's spread (grey, white at a variance of 0.25), written
    /// when the segmentation has one.
    pub uncertainty: PathBuf,
}

impl OutputPaths {
    /// `DIR/STEM_classes.png` and `DIR/STEM_overlay.png` for input `input`,
    /// and `gif` as given.
    pub fn in_dir(dir: &Path, input: &Path, gif: Option<PathBuf>) -> Self {
        let stem = input
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        OutputPaths {
            classes: dir.join(format!("{stem}_classes.png")),
            overlay: dir.join(format!("{stem}_overlay.png")),
            uncertainty: dir.join(format!("{stem}_uncertainty.png")),
            gif,
        }
    }
}

/// Writes the class map and the overlay (both at the photo's resolution)
/// and, when asked, the GIF of the frames (`delay_ms` per frame). Creates
/// the parent directories.
pub fn write_outputs(
    seg: &Segmentation,
    photo: &RgbImage,
    paths: &OutputPaths,
    delay_ms: u32,
) -> Result<()> {
    for p in std::iter::once(&paths.classes)
        .chain(std::iter::once(&paths.overlay))
        .chain(paths.gif.iter())
    {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| VizError::io(dir, e))?;
        }
    }
    let (w, h) = photo.dimensions();
    render::save_png(&seg.class_image(w, h), &paths.classes)?;
    render::save_png(
        &render::overlay(photo, &seg.classes, seg.grid, 0.5),
        &paths.overlay,
    )?;
    if let Some(gif) = &paths.gif {
        let frames: Vec<RgbImage> = seg.frames.iter().map(|f| f.1.clone()).collect();
        render::write_gif(&frames, delay_ms, gif)?;
    }
    if let Some(variance) = &seg.variance {
        let (gw, gh) = seg.grid;
        let grey = RgbImage::from_fn(gw as u32, gh as u32, |x, y| {
            let v = variance[y as usize * gw + x as usize];
            let level = (v * 4.0 * 255.0).round().clamp(0.0, 255.0) as u8;
            image::Rgb([level; 3])
        });
        let up = image::imageops::resize(&grey, w, h, image::imageops::FilterType::Nearest);
        if let Some(dir) = paths
            .uncertainty
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| VizError::io(dir, e))?;
        }
        render::save_png(&up, &paths.uncertainty)?;
    }
    Ok(())
}
