//! Does a model read the image? Two measurements (issue 23):
//!
//! - [`image_reading`]: the agreement (mean IoU over classes) between the
//!   model's class map of each photo and its class map of the same photo
//!   with its pixels shuffled, and of a uniform grey image, from the same
//!   initial state and the same random draws. A rule that ignores the image
//!   scores near 1 (the same map whatever it is shown); one that reads it
//!   scores low.
//! - [`probe_frames`]: the class map and the state at chosen steps for a
//!   few photos, for `ca-viz` to draw side by side for two models.
//!
//! Both run from fresh states seeded by the evaluator's rule
//! ([`ca_core::chunk_seed`]), as the protocols do.

use ca_core::ErrorShapes;
use ca_core::{CellModel, Colony};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{EvalError, Result};
use crate::protocols::EvalSet;

/// The value of every pixel of the grey image of [`image_reading`].
pub const GREY: f32 = 0.5;

/// How much a model's prediction depends on the image: the agreement of
/// its class maps on real photos with its class maps on images that hold
/// no photo. 1 = the same map whatever the image; lower = reads the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageReading {
    /// The CA step at which the maps are compared.
    pub step: usize,
    /// Mean over photos of the mean IoU over classes between the map of
    /// the photo and the map of the photo with its pixels shuffled (one
    /// seeded permutation of the pixel positions, the same for the three
    /// channels: the same colours, no shape).
    pub shuffled: f64,
    /// The same against a uniform grey image ([`GREY`]).
    pub grey: f64,
    /// Mean IoU over classes of the photo's own map against its labels,
    /// for scale.
    pub labels: f64,
    /// Photos compared.
    pub samples: usize,
}

/// Class maps and states of a few photos at chosen steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeFrames {
    /// The recorded steps, increasing.
    pub steps: Vec<usize>,
    /// Side of the square images (and class maps) in pixels.
    pub image_size: usize,
    /// The state grid `(h, w)` in cells.
    pub state_size: (usize, usize),
    /// State channels.
    pub state_channels: usize,
    /// `classes[i][k]`: the class map `[S, S]` (row-major) of photo `i` at
    /// `steps[k]`.
    pub classes: Vec<Vec<Vec<u32>>>,
    /// `states[i][k]`: the state `[C, h, w]` (row-major) of photo `i` at
    /// `steps[k]`.
    pub states: Vec<Vec<Vec<f32>>>,
}

/// Mean over classes present in either map of the IoU between two class
/// maps of equal length; 1 for two empty maps.
pub fn map_agreement(a: &[u32], b: &[u32], classes: usize) -> f64 {
    let mut ious = Vec::with_capacity(classes);
    for c in 0..classes as u32 {
        let (mut inter, mut union) = (0usize, 0usize);
        for (&x, &y) in a.iter().zip(b) {
            let (in_a, in_b) = (x == c, y == c);
            inter += usize::from(in_a && in_b);
            union += usize::from(in_a || in_b);
        }
        if union > 0 {
            ious.push(inter as f64 / union as f64);
        }
    }
    if ious.is_empty() {
        1.0
    } else {
        ious.iter().sum::<f64>() / ious.len() as f64
    }
}

/// `image` (`[3, S, S]`) with its pixel positions permuted by a
/// permutation drawn from `seed` (the same for every channel).
pub fn shuffle_pixels(image: &[f32], seed: u64) -> Vec<f32> {
    let plane = image.len() / 3;
    let mut order: Vec<usize> = (0..plane).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut out = Vec::with_capacity(image.len());
    for channel in image.chunks_exact(plane.max(1)) {
        out.extend(order.iter().map(|&p| channel[p]));
    }
    out
}

/// Class maps `[S * S]` of `images` after `steps` CA steps from the fresh
/// state of chunk `chunk` of a run seeded by `seed`.
fn class_maps<M: CellModel>(
    model: &M,
    images: &[Vec<f32>],
    size: usize,
    steps: usize,
    seed: u64,
    chunk: usize,
) -> Result<Vec<Vec<u32>>> {
    let device = model.rule().device().clone();
    let mut colony = Colony::new(
        model,
        images.len(),
        size,
        size,
        ca_core::chunk_seed(seed, chunk),
    )?;
    let env = colony.environment(&images_tensor(images, size, &device)?)?;
    colony.evolve(&env, steps)?;
    Ok(colony.predict()?.flatten_from(1)?.to_vec2::<u32>()?)
}

