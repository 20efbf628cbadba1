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

/// Writes `frames` (all of one size) as an H.264 MP4 at one frame every
/// `delay_ms` milliseconds, through Debian's `ffmpeg` (raw RGB frames over
/// a pipe; odd sizes padded by a pixel to the even size H.264 needs). The
/// video is written beside `path` and renamed over it when `ffmpeg` has
/// finished, so an interrupted run leaves no half-written file at `path`.
///
/// # Errors
///
/// [`VizError`] naming `path`: no frames, frames of different sizes,
/// `ffmpeg` missing (named, with its Debian package) or failing (its
/// message).
pub fn write_mp4(frames: &[RgbImage], delay_ms: u32, path: &std::path::Path) -> Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let invalid = |reason: String| VizError::invalid("MP4", path.display(), reason);
    let Some(first) = frames.first() else {
        return Err(invalid("needs at least one frame".into()));
    };
    let (w, h) = first.dimensions();
    if let Some(k) = frames.iter().position(|f| f.dimensions() != (w, h)) {
        return Err(invalid(format!(
            "frame {k} is {:?}, the first ({w}, {h}): every frame must have one size",
            frames[k].dimensions()
        )));
    }
    let partial = path.with_extension("part.mp4");
    let rate = format!("{}/{}", 1000, delay_ms.max(1));
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"])
        .args(["-s", &format!("{w}x{h}"), "-framerate", &rate, "-i", "-"])
        .args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&partial)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => invalid(
                "writing an MP4 needs 'ffmpeg' (Debian: apt-get install ffmpeg), which is not on the PATH; write a GIF instead".into(),
            ),
            _ => invalid(format!("cannot start ffmpeg: {e}")),
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A write error means ffmpeg stopped early; its message says why.
    let written = frames.iter().try_for_each(|f| stdin.write_all(f.as_raw()));
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| invalid(format!("ffmpeg: {e}")))?;
    if !out.status.success() || written.is_err() {
        let _ = std::fs::remove_file(&partial);
        return Err(invalid(format!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::rename(&partial, path).map_err(|e| VizError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mp4_needs_frames_of_one_size() {
        let dir = std::env::temp_dir().join(format!("ca-viz-mp4-{}", std::process::id()));
        let path = dir.join("clip.mp4");
        let e = write_mp4(&[], 100, &path).unwrap_err().to_string();
        assert!(
            e.contains("clip.mp4") && e.contains("at least one frame"),
            "{e}"
        );
        let frames = [RgbImage::new(4, 4), RgbImage::new(4, 6)];
        let e = write_mp4(&frames, 100, &path).unwrap_err().to_string();
        assert!(e.contains("frame 1 is (4, 6)"), "{e}");
        assert!(!path.exists());
    }
}
