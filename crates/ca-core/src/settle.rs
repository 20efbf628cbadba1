//! Anytime stopping: a colony runs until its class map has settled
//! instead of a fixed number of steps ([`Settling`],
//! [`crate::Segmenter::segment_until_stable`]).

use candle_core::{DType, Tensor};

use crate::error::{CoreError, InvalidValue, Result};

/// When a colony's class map counts as settled: at a step `t >=
/// min_steps` where, in each of the last `window` steps, the map changed
/// at no more than `max_change` of the cells (a fraction); else at
/// `max_steps`, unsettled. Each image of a batch settles on its own: its
/// map is the one of the step it settled at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settling {
    /// The largest fraction of cells whose class may change in one step
    /// of a settled colony, in `[0, 1)`.
    pub max_change: f64,
    /// Consecutive quiet steps needed (at least 1).
    pub window: usize,
    /// Steps always taken (at least `window`).
    pub min_steps: usize,
    /// Steps never exceeded (at least `min_steps`).
    pub max_steps: usize,
    /// Weight of the past in a running average of the class
    /// probabilities, in `[0, 1)`: the map (the one returned and the one
    /// watched) is the most likely class of `p_t = s p_(t-1) + (1 - s)
    /// softmax_t`, which quiets cells that flicker between two classes.
    /// 0: the plain map of each step.
    pub smoothing: f64,
}

impl Default for Settling {
    /// At most 1.5% of the cells changing class in each of 4 steps in a
    /// row, on the map of the probabilities averaged with smoothing 0.8,
    /// between 8 and 80 steps: chosen on the validation split (168 photos,
    /// `pets48`, 40 rules, `docs/RESULTS.md`) as the rule that saves 30%
    /// of the steps with the least object IoU lost (27.5 steps instead of
    /// 40, object IoU unchanged, boundary 0.010 lower). The colony's
    /// boundary cells flicker with the random updates: without the average
    /// a rule this strict rarely settles (1.5%: 42 steps on average).
    fn default() -> Self {
        Settling {
            max_change: 0.015,
            window: 4,
            min_steps: 8,
            max_steps: 80,
            smoothing: 0.8,
        }
    }
}

impl Settling {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: String, reason: &str| {
            Err(CoreError::InvalidConfig(InvalidValue::new(
                name, value, reason,
            )))
        };
        if !(0.0..1.0).contains(&self.max_change) {
            return bad(
                "max_change",
                self.max_change.to_string(),
                "must lie in [0, 1)",
            );
        }
        if !(0.0..1.0).contains(&self.smoothing) {
            return bad(
                "smoothing",
                self.smoothing.to_string(),
                "must lie in [0, 1)",
            );
        }
        if self.window == 0 {
            return bad("window", "0".into(), "must be at least 1");
        }
        if self.min_steps < self.window {
            return bad(
                "min_steps",
                self.min_steps.to_string(),
                &format!("must be at least the window ({})", self.window),
            );
        }
        if self.max_steps < self.min_steps {
            return bad(
                "max_steps",
                self.max_steps.to_string(),
                &format!("must be at least min_steps ({})", self.min_steps),
            );
        }
        Ok(())
    }
}

/// What [`crate::Segmenter::segment_until_stable`] gives.
///
/// # Shapes
///
/// `classes` `[B, H, W]` u32; `steps` and `settled` one entry per image.
#[derive(Debug, Clone)]
pub struct Settled {
    /// Each image's class map at the step it settled at (or at
    /// `max_steps`).
    pub classes: Tensor,
    /// The steps each image took.
    pub steps: Vec<usize>,
    /// Whether each image settled before `max_steps`.
    pub settled: Vec<bool>,
}

/// Follows the class probabilities of a batch step by step and says when
/// each image has settled under a [`Settling`] rule (what
/// [`crate::Segmenter::segment_until_stable`] and a live page use): the
/// map it watches is the most likely class of the running average the
/// rule's `smoothing` asks for.
#[derive(Debug, Clone)]
pub struct SettleTracker {
    rule: Settling,
    pixels: usize,
    /// The running average of the probabilities (kept only with smoothing).
    average: Option<Tensor>,
    previous: Option<Vec<u32>>,
    quiet: Vec<usize>,
    /// Per image: the step it finished at, its map then, and whether it
    /// settled (rather than reaching `max_steps`).
    done: Vec<Option<(usize, Vec<u32>, bool)>>,
}

