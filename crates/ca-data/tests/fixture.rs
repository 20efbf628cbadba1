//! Tests on the committed synthetic fixture `fixtures/pets-synthetic/`.

use std::path::PathBuf;

use ca_data::synth::{scene, scene_name};
use ca_data::{
    epoch_order, load_label_map, Augment, Batch, DataError, LoadOptions, LoadPolicy, PetsDataset,
    Split, BOUNDARY, NUM_CLASSES, OBJECT,
};
use candle_core::Device;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pets-synthetic")
}

#[test]
fn both_splits_load_strictly() {
    for (split, count) in [(Split::TrainVal, 36), (Split::Test, 12)] {
        for policy in [LoadPolicy::Strict, LoadPolicy::Lenient] {
            let opts = LoadOptions {
                policy,
                ..LoadOptions::square(48)
            };
            let ds = PetsDataset::open(&fixture(), split, &opts).expect("fixture loads");
            assert_eq!(ds.len(), count);
            assert_eq!(ds.report().loaded, count);
            assert!(ds.report().skipped.is_empty());
        }
    }
}

#[test]
fn class_fractions_are_like_the_real_set() {
    let ds =
        PetsDataset::open(&fixture(), Split::TrainVal, &LoadOptions::square(48)).expect("loads");
    let mut counts = [0usize; NUM_CLASSES];
    for s in ds.samples() {
        for &c in &s.label {
            counts[usize::from(c)] += 1;
        }
    }
    let total = counts.iter().sum::<usize>() as f64;
    let object = counts[usize::from(OBJECT)] as f64 / total;
    let boundary = counts[usize::from(BOUNDARY)] as f64 / total;
    assert!((0.22..0.38).contains(&object), "object {object}");
    assert!((0.06..0.16).contains(&boundary), "boundary {boundary}");
}

#[test]
fn image_and_label_sizes_are_independent() {
    let opts = LoadOptions {
        image_size: 96,
        label_size: 24,
        policy: LoadPolicy::Strict,
    };
    let ds = PetsDataset::open(&fixture(), Split::Test, &opts).expect("loads");
    assert_eq!((ds.image_size(), ds.label_size()), (96, 24));
    let mut rng = ca_data::stream_rng(0, 0);
    let b = ds
        .batch(&[0, 1, 2], &Augment::default(), &mut rng, &Device::Cpu)
        .expect("batch");
    assert_eq!(b.images.dims(), &[3, 3, 96, 96]);
    assert_eq!(b.labels.dims(), &[3, 24, 24]);
}

fn epoch(ds: &PetsDataset, seed: u64, e: u64, augment: Augment) -> Result<Vec<Batch>, DataError> {
    ds.epoch_batches(8, seed, e, augment, &Device::Cpu)?
        .collect()
}

fn flat(b: &Batch) -> (Vec<f32>, Vec<u32>) {
    (
        b.images
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("f32"),
        b.labels
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("u32"),
    )
}

#[test]
fn epochs_are_seeded_and_complete() -> Result<(), DataError> {
    let ds = PetsDataset::open(&fixture(), Split::TrainVal, &LoadOptions::square(32))?;
    let aug = Augment {
        min_crop: 0.8,
        ..Augment::default()
    };
    let a = epoch(&ds, 7, 0, aug)?;
    let b = epoch(&ds, 7, 0, aug)?;
    let c = epoch(&ds, 7, 1, aug)?;
    assert_eq!(
        a.iter().map(|b| b.images.dims()[0]).collect::<Vec<_>>(),
        vec![8, 8, 8, 8, 4]
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(flat(x), flat(y));
    }
    assert_ne!(flat(&a[0]), flat(&c[0]));
    for batch in &a {
        let (images, labels) = flat(batch);
        assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(labels.iter().all(|&c| (c as usize) < NUM_CLASSES));
    }
    // Without augmentation, an epoch is exactly the cached samples in the
    // seeded order.
    let plain = epoch(&ds, 3, 2, Augment::none())?;
    let order = epoch_order(ds.len(), 3, 2);
    let (images, labels) = flat(&plain[0]);
    let first = ds.sample(order[0]);
    assert_eq!(&images[..first.image.len()], &first.image[..]);
    let first_labels: Vec<u32> = first.label.iter().map(|&c| u32::from(c)).collect();
    assert_eq!(&labels[..first_labels.len()], &first_labels[..]);
    Ok(())
}

#[test]
fn fixture_is_what_the_generator_makes() {
    // The committed trimaps equal freshly generated ones (seed 7, long side
    // 96): the fixture can be regenerated with the command in its README.
    for index in [0usize, 1, 47] {
        let s = scene(7, index, 96);
        let path = ca_data::trimap_path(&fixture(), &scene_name(s.species, index));
        let committed = load_label_map(&path).expect("committed trimap");
        let fresh: Vec<u8> = s
            .trimap
            .as_raw()
            .iter()
            .map(|&v| ca_data::trimap_to_class(u16::from(v)).expect("valid"))
            .collect();
        assert_eq!(
            committed.dimensions(),
            s.trimap.dimensions(),
            "{}",
            path.display()
        );
        assert_eq!(committed.as_raw(), &fresh, "{}", path.display());
    }
}

#[test]
fn fixture_has_a_small_validation_split() -> Result<(), DataError> {
    // 21 synth-cat and 15 synth-dog scenes: round(3.15) + round(2.25) = 5.
    let ds = PetsDataset::open(&fixture(), Split::TrainVal, &LoadOptions::square(8))?;
    let (train, val) = ds.split_validation(0.15)?;
    assert_eq!((train.len(), val.len()), (31, 5));
    Ok(())
}