fn images_tensor(images: &[Vec<f32>], size: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        images.concat(),
        (images.len(), 3, size, size),
        device,
    )?)
}

/// How much `model`'s class map at `step` depends on the image, over the
/// photos of `set` in chunks of `batch` (see [`ImageReading`]). The photo,
/// its shuffled copy and the grey image start from the same state and see
/// the same draws, so only the image differs.
pub fn image_reading<M: CellModel>(
    model: &M,
    set: &EvalSet,
    step: usize,
    batch: usize,
    seed: u64,
) -> Result<ImageReading> {
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to probe"));
    }
    if batch == 0 || step == 0 {
        return Err(EvalError::invalid(
            "batch and step",
            format!("{batch}, {step}"),
            "must be at least 1",
        ));
    }
    let classes = model.rule().config().num_classes;
    let grey = vec![GREY; 3 * set.size * set.size];
    let (mut shuffled, mut grey_sum, mut labels) = (0.0, 0.0, 0.0);
    for (chunk, start) in (0..set.len()).step_by(batch).enumerate() {
        let end = (start + batch).min(set.len());
        let photos = &set.images[start..end];
        let scrambled: Vec<Vec<f32>> = photos
            .iter()
            .enumerate()
            .map(|(i, p)| shuffle_pixels(p, seed ^ (start + i) as u64))
            .collect();
        let greys = vec![grey.clone(); photos.len()];
        let run = |images: &[Vec<f32>]| class_maps(model, images, set.size, step, seed, chunk);
        let (on_photo, on_shuffled, on_grey) = (run(photos)?, run(&scrambled)?, run(&greys)?);
        for (i, map) in on_photo.iter().enumerate() {
            let truth: Vec<u32> = set.labels[start + i].iter().map(|&c| c.into()).collect();
            shuffled += map_agreement(map, &on_shuffled[i], classes);
            grey_sum += map_agreement(map, &on_grey[i], classes);
            labels += map_agreement(map, &truth, classes);
        }
    }
    let n = set.len() as f64;
    Ok(ImageReading {
        step,
        shuffled: shuffled / n,
        grey: grey_sum / n,
        labels: labels / n,
        samples: set.len(),
    })
}

