//! `segment` (`ca_viz::segment`) on the bundled synthetic fixture with a
//! tiny untrained rule at 16x16 and a high-resolution model with an 8x8
//! state: the maps at the photo's size, the evolution GIF, the native grid.

use std::path::{Path, PathBuf};

use ca_core::{CellConfig, CellRule};
use ca_hires::HiresModel;
use ca_viz::segment::{segment, write_outputs, OutputPaths, SegmentOptions};
use candle_core::Device;
use image::AnimationDecoder;

const SIZE: usize = 16;

fn rule() -> CellRule {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        ..CellConfig::default()
    };
    CellRule::new(config, 3, &Device::Cpu).unwrap()
}

fn hires_model() -> HiresModel {
    let config = CellConfig {
        state_channels: 8,
        hidden_channels: 16,
        env_channels: 8,
        ..CellConfig::default()
    };
    HiresModel::new(config, 1, 3, &Device::Cpu).unwrap()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pets-synthetic")
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ca-viz-segment-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn image_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_photo() -> (PathBuf, image::RgbImage) {
    let dir = fixture().join("images");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let path = names[0].clone();
    let photo = ca_data::load_rgb(&path).unwrap();
    (path, photo)
}

#[test]
fn segment_writes_maps_at_photo_size_and_a_two_row_gif() {
    let (path, photo) = fixture_photo();
    let options = SegmentOptions {
        size: SIZE,
        native: false,
        steps: 5,
        seed: 0,
        frame_every: Some(2),
        frame_scale: 2,
        ensemble: 1,
        until_stable: None,
    };
    let seg = segment(&rule(), &photo, &options).unwrap();
    assert_eq!(seg.grid, (SIZE, SIZE));
    let steps: Vec<usize> = seg.frames.iter().map(|f| f.0).collect();
    assert_eq!(steps, [1, 2, 4, 5]);
    let dir = out_dir("segment");
    let paths = OutputPaths::in_dir(&dir, &path, Some(dir.join("evolution.gif")));
    write_outputs(&seg, &photo, &paths, 50).unwrap();
    assert_eq!(image_size(&paths.classes), photo.dimensions());
    assert_eq!(image_size(&paths.overlay), photo.dimensions());
    let file = std::fs::File::open(dir.join("evolution.gif")).unwrap();
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file)).unwrap();
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 4);
    let side = 2 * SIZE as u32;
    assert_eq!(frames[0].buffer().dimensions(), (side, 2 * side));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segment_native_runs_on_the_photo_grid() {
    let (_, photo) = fixture_photo();
    let small = image::imageops::resize(&photo, 20, 12, image::imageops::FilterType::Triangle);
    let options = SegmentOptions {
        size: SIZE,
        native: true,
        steps: 2,
        seed: 0,
        frame_every: None,
        frame_scale: 1,
        ensemble: 1,
        until_stable: None,
    };
    let seg = segment(&rule(), &small, &options).unwrap();
    assert_eq!(seg.grid, (20, 12));
    assert_eq!(seg.classes.len(), 240);
    assert!(seg.frames.is_empty());
    let f = seg.class_fractions(3);
    assert!((f.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn segment_runs_a_high_resolution_model_on_a_smaller_state() {
    let (_, photo) = fixture_photo();
    let model = hires_model();
    let options = SegmentOptions {
        size: SIZE,
        native: false,
        steps: 3,
        seed: 0,
        frame_every: Some(1),
        frame_scale: 2,
        ensemble: 1,
        until_stable: None,
    };
    let seg = segment(&model, &photo, &options).unwrap();
    assert_eq!((seg.grid, seg.state_grid), ((16, 16), (8, 8)));
    assert_eq!(seg.classes.len(), 256);
    // Both rows of a frame are at the pixel grid.
    let side = 2 * SIZE as u32;
    assert_eq!(seg.frames[0].1.dimensions(), (side, 2 * side));
    let small = image::imageops::resize(&photo, 20, 13, image::imageops::FilterType::Triangle);
    let native = SegmentOptions {
        native: true,
        frame_every: None,
        ..options
    };
    let seg = segment(&model, &small, &native).unwrap();
    assert_eq!((seg.grid, seg.state_grid), ((20, 13), (10, 7)));
    assert_eq!(seg.classes.len(), 260);
}

#[test]
fn an_ensemble_segments_with_its_spread_and_writes_it() {
    let (path, photo) = fixture_photo();
    let one = SegmentOptions {
        steps: 4,
        ..SegmentOptions::new(SIZE)
    };
    let plain = segment(&rule(), &photo, &one).unwrap();
    assert!(plain.variance.is_none());
    let four = SegmentOptions { ensemble: 4, ..one };
    let seg = segment(&rule(), &photo, &four).unwrap();
    assert_eq!(seg.grid, (SIZE, SIZE));
    assert_eq!(seg.classes.len(), SIZE * SIZE);
    let variance = seg.variance.as_ref().unwrap();
    assert_eq!(variance.len(), SIZE * SIZE);
    assert!(variance.iter().all(|v| (0.0..=0.25).contains(v)));
    assert!(variance.iter().any(|&v| v > 0.0));
    let dir = out_dir("ensemble");
    let paths = OutputPaths::in_dir(&dir, &path, None);
    write_outputs(&seg, &photo, &paths, 50).unwrap();
    assert_eq!(image_size(&paths.uncertainty), photo.dimensions());
    // One colony writes no uncertainty picture.
    std::fs::remove_file(&paths.uncertainty).unwrap();
    write_outputs(&plain, &photo, &paths, 50).unwrap();
    assert!(!paths.uncertainty.exists());
    let _ = std::fs::remove_dir_all(&dir);
    // Frames show one colony.
    let gif = SegmentOptions {
        frame_every: Some(1),
        ..four
    };
    let err = segment(&rule(), &photo, &gif).err().unwrap().to_string();
    assert!(err.contains("ensemble") && err.contains("GIF"), "{err}");
}

#[test]
fn until_stable_reports_its_steps_and_refuses_frames() {
    let (_, photo) = fixture_photo();
    let settling = ca_core::Settling {
        max_change: 0.05,
        window: 2,
        min_steps: 3,
        max_steps: 12,
        smoothing: 0.0,
    };
    let options = SegmentOptions {
        until_stable: Some(settling),
        ..SegmentOptions::new(SIZE)
    };
    let seg = segment(&rule(), &photo, &options).unwrap();
    let (steps, settled) = seg.steps;
    assert!((3..=12).contains(&steps), "{steps}");
    assert!(settled || steps == 12);
    assert_eq!(seg.classes.len(), SIZE * SIZE);
    let plain = segment(&rule(), &photo, &SegmentOptions::new(SIZE)).unwrap();
    assert_eq!(plain.steps, (ca_core::DEFAULT_STEPS, true));
    let gif = SegmentOptions {
        frame_every: Some(1),
        ..options
    };
    let err = segment(&rule(), &photo, &gif).err().unwrap().to_string();
    assert!(err.contains("until_stable"), "{err}");
}

/// A colony carried through a still "video" is the plain colony stepping
/// on: frame k's map is the segmenter's after T + k K steps; a cold run
/// gives every frame the plain map.
#[test]
fn a_carried_colony_on_a_still_video_steps_on() {
    use ca_viz::video::{segment_video, VideoOptions};
    let (_, photo) = fixture_photo();
    let frames = vec![photo.clone(); 3];
    let options = VideoOptions {
        steps: 4,
        steps_per_frame: 3,
        ..VideoOptions::new(SIZE)
    };
    let mut seen = Vec::new();
    let maps = segment_video(&rule(), &frames, &options, |k| seen.push(k)).unwrap();
    assert_eq!(seen, [0, 1, 2]);
    let image = candle_core::Tensor::from_vec(
        ca_data::resize::image_to_chw(&photo, SIZE),
        (1, 3, SIZE, SIZE),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let rule = rule();
    for (k, map) in maps.iter().enumerate() {
        let plain = ca_core::Segmenter::new(&rule)
            .with_steps(4 + 3 * k)
            .segment_batch(&image)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<u32>()
            .unwrap();
        assert_eq!(map, &plain, "frame {k}");
    }
    let cold = VideoOptions {
        cold: true,
        ..options
    };
    let maps = segment_video(&rule, &frames, &cold, |_| {}).unwrap();
    assert!(maps.iter().all(|m| m == &maps[0]));
    let bad = VideoOptions {
        steps_per_frame: 0,
        ..options
    };
    let err = segment_video(&rule, &frames, &bad, |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("steps_per_frame"), "{err}");
    assert!(segment_video(&rule, &[], &options, |_| {}).is_err());
}
