//! Tests on the real data in `shared/data/` beside the repository: the
//! downscaled Oxford-IIIT Pet subset and the broken files of the release.
//! When the folder is absent they print that they were skipped, except under
//! `CI=true`, where absence is a failure.

mod common;

use std::path::{Path, PathBuf};

use ca_data::{
    load_label_map, load_rgb, read_split, DataError, LoadOptions, LoadPolicy, PetsDataset, Split,
    BACKGROUND, NUM_CLASSES,
};
use common::Layout;

fn shared_data(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name);
    if path.is_dir() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} not found, and CI=true requires it", path.display());
    }
    println!("skipped: {} not found", path.display());
    None
}

#[test]
fn real_splits_load_completely() {
    let Some(root) = shared_data("oxford-pets-160") else {
        return;
    };
    for (split, count) in [(Split::TrainVal, 300), (Split::Test, 102)] {
        let ds = PetsDataset::open(&root, split, &LoadOptions::square(48)).expect("strict load");
        assert_eq!(ds.len(), count, "{split:?}");
        assert!(ds.report().skipped.is_empty(), "{}", ds.report());
        for s in ds.samples() {
            assert_eq!(s.image.len(), 3 * 48 * 48);
            assert_eq!(s.label.len(), 48 * 48);
            assert!(
                s.image.iter().all(|v| (0.0..=1.0).contains(v)),
                "{}",
                s.name
            );
            assert!(
                s.label.iter().all(|&c| usize::from(c) < NUM_CLASSES),
                "{}",
                s.name
            );
        }
    }
}

#[test]
fn real_trainval_class_fractions_at_native_size() {
    let Some(root) = shared_data("oxford-pets-160") else {
        return;
    };
    let (entries, _) =
        read_split(&root.join("annotations/trainval.txt"), LoadPolicy::Strict).expect("split");
    assert_eq!(entries.len(), 300);
    let mut counts = [0u64; NUM_CLASSES];
    for e in &entries {
        let labels = load_label_map(&ca_data::trimap_path(&root, &e.name)).expect("trimap");
        for &c in labels.as_raw() {
            counts[usize::from(c)] += 1;
        }
    }
    let total: u64 = counts.iter().sum();
    let frac = |c: u8| counts[usize::from(c)] as f64 / total as f64;
    let (object, background, boundary) = (
        frac(ca_data::OBJECT),
        frac(BACKGROUND),
        frac(ca_data::BOUNDARY),
    );
    println!("object {object:.3}, background {background:.3}, boundary {boundary:.3}");
    assert!((object - 0.29).abs() < 0.02, "object {object}");
    assert!((background - 0.59).abs() < 0.02, "background {background}");
    assert!((boundary - 0.12).abs() < 0.02, "boundary {boundary}");
}

/// Builds a layout in a temp dir from the bad-inputs folder's files (copies),
/// with a split file listing `names`.
fn bad_inputs_layout(src: &Path, names: &[&str]) -> Layout {
    let layout = Layout::new();
    for dir in ["images", "annotations/trimaps"] {
        for entry in std::fs::read_dir(src.join(dir)).expect("read bad-inputs dir") {
            let entry = entry.expect("dir entry");
            std::fs::copy(
                entry.path(),
                layout.root().join(dir).join(entry.file_name()),
            )
            .expect("copy");
        }
    }
    let lines: String = names.iter().map(|n| format!("{n} 1 1 1\n")).collect();
    layout.split(&lines);
    layout
}

#[test]
fn release_bad_inputs_behave_as_documented() {
    let Some(src) = shared_data("oxford-pets-bad-inputs") else {
        return;
    };
    // The PNG-in-.jpg decodes by content, at its real size.
    let png_in_jpg = load_rgb(&src.join("images/Abyssinian_5.jpg")).expect("PNG in .jpg");
    assert_eq!(png_in_jpg.dimensions(), (200, 150));
    // The GIF-in-.jpg decodes too.
    let gif_in_jpg = load_rgb(&src.join("images/Abyssinian_34.jpg")).expect("GIF in .jpg");
    assert_eq!(gif_in_jpg.dimensions(), (250, 202));
    // The .mat file is not an image: an error, not a panic.
    let mat = load_rgb(&src.join("images/Abyssinian_100.mat")).expect_err(".mat");
    assert!(matches!(mat, DataError::Decode { .. }), "{mat}");

    // Both listed pairs load strictly; the unlisted .mat is never read.
    let layout = bad_inputs_layout(&src, &["Abyssinian_5", "Abyssinian_34"]);
    let ds = PetsDataset::open(layout.root(), Split::TrainVal, &LoadOptions::square(32))
        .expect("strict load of the release's odd files");
    assert_eq!(ds.len(), 2);
    assert!(ds.report().skipped.is_empty());
    let [five, thirty_four] = ds.samples() else {
        panic!("two samples")
    };
    assert_eq!(five.name, "Abyssinian_5");
    assert!(
        five.label.iter().any(|&c| c != BACKGROUND),
        "Abyssinian_5 has a pet"
    );
    // The all-background trimap is a valid, degenerate sample.
    assert_eq!(thirty_four.name, "Abyssinian_34");
    assert!(thirty_four.label.iter().all(|&c| c == BACKGROUND));

    // Listing the .mat's stem looks for Abyssinian_100.jpg, which is absent.
    let layout = bad_inputs_layout(&src, &["Abyssinian_5", "Abyssinian_100"]);
    let err = PetsDataset::open(layout.root(), Split::TrainVal, &LoadOptions::square(32))
        .expect_err("no Abyssinian_100.jpg");
    assert!(err.to_string().contains("Abyssinian_100.jpg"), "{err}");
    let lenient = LoadOptions {
        policy: LoadPolicy::Lenient,
        ..LoadOptions::square(32)
    };
    let ds = PetsDataset::open(layout.root(), Split::TrainVal, &lenient).expect("lenient");
    assert_eq!((ds.len(), ds.report().skipped.len()), (1, 1));
}

#[test]
fn real_32_breed_validation_split() {
    let Some(root) = shared_data("oxford-pets-160-32breeds") else {
        return;
    };
    let ds = PetsDataset::open(&root, Split::TrainVal, &LoadOptions::square(8)).expect("load");
    let (train, val) = ds.split_validation(0.15).expect("split");
    println!(
        "{} trainval: {} training, {} validation",
        ds.len(),
        train.len(),
        val.len()
    );
    assert!(
        (40..=65).contains(&val.len()),
        "{} validation samples",
        val.len()
    );
    assert_eq!(train.len() + val.len(), ds.len());
    let train_names: std::collections::HashSet<&str> =
        train.samples().iter().map(|s| s.name.as_str()).collect();
    for s in val.samples() {
        assert!(
            !train_names.contains(s.name.as_str()),
            "{} in both parts",
            s.name
        );
    }
}
