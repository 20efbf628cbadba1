//! [`Segmenter`]: from an image to its class map in one call.

use candle_core::{DType, Tensor};

use crate::colony::Colony;
use crate::draws::chunk_seed;
use crate::ensemble::{ensemble_mean, repeat_members, EnsembleOutput};
use crate::error::{CoreError, Result};
use crate::model::CellModel;
use crate::rule::CellRule;
use crate::settle::{SettleTracker, Settled, Settling};

/// The number of CA steps a [`Segmenter`] takes unless told otherwise: the
/// step count the models of this project are trained and evaluated at.
pub const DEFAULT_STEPS: usize = 40;

/// Segments images in one call: a fresh [`Colony`] of the model for every
/// call, seeded from [`Segmenter::seed`] as an evaluation seeds its first
/// chunk ([`chunk_seed`]`(seed, 0)`), evolved [`Segmenter::steps`]
/// steps on the images, its most likely class per pixel read off (0
/// background, 1 object, 2 boundary for the models of this project).
///
/// Works with any [`CellModel`]: a [`CellRule`] (one cell per pixel) or a
/// model with an encoder and a decoder, by value or behind a reference or
/// an `Arc`. The same seed gives the same class map on the CPU.
///
/// # Shapes
///
/// - [`Segmenter::segment`]: image `[3, H, W]` -> classes `[H, W]` u32;
/// - [`Segmenter::segment_batch`]: images `[B, 3, H, W]` -> `[B, H, W]`
///   u32;
///
/// with images f32, RGB, pixel values in `[0, 1]` (values outside are not
/// rejected, but no model has seen them), on any device (they are moved
/// to the model's); the class maps are on the model's device.
///
/// ```
/// use ca_core::{CellConfig, CellRule, Segmenter};
/// use candle_core::{DType, Device, Tensor};
///
/// # fn main() -> Result<(), ca_core::CoreError> {
/// let rule = CellRule::new(CellConfig::default(), 0, &Device::Cpu)?;
/// let image = Tensor::full(0.5f32, (3, 16, 20), &Device::Cpu)?;
/// let classes = Segmenter::new(rule).with_steps(8).segment(&image)?;
/// assert_eq!(classes.dims(), [16, 20]);
/// assert_eq!(classes.dtype(), DType::U32);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Segmenter<M: CellModel = CellRule> {
    model: M,
    /// CA steps per call ([`DEFAULT_STEPS`] unless set).
    pub steps: usize,
    /// Seed of the initial state and of every step's draws (0 unless set).
    pub seed: u64,
    /// Runs per image ([`Segmenter::with_ensemble`]; 1 unless set).
    pub ensemble: usize,
}

impl<M: CellModel> Segmenter<M> {
    /// A segmenter of `model` taking [`DEFAULT_STEPS`] steps from seed 0.
    pub fn new(model: M) -> Self {
        Segmenter {
            model,
            steps: DEFAULT_STEPS,
            seed: 0,
            ensemble: 1,
        }
    }

    /// The same segmenter taking `steps` CA steps per call.
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// The same segmenter seeding its colonies from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same segmenter running `members` colonies per image, from
    /// independent initial states and draws, batched as one colony of
    /// `members * B` runs, and averaging their class probabilities (a
    /// pseudo-ensemble; see [`Segmenter::probabilities_batch`]). 1 (the
    /// default) is the plain segmenter, bit for bit. A model with
    /// [`crate::Norm::Batch`] normalizes over all the runs at once.
    pub fn with_ensemble(mut self, members: usize) -> Self {
        self.ensemble = members;
        self
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The ensemble's class probabilities and their spread for a batch
    /// of images, after [`Segmenter::steps`] steps of
    /// [`Segmenter::ensemble`] runs per image (one run: its softmax and a
    /// variance of 0).
    ///
    /// # Shapes
    ///
    /// `images` `[B, 3, H, W]` f32 RGB in `[0, 1]` -> probabilities
    /// `[B, C, H, W]`, variance `[B, H, W]` (see [`EnsembleOutput`]).
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming `images` when they are not
    /// `[B, 3, H, W]` f32 with `B, H, W >= 1`; [`CoreError::InvalidConfig`]
    /// for an ensemble of 0.
    pub fn probabilities_batch(&self, images: &Tensor) -> Result<EnsembleOutput> {
        let colony = self.evolved(images)?;
        ensemble_mean(&colony.logits()?, self.ensemble)
    }

    /// The class of every pixel of one image.
    ///
    /// # Shapes
    ///
    /// `image` `[3, H, W]` f32 RGB in `[0, 1]` -> `[H, W]` u32.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming `image` when it is not `[3, H, W]` f32
    /// with `H, W >= 1`.
    pub fn segment(&self, image: &Tensor) -> Result<Tensor> {
        match image.dims() {
            &[3, h, w] if h > 0 && w > 0 && image.dtype() == DType::F32 => {}
            _ => return Err(image_error("image", "[3, H, W]", image)),
        }
        Ok(self.run(&image.unsqueeze(0)?)?.squeeze(0)?)
    }

    /// The class of every pixel of a batch of images, evolved as one
    /// colony: the draws of a batch come from one generator, and a model
    /// with [`crate::Norm::Batch`] normalizes over the whole batch, so an
    /// image's class map in a batch is not bit for bit its map alone.
    ///
    /// # Shapes
    ///
    /// `images` `[B, 3, H, W]` f32 RGB in `[0, 1]` -> `[B, H, W]` u32.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming `images` when they are not
    /// `[B, 3, H, W]` f32 with `B, H, W >= 1`.
    pub fn segment_batch(&self, images: &Tensor) -> Result<Tensor> {
        self.run(images)
    }

    /// The class of every pixel of an RGB image (bytes scaled to `[0, 1]`).
    ///
    /// # Shapes
    ///
    /// A `W x H` image -> `[H, W]` u32 (`.to_vec2::<u32>()` gives its rows).
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming `image` for an empty image.
    #[cfg(feature = "image")]
    pub fn segment_rgb(&self, image: &image::RgbImage) -> Result<Tensor> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let chw = Tensor::from_vec(rgb_to_chw(image), (3, h, w), self.model.rule().device())?;
        self.segment(&chw)
    }

