//! A colony: the state grid `[B, S, h, w]` of a cell model and its evolution.

use candle_core::{DType, Tensor};

use crate::coarse::step_at;
use crate::draws::{normal_state, step_rng};
use crate::error::{CoreError, Result};
use crate::model::CellModel;
use crate::rule::CellRule;

/// Step index used to derive the generator of the initial state, distinct
/// from every step index an evolution reaches.
const INIT_STREAM: u64 = u64::MAX;

/// A colony of cells evolving under one model, `B` grids at once. For
/// inference: the state is detached after every step, so no autograd graph
/// builds up (training goes through [`CellRule::step`]); a colony made
/// [`Colony::with_gradients`] keeps the graph instead, for what
/// differentiates a trajectory with respect to its image (an adversarial
/// attack).
///
/// The colony is sized by its images, `H x W` pixels; its state lives on
/// the model's grid `(h, w) = model.state_size((H, W))` (the same grid for
/// a plain [`CellRule`], smaller behind an encoder), and its logits come at
/// the images' resolution. `M` is any [`CellModel`]: a rule, a reference
/// to a model (`Colony<&M>`), or a shared one (`Colony<Arc<M>>`).
///
/// Randomness: the initial state and the draws of step `t` come from
/// [`step_rng`]`(seed, .)`, so the same seed gives the same trajectory on
/// CPU, whatever happened before.
///
/// # Shapes
///
/// state `[B, S, h, w]`; environment `[B, E, h, w]` (from
/// [`Colony::environment`] of images `[B, 3, H, W]` in `[0, 1]`; for a
/// plain rule the images, standardised when its config has an
/// [`crate::ImageNorm`]); logits `[B, classes, H, W]`;
/// predictions `[B, H, W]` u32.
#[derive(Debug, Clone)]
pub struct Colony<M: CellModel = CellRule> {
    model: M,
    state: Tensor,
    image_size: (usize, usize),
    seed: u64,
    steps: u64,
    gradients: bool,
}

impl<M: CellModel> Colony<M> {
    /// A colony of `batch` grids for images of `height x width` pixels,
    /// state seeded `N(0, I)` from `seed` on the model's state grid.
    ///
    /// # Shapes
    ///
    /// The state is `[batch, S, h, w]` with
    /// `(h, w) = model.state_size((height, width))`.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming the colony when a size is 0.
    pub fn new(model: M, batch: usize, height: usize, width: usize, seed: u64) -> Result<Self> {
        if batch == 0 || height == 0 || width == 0 {
            return Err(CoreError::Shape(crate::ShapeError {
                what: "colony",
                expected: "batch, height and width of at least 1".into(),
                got: vec![batch, height, width],
            }));
        }
        let (h, w) = model.state_size((height, width));
        let rule = model.rule();
        let s = rule.config().state_channels;
        let mut rng = step_rng(seed, INIT_STREAM);
        let state = normal_state((batch, s, h, w), &mut rng, rule.device())?;
        Ok(Colony {
            model,
            state,
            image_size: (height, width),
            seed,
            steps: 0,
            gradients: false,
        })
    }

