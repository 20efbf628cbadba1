//! Seeded epoch orders and candle batches from the in-memory cache.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::augment::Augment;
use crate::dataset::PetsDataset;
use crate::error::DataError;
use crate::rng::stream_rng;

/// A batch of samples as candle tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Images, `[B, 3, S, S]` f32 in [0, 1].
    pub images: Tensor,
    /// Labels, `[B, L, L]` u32 class ids (0 background, 1 object,
    /// 2 boundary), the dtype `cross_entropy` wants as targets.
    pub labels: Tensor,
}

/// A seeded permutation of `0..len` for epoch `epoch`.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut stream_rng(seed, epoch));
    order
}

impl PetsDataset {
    /// Builds one batch from the cached samples at `indices` on `device`,
    /// applying `augment` with draws from `rng` (one [`Augment::draw`] per
    /// sample, in order, then [`crate::Drawn::apply`], so a seeded `rng`
    /// gives the same batch).
    ///
    /// Returns images `[B, 3, S, S]` f32 and labels `[B, L, L]` u32 with
    /// `B = indices.len()`, `S = image_size`, `L = label_size`.
    pub fn batch<R: Rng + ?Sized>(
        &self,
        indices: &[usize],
        augment: &Augment,
        rng: &mut R,
        device: &Device,
    ) -> Result<Batch, DataError> {
        augment.validate()?;
        if indices.is_empty() {
            return Err(DataError::InvalidOption(ca_core::InvalidValue {
                name: "indices",
                value: "[]".to_string(),
                reason: "a batch needs at least one sample".to_string(),
            }));
        }
        let (s, l) = (self.image_size(), self.label_size());
        let mut images = Vec::with_capacity(indices.len() * 3 * s * s);
        let mut labels = Vec::with_capacity(indices.len() * l * l);
        for &index in indices {
            let sample = self
                .samples()
                .get(index)
                .ok_or(DataError::IndexOutOfRange {
                    index,
                    len: self.len(),
                })?;
            let (image, label) = augment.draw(rng).apply(&sample.image, s, &sample.label, l);
            images.extend_from_slice(&image);
            labels.extend(label.into_iter().map(u32::from));
        }
        let b = indices.len();
        Ok(Batch {
            images: Tensor::from_vec(images, (b, 3, s, s), device)?,
            labels: Tensor::from_vec(labels, (b, l, l), device)?,
        })
    }

    /// The batches of epoch `epoch`: the samples in [`epoch_order`]`(len,
    /// seed, epoch)` cut into runs of `batch_size` (the last one may be
    /// shorter), augmented with draws from a second seeded stream of `(seed, epoch)`.
    pub fn epoch_batches(
        &self,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        augment: Augment,
        device: &Device,
    ) -> Result<EpochBatches<'_>, DataError> {
        if batch_size == 0 {
            return Err(DataError::InvalidOption(ca_core::InvalidValue {
                name: "batch_size",
                value: "0".to_string(),
                reason: "must be at least 1".to_string(),
            }));
        }
        augment.validate()?;
        let order = epoch_order(self.len(), seed, epoch);
        // Augmentation draws use a stream separate from the shuffle's.
        let rng = stream_rng(seed.rotate_left(32) ^ 0xA5A5_A5A5, epoch);
        Ok(EpochBatches {
            dataset: self,
            order,
            next: 0,
            batch_size,
            augment,
            rng,
            device: device.clone(),
        })
    }
}

/// Iterator over the batches of one epoch; see [`PetsDataset::epoch_batches`].
#[derive(Debug)]
pub struct EpochBatches<'a> {
    dataset: &'a PetsDataset,
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    augment: Augment,
    rng: StdRng,
    device: Device,
}