/// The class maps and states of every photo of `set` at each of `steps`
/// (one run per photo batch from a fresh state seeded by `seed`).
pub fn probe_frames<M: CellModel>(
    model: &M,
    set: &EvalSet,
    steps: &[usize],
    seed: u64,
) -> Result<ProbeFrames> {
    if set.is_empty() {
        return Err(EvalError::invalid("data", 0, "no samples to probe"));
    }
    let mut steps = steps.to_vec();
    steps.sort_unstable();
    steps.dedup();
    if steps.first() == Some(&0) || steps.is_empty() {
        return Err(EvalError::invalid(
            "steps",
            format!("{steps:?}"),
            "need at least one step, each at least 1",
        ));
    }
    let device = model.rule().device().clone();
    let size = set.size;
    let mut colony = Colony::new(model, set.len(), size, size, ca_core::chunk_seed(seed, 0))?;
    let env = colony.environment(&images_tensor(&set.images, size, &device)?)?;
    let n = set.len();
    let (mut classes, mut states) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let mut done = 0;
    for &t in &steps {
        colony.evolve(&env, t - done)?;
        done = t;
        let maps = colony.predict()?.flatten_from(1)?.to_vec2::<u32>()?;
        let flat = colony.state().flatten_from(1)?.to_vec2::<f32>()?;
        for (i, (m, s)) in maps.into_iter().zip(flat).enumerate() {
            classes[i].push(m);
            states[i].push(s);
        }
    }
    Ok(ProbeFrames {
        steps,
        image_size: size,
        state_size: colony.state_size(),
        state_channels: model.rule().config().state_channels,
        classes,
        states,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ca_core::{CellConfig, CellRule};

    /// A rule that is shown nothing: its environment is zeros whatever the
    /// image, so its maps cannot depend on the image.
    struct Blind(CellRule);

    impl CellModel for Blind {
        fn rule(&self) -> &CellRule {
            &self.0
        }
        fn environment(&self, images: &Tensor) -> ca_core::Result<Tensor> {
            images.zeros_like().map_err(Into::into)
        }
        fn logits(&self, state: &Tensor, out_size: (usize, usize)) -> ca_core::Result<Tensor> {
            CellModel::logits(&self.0, state, out_size)
        }
        fn state_size(&self, image_size: (usize, usize)) -> (usize, usize) {
            CellModel::state_size(&self.0, image_size)
        }
    }

    fn rule() -> CellRule {
        let config = CellConfig {
            state_channels: 6,
            hidden_channels: 12,
            ..CellConfig::default()
        };
        CellRule::new(config, 3, &Device::Cpu).unwrap()
    }

    /// Four 8x8 photos: a bright square at a different place in each.
    fn set() -> EvalSet {
        let size = 8;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for k in 0..4 {
            let inside = |p: usize| (p % size) / 4 == k % 2 && (p / size) / 4 == k / 2;
            let label: Vec<u8> = (0..size * size).map(|p| u8::from(inside(p))).collect();
            let plane: Vec<f32> = label.iter().map(|&l| 0.1 + 0.8 * f32::from(l)).collect();
            images.push(plane.repeat(3));
            labels.push(label);
        }
        EvalSet {
            size,
            names: (0..4).map(|k| format!("p{k}")).collect(),
            images,
            labels,
        }
    }

    #[test]
    fn a_blind_model_agrees_with_itself_whatever_the_image() {
        let reading = image_reading(&Blind(rule()), &set(), 6, 2, 5).unwrap();
        assert_eq!(reading.shuffled, 1.0);
        assert_eq!(reading.grey, 1.0);
        assert_eq!(reading.samples, 4);
    }

    #[test]
    fn a_model_that_sees_the_image_disagrees_with_its_grey_map() {
        // An untrained rule reads the image weakly: 16 steps let it show in
        // the argmax map (at 6 it did for some draws and not for others).
        let reading = image_reading(&rule(), &set(), 16, 2, 5).unwrap();
        assert!(reading.grey < 1.0, "{reading:?}");
        assert!(reading.shuffled < 1.0, "{reading:?}");
        assert!((0.0..=1.0).contains(&reading.labels));
    }

    #[test]
    fn frames_record_each_step_in_order() {
        let frames = probe_frames(&rule(), &set(), &[4, 2, 4], 1).unwrap();
        assert_eq!(frames.steps, vec![2, 4]);
        assert_eq!(frames.classes.len(), 4);
        assert_eq!(frames.classes[0].len(), 2);
        assert_eq!(frames.classes[0][0].len(), 64);
        assert_eq!(frames.states[0][1].len(), 6 * 64);
        assert!(probe_frames(&rule(), &set(), &[0, 3], 1).is_err());
    }

    #[test]
    fn agreement_of_a_map_with_itself_is_one() {
        let a = [0, 1, 2, 1];
        assert_eq!(map_agreement(&a, &a, 3), 1.0);
    }

    #[test]
    fn agreement_averages_the_present_classes() {
        // class 0: inter 1, union 2 -> 0.5; class 1: inter 1, union 2 -> 0.5;
        // class 2 absent from both.
        assert_eq!(map_agreement(&[0, 0, 1], &[0, 1, 1], 3), 0.5);
        assert_eq!(map_agreement(&[0, 0], &[1, 1], 3), 0.0);
    }

    #[test]
    fn shuffling_keeps_the_colours_and_moves_the_pixels() {
        let image: Vec<f32> = (0..3 * 16).map(|v| v as f32).collect();
        let out = shuffle_pixels(&image, 7);
        assert_ne!(out, image);
        for (c, channel) in out.chunks_exact(16).enumerate() {
            let mut sorted = channel.to_vec();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, image[c * 16..(c + 1) * 16].to_vec());
        }
        // The same permutation in every channel: channel offsets stay 16 apart.
        for p in 0..16 {
            assert_eq!(out[16 + p] - out[p], 16.0);
            assert_eq!(out[32 + p] - out[p], 32.0);
        }
        assert_eq!(shuffle_pixels(&image, 7), out, "seeded");
    }
}