impl SettleTracker {
    /// A tracker of `batch` images of `pixels` cells each, from step 0.
    pub fn new(rule: Settling, batch: usize, pixels: usize) -> Self {
        SettleTracker {
            rule,
            pixels,
            average: None,
            previous: None,
            quiet: vec![0; batch],
            done: vec![None; batch],
        }
    }

    /// Records the class probabilities after step `t` (1, 2, ... since the
    /// start); whether every image is now done (settled, or at the rule's
    /// `max_steps`). The map watched (and kept for [`Settled`]) is the most
    /// likely class of `p_t = s p_(t-1) + (1 - s) probabilities`, `s` the
    /// rule's smoothing (the probabilities' own at 0).
    ///
    /// # Shapes
    ///
    /// `probabilities` `[B, C, H, W]` f32 with `H * W` the tracker's pixels.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming the probabilities when they are not
    /// `[B, C, H, W]` with the tracker's batch and pixels.
    pub fn observe(&mut self, t: usize, probabilities: &Tensor) -> Result<bool> {
        match probabilities.dims() {
            &[b, _, h, w] if b == self.done.len() && h * w == self.pixels => {}
            dims => {
                return Err(CoreError::Shape(crate::ShapeError {
                    what: "class probabilities to settle",
                    expected: format!(
                        "[{}, C, H, W] with H * W = {}",
                        self.done.len(),
                        self.pixels
                    ),
                    got: dims.to_vec(),
                }))
            }
        }
        let s = self.rule.smoothing;
        let p = match self.average.take() {
            Some(a) => ((a * s)? + (probabilities * (1.0 - s))?)?,
            None => probabilities.clone(),
        };
        let maps = p
            .argmax(1)?
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        if s > 0.0 {
            self.average = Some(p);
        }
        Ok(self.observe_maps(t, maps))
    }

    /// Records the class maps `[B * pixels]` after step `t`; whether every
    /// image is done.
    fn observe_maps(&mut self, t: usize, maps: Vec<u32>) -> bool {
        if let Some(prev) = &self.previous {
            let chunks = maps.chunks(self.pixels).zip(prev.chunks(self.pixels));
            for (b, (now, before)) in chunks.enumerate() {
                let changed = now.iter().zip(before).filter(|(a, b)| a != b).count();
                let quiet = changed as f64 <= self.rule.max_change * self.pixels as f64;
                self.quiet[b] = if quiet { self.quiet[b] + 1 } else { 0 };
            }
        }
        for (b, map) in maps.chunks(self.pixels).enumerate() {
            let ready = t >= self.rule.min_steps && self.quiet[b] >= self.rule.window;
            if self.done[b].is_none() && (ready || t >= self.rule.max_steps) {
                self.done[b] = Some((t, map.to_vec(), ready));
            }
        }
        self.previous = Some(maps);
        self.done.iter().all(Option::is_some)
    }

    /// The step each image settled at by the rule (`None` while it has
    /// not, and for an image that reached `max_steps` unsettled).
    pub fn settled_at(&self) -> Vec<Option<usize>> {
        self.done
            .iter()
            .map(|d| d.as_ref().filter(|d| d.2).map(|d| d.0))
            .collect()
    }

    /// The maps and step counts, once every image is done; `shape` is
    /// `(B, H, W)`.
    pub(crate) fn finish(
        self,
        shape: (usize, usize, usize),
        device: &candle_core::Device,
    ) -> Result<Settled> {
        let max = self.rule.max_steps;
        let mut classes = Vec::with_capacity(shape.0 * self.pixels);
        let (mut steps, mut settled) = (Vec::new(), Vec::new());
        for done in self.done {
            let (t, map, ready) = done.unwrap_or((max, vec![0; self.pixels], false));
            classes.extend(map);
            steps.push(t);
            settled.push(ready);
        }
        Ok(Settled {
            classes: Tensor::from_vec(classes, shape, device)?,
            steps,
            settled,
        })
    }
}
