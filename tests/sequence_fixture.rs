//! The committed moving-sequence fixture (`fixtures/sequences/`) is what
//! `ca_data::sequence` makes from the bundled synthetic photos: a slow pan
//! of 8 frames at 32x32 (`pan.gif`) and its label maps in the class
//! palette (`pan-labels.gif`). The test regenerates both and compares the
//! bytes; `CA_UPDATE_FIXTURES=1` rewrites them. It also segments the
//! committed clip as a video.

use std::path::Path;

use ca_data::sequence::{make_sequence, Motion};
use ca_data::Split;
use ca_eval::protocols::EvalSet;
use image::{Delay, Frame, RgbImage};

const SIZE: usize = 32;

fn gif_bytes(frames: &[RgbImage]) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut bytes);
        enc.set_repeat(image::codecs::gif::Repeat::Infinite)
            .unwrap();
        for f in frames {
            let rgba = image::DynamicImage::ImageRgb8(f.clone()).to_rgba8();
            enc.encode_frame(Frame::from_parts(
                rgba,
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            ))
            .unwrap();
        }
    }
    bytes
}

#[test]
fn the_committed_sequence_is_what_the_generator_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = EvalSet::open(
        &root.join("fixtures/pets-synthetic"),
        Split::Test,
        SIZE,
        Some(2),
    )
    .unwrap();
    let photos: Vec<_> = (0..set.len())
        .map(|i| (set.images[i].clone(), set.labels[i].clone()))
        .collect();
    let motion = Motion::Pan {
        pixels_per_frame: 0.5,
        zoom: 1.25,
    };
    let seq = make_sequence(&photos, 0, SIZE, motion, 8).unwrap();
    let images: Vec<RgbImage> = seq
        .iter()
        .map(|(img, _)| {
            RgbImage::from_fn(SIZE as u32, SIZE as u32, |x, y| {
                let at = |c: usize| {
                    (img[c * SIZE * SIZE + y as usize * SIZE + x as usize] * 255.0).round() as u8
                };
                image::Rgb([at(0), at(1), at(2)])
            })
        })
        .collect();
    let labels: Vec<RgbImage> = seq
        .iter()
        .map(|(_, lab)| {
            let classes: Vec<u32> = lab.iter().map(|&c| u32::from(c)).collect();
            ca_viz::render::class_image(&classes, SIZE, SIZE)
        })
        .collect();
    let dir = root.join("fixtures/sequences");
    for (name, frames) in [("pan.gif", &images), ("pan-labels.gif", &labels)] {
        let bytes = gif_bytes(frames);
        let path = dir.join(name);
        if std::env::var("CA_UPDATE_FIXTURES").as_deref() == Ok("1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (CA_UPDATE_FIXTURES=1 makes it)", path.display()));
        assert!(
            committed == bytes,
            "{} differs from what the generator makes",
            path.display()
        );
    }

    // The committed clip segments as a video, one class map per frame.
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_cellseg"))
        .args([
            "segment",
            "fixtures/sequences/pan.gif",
            "--model",
            "models/pets48.safetensors",
        ])
        .args(["--steps", "8", "--steps-per-frame", "2", "--out"])
        .arg(out.path())
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read_dir(out.path().join("pan_classes"))
            .unwrap()
            .count(),
        8
    );
}