    /// A fresh colony of the model on `images`, seeded from
    /// [`Segmenter::seed`], and its environment, for callers that step it
    /// themselves (an evolution animation, a live page): evolving it
    /// [`Segmenter::steps`] steps and predicting is what
    /// [`Segmenter::segment_batch`] does. The colony owns the segmenter's
    /// model, so a segmenter of a reference (`Segmenter::new(&model)`)
    /// gives a colony that borrows the model.
    ///
    /// # Shapes
    ///
    /// `images` `[B, 3, H, W]` f32 RGB in `[0, 1]` (moved to the model's
    /// device) -> a colony of `B` runs on the model's state grid for an
    /// `H x W` image, and the environment `[B, E, H', W']` it reads.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming `images` when they are not
    /// `[B, 3, H, W]` f32 with `B, H, W >= 1`.
    pub fn start(self, images: &Tensor) -> Result<(Colony<M>, Tensor)> {
        let (b, h, w) = batch_dims(images)?;
        let images = images.to_device(self.model.rule().device())?;
        let colony = Colony::new(self.model, b, h, w, chunk_seed(self.seed, 0))?;
        let env = colony.environment(&images)?;
        Ok((colony, env))
    }

    /// Segments a batch of images with as many steps as each needs: the
    /// colony (of [`Segmenter::ensemble`] runs per image) steps until every
    /// image's class map has settled as `settling` says, or
    /// `settling.max_steps`; [`Segmenter::steps`] is not used. Each image's
    /// map is the one of the step it settled at.
    ///
    /// # Shapes
    ///
    /// `images` `[B, 3, H, W]` f32 RGB in `[0, 1]` -> classes `[B, H, W]`
    /// u32 and `B` step counts.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] naming `images` when they are not
    /// `[B, 3, H, W]` f32 with `B, H, W >= 1`; [`CoreError::InvalidConfig`]
    /// naming the field of a `settling` that does not validate.
    pub fn segment_until_stable(&self, images: &Tensor, settling: &Settling) -> Result<Settled> {
        settling.validate()?;
        let (b, h, w) = batch_dims(images)?;
        let borrowed = Segmenter {
            model: &self.model,
            steps: self.steps,
            seed: self.seed,
            ensemble: 1,
        };
        let (mut colony, env) = borrowed.start(&repeat_members(images, self.ensemble)?)?;
        let mut tracker = SettleTracker::new(*settling, b, h * w);
        for t in 1..=settling.max_steps {
            colony.step(&env)?;
            let p = ensemble_mean(&colony.logits()?, self.ensemble)?.probabilities;
            if tracker.observe(t, &p)? {
                break;
            }
        }
        tracker.finish((b, h, w), self.model.rule().device())
    }

    /// Evolves a colony on images `[B, 3, H, W]` and predicts: the plain
    /// colony's most likely classes, or the ensemble's.
    fn run(&self, images: &Tensor) -> Result<Tensor> {
        let colony = self.evolved(images)?;
        match self.ensemble {
            1 => colony.predict(),
            n => ensemble_mean(&colony.logits()?, n)?.classes(),
        }
    }

    /// A colony of [`Segmenter::ensemble`] runs per image (member-major)
    /// evolved [`Segmenter::steps`] steps on `images` `[B, 3, H, W]`.
    fn evolved(&self, images: &Tensor) -> Result<Colony<&M>> {
        batch_dims(images)?;
        let images = repeat_members(images, self.ensemble)?;
        let borrowed = Segmenter {
            model: &self.model,
            steps: self.steps,
            seed: self.seed,
            ensemble: 1,
        };
        let (mut colony, env) = borrowed.start(&images)?;
        colony.evolve(&env, self.steps)?;
        Ok(colony)
    }
}

/// `(B, H, W)` of images `[B, 3, H, W]` f32 with every size at least 1,
/// else the shape error naming `images`.
fn batch_dims(images: &Tensor) -> Result<(usize, usize, usize)> {
    match images.dims() {
        &[b, 3, h, w] if b > 0 && h > 0 && w > 0 && images.dtype() == DType::F32 => Ok((b, h, w)),
        _ => Err(image_error("images", "[B, 3, H, W]", images)),
    }
}

fn image_error(what: &'static str, shape: &str, t: &Tensor) -> CoreError {
    CoreError::Shape(crate::ShapeError {
        what,
        expected: format!(
            "f32 {shape} with every size at least 1 (got dtype {:?})",
            t.dtype()
        ),
        got: t.dims().to_vec(),
    })
}

/// An RGB image as `[3, H, W]` f32 values in `[0, 1]` (each byte / 255),
/// channel-major.
#[cfg(feature = "image")]
pub fn rgb_to_chw(image: &image::RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in image.pixels().enumerate() {
        for (c, &v) in p.0.iter().enumerate() {
            out[c * plane + i] = f32::from(v) / 255.0;
        }
    }
    out
}