impl Iterator for EpochBatches<'_> {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let indices = &self.order[self.next..end];
        self.next = end;
        Some(
            self.dataset
                .batch(indices, &self.augment, &mut self.rng, &self.device),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{LoadOptions, Sample};
    use rand::SeedableRng;

    fn toy() -> PetsDataset {
        let samples = (0..5)
            .map(|i| Sample {
                name: format!("s{i}"),
                image: (0..12).map(|v| (v + i) as f32 / 20.0).collect(),
                label: vec![0, 1, 2, (i % 3) as u8],
            })
            .collect();
        PetsDataset::from_samples(samples, &LoadOptions::square(2)).expect("valid")
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 0));
        assert_ne!(a, epoch_order(50, 7, 1));
        assert_ne!(a, epoch_order(50, 8, 0));
    }

    #[test]
    fn batch_shapes_dtypes_and_values() -> Result<(), DataError> {
        let ds = toy();
        let mut rng = StdRng::seed_from_u64(0);
        let b = ds.batch(&[4, 0], &Augment::none(), &mut rng, &Device::Cpu)?;
        assert_eq!(b.images.dims(), &[2, 3, 2, 2]);
        assert_eq!(b.labels.dims(), &[2, 2, 2]);
        assert_eq!(b.labels.dtype(), candle_core::DType::U32);
        let labels: Vec<u32> = b.labels.flatten_all()?.to_vec1()?;
        assert_eq!(labels, vec![0, 1, 2, 1, 0, 1, 2, 0]);
        let images: Vec<f32> = b.images.flatten_all()?.to_vec1()?;
        assert_eq!(&images[12..], &ds.sample(0).image[..]);
        Ok(())
    }

    #[test]
    fn batch_rejects_bad_indices() {
        let ds = toy();
        let mut rng = StdRng::seed_from_u64(0);
        let err = ds
            .batch(&[5], &Augment::none(), &mut rng, &Device::Cpu)
            .unwrap_err();
        assert!(err.to_string().contains("index 5"), "{err}");
        assert!(ds
            .batch(&[], &Augment::none(), &mut rng, &Device::Cpu)
            .is_err());
    }

    #[test]
    fn epoch_batches_cover_every_sample_once() -> Result<(), DataError> {
        let ds = toy();
        let batches: Vec<Batch> = ds
            .epoch_batches(2, 1, 0, Augment::default(), &Device::Cpu)?
            .collect::<Result<_, _>>()?;
        assert_eq!(
            batches
                .iter()
                .map(|b| b.images.dims()[0])
                .collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert!(ds
            .epoch_batches(0, 1, 0, Augment::default(), &Device::Cpu)
            .is_err());
        Ok(())
    }

    /// The batch pipeline as it was before rotation and jitter existed:
    /// flip draw, crop draws, crop, flip.
    fn old_pipeline(ds: &PetsDataset, indices: &[usize], aug: &Augment, seed: u64) -> Vec<f32> {
        use crate::augment::{crop_resize_bilinear, flip_horizontal, CropBox};
        let mut rng = StdRng::seed_from_u64(seed);
        let s = ds.image_size();
        let mut out = Vec::new();
        for &i in indices {
            let flip = aug.flip && rng.random_bool(0.5);
            let mut image = ds.sample(i).image.clone();
            if aug.min_crop < 1.0 {
                let side = rng.random_range(aug.min_crop..=1.0);
                let x0 = rng.random_range(0.0..=1.0 - side);
                let y0 = rng.random_range(0.0..=1.0 - side);
                image = crop_resize_bilinear(&image, 3, s, CropBox { x0, y0, side }, s);
            }
            if flip {
                flip_horizontal(&mut image, 3, s, s);
            }
            out.extend(image);
        }
        out
    }

    #[test]
    fn without_rotation_and_jitter_batches_are_unchanged() -> Result<(), DataError> {
        let ds = toy();
        let indices = [3, 1, 4, 0, 2, 1, 3];
        for aug in [
            Augment::default(),
            Augment::none(),
            Augment {
                min_crop: 0.6,
                ..Augment::default()
            },
        ] {
            for seed in [0, 5, 11] {
                let mut rng = StdRng::seed_from_u64(seed);
                let b = ds.batch(&indices, &aug, &mut rng, &Device::Cpu)?;
                let images: Vec<f32> = b.images.flatten_all()?.to_vec1()?;
                assert_eq!(images, old_pipeline(&ds, &indices, &aug, seed), "{aug:?}");
            }
        }
        Ok(())
    }
}
