//! A colony carried through the frames of a video: the first frame gets a
//! full start, every later frame `steps_per_frame` more steps from the
//! state the colony has reached (the paper's incremental segmentation,
//! sections 1 and 6); or, `cold`, every frame a fresh colony.

use ca_core::{CellModel, ErrorShapes, Segmenter};
use candle_core::{DType, Tensor};
use image::RgbImage;

use crate::error::{Result, VizError};

/// How [`segment_video`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoOptions {
    /// The square size in pixels every frame is resized to (the model's
    /// training size).
    pub size: usize,
    /// CA steps on the first frame (and on every frame with `cold`).
    pub steps: usize,
    /// CA steps on each later frame of a carried colony.
    pub steps_per_frame: usize,
    /// A fresh colony for every frame instead of the carried one.
    pub cold: bool,
    /// Seed of the initial state and the step draws.
    pub seed: u64,
}

impl VideoOptions {
    /// For frames resized to `size`: [`ca_core::DEFAULT_STEPS`] on the
    /// first frame, then [`DEFAULT_STEPS_PER_FRAME`], carried, seed 0.
    pub fn new(size: usize) -> Self {
        VideoOptions {
            size,
            steps: ca_core::DEFAULT_STEPS,
            steps_per_frame: DEFAULT_STEPS_PER_FRAME,
            cold: false,
            seed: 0,
        }
    }

    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("steps", self.steps),
            ("steps_per_frame", self.steps_per_frame),
        ] {
            if v == 0 {
                return Err(VizError::invalid(name, 0, "must be at least 1"));
            }
        }
        if self.size == 0 || self.size > 4096 {
            return Err(VizError::invalid(
                "size",
                self.size,
                "must be 1 to 4096 pixels",
            ));
        }
        Ok(())
    }
}

/// The CA steps a carried colony takes on each frame after the first
/// unless told otherwise (chosen by `evaluate video`, `docs/RESULTS.md`).
pub const DEFAULT_STEPS_PER_FRAME: usize = 5;

/// The class map of every frame, each `size x size` row-major, with
/// `progress(k)` called after frame `k` (0-based).
///
/// # Errors
///
/// [`VizError`] naming the field of options that do not validate, or for
/// no frames.
pub fn segment_video<M: CellModel>(
    model: &M,
    frames: &[RgbImage],
    options: &VideoOptions,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<u32>>> {
    options.validate()?;
    if frames.is_empty() {
        return Err(VizError::invalid(
            "frames",
            0,
            "a video needs at least one frame",
        ));
    }
    let s = options.size;
    let device = model.rule().device();
    let tensor = |f: &RgbImage| -> Result<Tensor> {
        Ok(Tensor::from_vec(
            ca_data::resize::image_to_chw(f, s),
            (1, 3, s, s),
            device,
        )?)
    };
    let flat = |t: Tensor| -> Result<Vec<u32>> {
        Ok(t.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?)
    };
    let segmenter = Segmenter::new(model)
        .with_seed(options.seed)
        .with_steps(options.steps);
    let mut maps = Vec::with_capacity(frames.len());
    if options.cold {
        for (k, frame) in frames.iter().enumerate() {
            maps.push(flat(segmenter.segment_batch(&tensor(frame)?)?)?);
            progress(k);
        }
        return Ok(maps);
    }
    let (mut colony, env) = segmenter.start(&tensor(&frames[0])?)?;
    colony.evolve(&env, options.steps)?;
    maps.push(flat(colony.predict()?)?);
    progress(0);
    for (k, frame) in frames.iter().enumerate().skip(1) {
        let env = colony.environment(&tensor(frame)?)?;
        colony.evolve(&env, options.steps_per_frame)?;
        maps.push(flat(colony.predict()?)?);
        progress(k);
    }
    Ok(maps)
}
