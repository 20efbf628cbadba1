//! Anytime stopping: a colony runs until its class map has settled
//! instead of a fixed number of steps ([`Settling`],
//! [`crate::Segmenter::segment_until_stable`]).

use candle_core::Tensor;

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
    /// At most 3% of the cells changing class in each of 4 steps in a row,
    /// between 8 and 80 steps: chosen on the validation split (168 photos,
    /// `pets48`, `docs/RESULTS.md`), where it took 27.2 steps on average
    /// instead of 40 (32% fewer) for an object IoU 0.004 lower (boundary
    /// 0.013 lower). The colony's boundary cells flicker with the random
    /// updates, so a stricter rule rarely settles (1%: 51 steps on
    /// average, no IoU lost).
    fn default() -> Self {
        Settling {
            max_change: 0.03,
            window: 4,
            min_steps: 8,
            max_steps: 80,
            smoothing: 0.0,
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

/// Follows the class maps of a batch step by step and says when each
/// image has settled under a [`Settling`] rule (what
/// [`crate::Segmenter::segment_until_stable`] and a live page use).
#[derive(Debug, Clone)]
pub struct SettleTracker {
    rule: Settling,
    pixels: usize,
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
            previous: None,
            quiet: vec![0; batch],
            done: vec![None; batch],
        }
    }

    /// Records the class maps `[B * pixels]` after step `t` (1, 2, ...
    /// since the start); whether every image is now done (settled, or at
    /// the rule's `max_steps`).
    pub fn observe(&mut self, t: usize, maps: Vec<u32>) -> bool {
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