    /// The same colony keeping the autograd graph through its environment,
    /// its steps and its logits, so that a loss on [`Colony::logits`]
    /// after any number of steps has gradients back to the images given
    /// to [`Colony::environment`] (and the model's variables). The
    /// trajectory is the one the plain colony takes; only the graph is
    /// kept, and its memory grows with every step.
    pub fn with_gradients(mut self) -> Self {
        self.gradients = true;
        self
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The cell rule.
    pub fn rule(&self) -> &CellRule {
        self.model.rule()
    }

    /// The state `[B, S, h, w]`.
    pub fn state(&self) -> &Tensor {
        &self.state
    }

    /// The images' size `(H, W)` in pixels.
    pub fn image_size(&self) -> (usize, usize) {
        self.image_size
    }

    /// The state grid `(h, w)` in cells.
    pub fn state_size(&self) -> (usize, usize) {
        self.model.state_size(self.image_size)
    }

    /// Replaces the state (same shape required), e.g. to keep it across an
    /// image switch, to damage a region or to restore a saved state.
    ///
    /// # Shapes
    ///
    /// `state` `[B, S, h, w]`, the shape of [`Colony::state`].
    pub fn set_state(&mut self, state: Tensor) -> Result<()> {
        if state.dims() != self.state.dims() {
            return Err(CoreError::Shape(crate::ShapeError {
                what: "new colony state",
                expected: format!("{:?}", self.state.dims()),
                got: state.dims().to_vec(),
            }));
        }
        self.state = state.detach();
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The environment the cells read, detached (unless
    /// [`Colony::with_gradients`]): compute it once per image, step with it
    /// many times.
    ///
    /// # Shapes
    ///
    /// `images` `[B, 3, H, W]` f32 RGB, pixel values in `[0, 1]` ->
    /// `[B, E, h, w]`.
    pub fn environment(&self, images: &Tensor) -> Result<Tensor> {
        let env = self.model.environment(images)?;
        Ok(if self.gradients { env } else { env.detach() })
    }

    /// One step under environment `env` (from [`Colony::environment`]; for
    /// a plain rule without an [`crate::ImageNorm`], the images
    /// themselves); the environment may differ from step to step (video,
    /// image switching).
    ///
    /// # Shapes
    ///
    /// `env` `[B, E, h, w]` f32; for a plain rule `[B, 3, H, W]`.
    ///
    /// With a [`crate::Cascade`] in the rule's config, the first steps run
    /// on its coarse grids ([`crate::coarse::coarse_step`]); the state
    /// keeps its shape throughout.
    pub fn step(&mut self, env: &Tensor) -> Result<()> {
        let mut rng = step_rng(self.seed, self.steps);
        self.state = step_at(
            self.model.rule(),
            &self.state,
            env,
            self.steps,
            &mut rng,
            self.gradients,
        )?;
        self.steps += 1;
        Ok(())
    }

    /// `n` steps under the same environment.
    ///
    /// # Shapes
    ///
    /// `env` as for [`Colony::step`]: `[B, E, h, w]`, from
    /// [`Colony::environment`].
    pub fn evolve(&mut self, env: &Tensor, n: usize) -> Result<()> {
        self.evolve_with(env, n, |_, _| Ok::<_, CoreError>(None))
    }

    /// `n` steps, calling `after_step(t, self)` after step `t` (1-based,
    /// counted from this call): the one loop behind every evaluation,
    /// picture and segmentation of the project. It reads the colony (its
    /// state, logits, prediction) and may return a new environment, which
    /// the steps after `t` run under (a switched or shifted image, a video
    /// frame); `None` keeps the current one.
    ///
    /// # Shapes
    ///
    /// `env` and every new environment as for [`Colony::step`]:
    /// `[B, E, h, w]`, from [`Colony::environment`].
    ///
    /// # Errors
    ///
    /// A step's [`CoreError`] (converted into `E`), or the first error of
    /// `after_step`, which ends the evolution.
    pub fn evolve_with<E: From<CoreError>>(
        &mut self,
        env: &Tensor,
        n: usize,
        mut after_step: impl FnMut(usize, &Self) -> std::result::Result<Option<Tensor>, E>,
    ) -> std::result::Result<(), E> {
        let mut env = env.clone();
        for t in 1..=n {
            self.step(&env)?;
            if let Some(next) = after_step(t, self)? {
                env = next;
            }
        }
        Ok(())
    }

    /// Class logits of the current state, at the images' resolution
    /// (detached unless [`Colony::with_gradients`]).
    ///
    /// # Shapes
    ///
    /// `[B, classes, H, W]` f32.
    pub fn logits(&self) -> Result<Tensor> {
        let logits = self.model.logits(&self.state, self.image_size)?;
        Ok(if self.gradients {
            logits
        } else {
            logits.detach()
        })
    }

    /// The most likely class of every pixel.
    ///
    /// # Shapes
    ///
    /// `[B, H, W]` u32.
    pub fn predict(&self) -> Result<Tensor> {
        Ok(self.logits()?.argmax(1)?.to_dtype(DType::U32)?)
    }
}
