//! The pool of slots (paper 3.2): each slot keeps an image, a state and an
//! age across mini-unrolls, and after each mini-unroll resets its image and
//! its state independently with the probabilities of [`crate::TrainConfig`].

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One slot of the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Index of the slot's sample in the training data.
    pub image: usize,
    /// Seed of the slot's augmentation draws (so its image stays the same).
    pub aug_seed: u64,
    /// CA steps since the slot's image or state was last reset.
    pub age: usize,
    /// The state `[S, h, w]` flattened, or `None` for a fresh `N(0, I)`
    /// state drawn when the slot is next used.
    #[serde(skip)]
    pub state: Option<Vec<f32>>,
}

/// What one round of resets did, for statistics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetCounts {
    /// Slots whose image was replaced and state kept (paper 3.2, case 1).
    pub new_image_old_state: usize,
    /// Slots that kept image and state (case 2).
    pub kept: usize,
    /// Slots whose state was reset, image kept or not (case 3).
    pub fresh_state: usize,
}

/// The slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// All slots.
    pub slots: Vec<Slot>,
}

impl Pool {
    /// `size` slots with random images from `0..num_samples` and fresh states.
    pub fn new<R: Rng>(size: usize, num_samples: usize, rng: &mut R) -> Self {
        let slots = (0..size)
            .map(|_| Slot {
                image: rng.random_range(0..num_samples),
                aug_seed: rng.random(),
                age: 0,
                state: None,
            })
            .collect();
        Pool { slots }
    }

    /// After a mini-unroll of the slots `ids`: each independently gets a new
    /// random image with probability `image_prob` and a fresh state with
    /// probability `state_prob`; either resets its age.
    pub fn reset<R: Rng>(
        &mut self,
        ids: &[usize],
        image_prob: f64,
        state_prob: f64,
        num_samples: usize,
        rng: &mut R,
    ) -> ResetCounts {
        let mut counts = ResetCounts::default();
        for &id in ids {
            let new_image = rng.random::<f64>() < image_prob;
            let new_state = rng.random::<f64>() < state_prob;
            let slot = &mut self.slots[id];
            if new_image {
                slot.image = rng.random_range(0..num_samples);
                slot.aug_seed = rng.random();
            }
            if new_state {
                slot.state = None;
            }
            if new_image || new_state {
                slot.age = 0;
            }
            match (new_image, new_state) {
                (_, true) => counts.fresh_state += 1,
                (true, false) => counts.new_image_old_state += 1,
                (false, false) => counts.kept += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unroll::reset_probability;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn measured_reset_fractions_match_the_formula_and_all_cases_occur() {
        let mut rng = StdRng::seed_from_u64(9);
        let n = 20_000;
        let mut pool = Pool::new(n, 1_000_000, &mut rng);
        let (ri, rs) = (
            reset_probability(0.5, 10, 40),
            reset_probability(0.3, 10, 40),
        );
        let ids: Vec<usize> = (0..n).collect();
        let images: Vec<usize> = pool.slots.iter().map(|s| s.image).collect();
        for s in &mut pool.slots {
            s.state = Some(vec![0.0]);
            s.age = 5;
        }
        let c = pool.reset(&ids, ri, rs, 1_000_000, &mut rng);
        let image_frac = pool
            .slots
            .iter()
            .zip(&images)
            .filter(|(s, &i)| s.image != i)
            .count() as f64
            / n as f64;
        let state_frac = c.fresh_state as f64 / n as f64;
        let sigma = |p: f64| 4.0 * (p * (1.0 - p) / n as f64).sqrt();
        assert!((image_frac - ri).abs() < sigma(ri), "{image_frac} vs {ri}");
        assert!((state_frac - rs).abs() < sigma(rs), "{state_frac} vs {rs}");
        assert!(c.new_image_old_state > 0 && c.kept > 0 && c.fresh_state > 0);
        assert_eq!(c.new_image_old_state + c.kept + c.fresh_state, n);
        // Reset slots start over; kept ones keep their age and state.
        assert!(pool.slots.iter().all(|s| (s.age == 0) != (s.age == 5)));
        assert_eq!(
            pool.slots.iter().filter(|s| s.state.is_none()).count(),
            c.fresh_state
        );
    }

    #[test]
    fn probability_one_resets_everything() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut pool = Pool::new(10, 5, &mut rng);
        for s in &mut pool.slots {
            s.state = Some(vec![1.0]);
        }
        let c = pool.reset(&(0..10).collect::<Vec<_>>(), 1.0, 1.0, 5, &mut rng);
        assert_eq!(c.fresh_state, 10);
        assert!(pool.slots.iter().all(|s| s.state.is_none() && s.age == 0));
    }
}
