//! Property tests of resizing and augmentation: shapes are right, labels stay
//! class ids, flipping twice is the identity.

use ca_data::augment::{crop_resize_bilinear, crop_resize_nearest, flip_horizontal};
use ca_data::resize::{image_to_chw, labels_nearest};
use ca_data::{Augment, CropBox, LoadOptions, PetsDataset, Sample, NUM_CLASSES};
use candle_core::Device;
use image::{GrayImage, Luma, Rgb, RgbImage};
use proptest::prelude::*;
use rand::SeedableRng;

fn label_map() -> impl Strategy<Value = GrayImage> {
    (1u32..40, 1u32..40).prop_flat_map(|(w, h)| {
        proptest::collection::vec(0u8..3, (w * h) as usize)
            .prop_map(move |v| GrayImage::from_raw(w, h, v).expect("sized"))
    })
}

fn crop_box() -> impl Strategy<Value = CropBox> {
    (0.05f32..=1.0, 0.0f32..=1.0, 0.0f32..=1.0).prop_map(|(side, fx, fy)| CropBox {
        x0: fx * (1.0 - side),
        y0: fy * (1.0 - side),
        side,
    })
}

proptest! {
    // A fixed generator seed: CI runs the same cases every time.
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED_CE11),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn label_resize_keeps_shape_and_classes(labels in label_map(), size in 1usize..64) {
        let out = labels_nearest(&labels, size);
        prop_assert_eq!(out.len(), size * size);
        prop_assert!(out.iter().all(|&c| usize::from(c) < NUM_CLASSES));
        // Every output value is one of the input's values.
        prop_assert!(out.iter().all(|c| labels.as_raw().contains(c)));
    }

    #[test]
    fn image_resize_keeps_shape_and_range(w in 1u32..50, h in 1u32..50, size in 1usize..64, seed in any::<u64>()) {
        let img = RgbImage::from_fn(w, h, |x, y| {
            let v = seed.wrapping_mul(u64::from(x * 31 + y * 17 + 1)) >> 40;
            Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
        });
        let out = image_to_chw(&img, size);
        prop_assert_eq!(out.len(), 3 * size * size);
        prop_assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn crop_resize_keeps_shape_and_classes(labels in label_map(), crop in crop_box(), out in 1usize..48) {
        let size = labels.width() as usize;
        let square = labels_nearest(&labels, size);
        let lab = crop_resize_nearest(&square, size, crop, out);
        prop_assert_eq!(lab.len(), out * out);
        prop_assert!(lab.iter().all(|&c| usize::from(c) < NUM_CLASSES));
        let img: Vec<f32> = square.iter().chain(&square).chain(&square).map(|&c| f32::from(c) / 2.0).collect();
        let res = crop_resize_bilinear(&img, 3, size, crop, out);
        prop_assert_eq!(res.len(), 3 * out * out);
        prop_assert!(res.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn flip_is_an_involution(planes in 1usize..4, h in 0usize..12, w in 0usize..12, seed in any::<u32>()) {
        let orig: Vec<u32> = (0..planes * h * w).map(|i| seed.wrapping_mul(i as u32 + 1)).collect();
        let mut v = orig.clone();
        flip_horizontal(&mut v, planes, h, w);
        if w > 1 && h > 0 {
            // The first pixel of the first row moved to its end.
            prop_assert_eq!(v[w - 1], orig[0]);
        }
        flip_horizontal(&mut v, planes, h, w);
        prop_assert_eq!(v, orig);
    }

    #[test]
    fn batches_have_the_right_shapes(n in 1usize..6, s in 1usize..10, l in 1usize..10, seed in any::<u64>(), min_crop in 0.5f32..=1.0) {
        let samples = (0..n).map(|i| Sample {
            name: format!("s{i}"),
            image: vec![0.5; 3 * s * s],
            label: (0..l * l).map(|j| ((i + j) % 3) as u8).collect(),
        }).collect();
        let opts = LoadOptions { image_size: s, label_size: l, ..LoadOptions::default() };
        let ds = PetsDataset::from_samples(samples, &opts).expect("valid");
        let aug = Augment { min_crop, rotate90: true, jitter: 0.5, ..Augment::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let indices: Vec<usize> = (0..n).rev().collect();
        let b = ds.batch(&indices, &aug, &mut rng, &Device::Cpu).expect("batch");
        prop_assert_eq!(b.images.dims(), &[n, 3, s, s]);
        prop_assert_eq!(b.labels.dims(), &[n, l, l]);
        let labels: Vec<u32> = b.labels.flatten_all().expect("flat").to_vec1().expect("u32");
        prop_assert!(labels.iter().all(|&c| (c as usize) < NUM_CLASSES));
    }
}

#[test]
fn flip_moves_labels_with_images() {
    // A left-half-object sample: after a flip in a batch, the object is on
    // the right in both the image and the labels.
    let s = 4;
    let image: Vec<f32> = (0..3 * s * s)
        .map(|i| if i % s < s / 2 { 1.0 } else { 0.0 })
        .collect();
    let label: Vec<u8> = (0..s * s).map(|i| u8::from(i % s < s / 2)).collect();
    let ds = PetsDataset::from_samples(
        vec![Sample {
            name: "half".into(),
            image,
            label,
        }],
        &LoadOptions::square(s),
    )
    .expect("valid");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let aug = Augment::default();
    let mut flipped = 0;
    for _ in 0..32 {
        let b = ds.batch(&[0], &aug, &mut rng, &Device::Cpu).expect("batch");
        let img: Vec<f32> = b
            .images
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("f32");
        let lab: Vec<u32> = b
            .labels
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("u32");
        for (i, &c) in lab.iter().enumerate() {
            assert_eq!(img[i] == 1.0, c == 1, "pixel {i}");
        }
        flipped += usize::from(lab[0] == 0);
    }
    assert!(
        flipped > 4 && flipped < 28,
        "flip probability ~1/2, got {flipped}/32"
    );
}

#[test]
fn label_resize_of_a_known_map() {
    let labels = GrayImage::from_fn(6, 3, |x, _| Luma([(x / 2) as u8]));
    assert_eq!(labels_nearest(&labels, 3), vec![0, 1, 2, 0, 1, 2, 0, 1, 2]);
}
