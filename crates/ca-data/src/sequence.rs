//! Moving sequences with ground truth, made from labelled photos: the
//! same geometric transform applied to the image (bilinear) and to its
//! label map (nearest), frame after frame: pans, zooms, small rotations, a
//! brightness drift, and cuts to another photo. What a video colony is
//! measured on (issue 39): every frame has its exact labels.
//!
//! Images are `[3, S, S]` f32 in `[0, 1]`, label maps `[S, S]` u8,
//! row-major; samples outside the source repeat its nearest edge pixel.

use ca_core::ErrorShapes;

use crate::error::DataError;

/// How a sequence moves, per frame `f` (0-based).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motion {
    /// The view, zoomed in by `zoom` (at least 1, so that the pan stays
    /// inside the photo), slides right by `pixels_per_frame` from the
    /// left edge of the room the zoom leaves.
    Pan {
        /// Pixels of the output grid per frame.
        pixels_per_frame: f32,
        /// Zoom of the view (1.25: a window of 80% of the photo).
        zoom: f32,
    },
    /// The view zooms in from 1 by `rate` per frame (1.01: 1% a frame).
    Zoom {
        /// Scale factor per frame.
        rate: f32,
    },
    /// The photo turns about its centre by `degrees_per_frame`.
    Rotate {
        /// Degrees per frame, counter-clockwise.
        degrees_per_frame: f32,
    },
    /// The photo brightens by `per_frame` of its values each frame
    /// (clamped to 1); the labels stay.
    Brightness {
        /// Relative change per frame (0.02: 2%).
        per_frame: f32,
    },
    /// The photo stays still, and every `every` frames the sequence cuts
    /// to the next photo.
    Cut {
        /// Frames per photo (at least 1).
        every: usize,
    },
}

impl Motion {
    /// The standard set of motions the video measurements use, by name:
    /// `slow-pan` (0.25 px a frame), `fast-pan` (1 px), `zoom` (1% a
    /// frame), `rotate` (1 degree a frame), `brightness` (2% a frame) and
    /// `cut` (a new photo every 10 frames).
    pub fn standard() -> Vec<(&'static str, Motion)> {
        vec![
            (
                "slow-pan",
                Motion::Pan {
                    pixels_per_frame: 0.25,
                    zoom: 1.25,
                },
            ),
            (
                "fast-pan",
                Motion::Pan {
                    pixels_per_frame: 1.0,
                    zoom: 1.5,
                },
            ),
            ("zoom", Motion::Zoom { rate: 1.01 }),
            (
                "rotate",
                Motion::Rotate {
                    degrees_per_frame: 1.0,
                },
            ),
            ("brightness", Motion::Brightness { per_frame: 0.02 }),
            ("cut", Motion::Cut { every: 10 }),
        ]
    }

    /// Checks the values; the error names the motion's field.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |name: &'static str, v: String, why: &str| Err(DataError::invalid(name, v, why));
        match *self {
            Motion::Pan {
                pixels_per_frame,
                zoom,
            } => {
                if !(zoom >= 1.0 && zoom.is_finite()) {
                    return bad("zoom", zoom.to_string(), "must be finite and at least 1");
                }
                if !pixels_per_frame.is_finite() {
                    return bad(
                        "pixels_per_frame",
                        pixels_per_frame.to_string(),
                        "must be finite",
                    );
                }
            }
            Motion::Zoom { rate } if !(rate > 0.0 && rate.is_finite()) => {
                return bad("rate", rate.to_string(), "must be positive and finite")
            }
            Motion::Rotate { degrees_per_frame } if !degrees_per_frame.is_finite() => {
                return bad(
                    "degrees_per_frame",
                    degrees_per_frame.to_string(),
                    "must be finite",
                )
            }
            Motion::Brightness { per_frame } if !per_frame.is_finite() => {
                return bad("per_frame", per_frame.to_string(), "must be finite")
            }
            Motion::Cut { every: 0 } => return bad("every", "0".into(), "must be at least 1"),
            _ => {}
        }
        Ok(())
    }
}

/// One frame: the image `[3, S, S]` and its label map `[S, S]`.
pub type Frame = (Vec<f32>, Vec<u8>);

/// `frames` frames of `motion` starting from photo `start` of `photos`
/// (each `(image, labels)` of side `size`; a cut goes on to the next
/// photos, cyclically).
///
/// # Errors
///
/// A [`DataError`] naming the field of a motion that does not validate,
/// or when a photo's image or labels do not have `size x size` values.
pub fn make_sequence(
    photos: &[Frame],
    start: usize,
    size: usize,
    motion: Motion,
    frames: usize,
) -> Result<Vec<Frame>, DataError> {
    motion.validate()?;
    if photos.is_empty() {
        return Err(DataError::invalid("photos", 0, "need at least one photo"));
    }
    for (i, (img, lab)) in photos.iter().enumerate() {
        if img.len() != 3 * size * size || lab.len() != size * size {
            return Err(DataError::invalid(
                "photo",
                i,
                format!(
                    "has {} image and {} label values, not 3 x {size} x {size} and {size} x {size}",
                    img.len(),
                    lab.len()
                ),
            ));
        }
    }
    let centre = (size as f32 - 1.0) / 2.0;
    Ok((0..frames)
        .map(|f| {
            let ft = f as f32;
            let (photo, view) = match motion {
                Motion::Pan {
                    pixels_per_frame,
                    zoom,
                } => {
                    // The room the zoom leaves, in output pixels, from its
                    // left edge.
                    let room = size as f32 * (zoom - 1.0) / 2.0;
                    let shift = (-room + pixels_per_frame * ft).clamp(-room, room);
                    (start, View::new(zoom, 0.0, shift))
                }
                Motion::Zoom { rate } => (start, View::new(rate.powf(ft), 0.0, 0.0)),
                Motion::Rotate { degrees_per_frame } => {
                    (start, View::new(1.0, degrees_per_frame * ft, 0.0))
                }
                Motion::Brightness { .. } => (start, View::new(1.0, 0.0, 0.0)),
                Motion::Cut { every } => (start + f / every, View::new(1.0, 0.0, 0.0)),
            };
            let (img, lab) = &photos[photo % photos.len()];
            let mut frame = view.apply(img, lab, size, centre);
            if let Motion::Brightness { per_frame } = motion {
                let factor = 1.0 + per_frame * ft;
                for v in &mut frame.0 {
                    *v = (*v * factor).clamp(0.0, 1.0);
                }
            }
            frame
        })
        .collect())
}

/// An output pixel `p` shows the source at `centre + R(-angle) (p -
/// centre) / zoom + (shift, 0) / zoom`.
#[derive(Debug, Clone, Copy)]
struct View {
    zoom: f32,
    cos: f32,
    sin: f32,
    shift: f32,
}

impl View {
    fn new(zoom: f32, degrees: f32, shift: f32) -> Self {
        let r = degrees.to_radians();
        View {
            zoom,
            cos: r.cos(),
            sin: r.sin(),
            shift,
        }
    }

    /// The source position of output pixel `(x, y)`.
    fn source(&self, x: f32, y: f32, centre: f32) -> (f32, f32) {
        let (dx, dy) = (x - centre, y - centre);
        let rx = self.cos * dx + self.sin * dy;
        let ry = -self.sin * dx + self.cos * dy;
        (
            centre + (rx + self.shift) / self.zoom,
            centre + ry / self.zoom,
        )
    }

    fn apply(&self, img: &[f32], lab: &[u8], size: usize, centre: f32) -> Frame {
        let n = size * size;
        let clamp = |v: f32| v.clamp(0.0, size as f32 - 1.0);
        let mut out_img = vec![0f32; 3 * n];
        let mut out_lab = vec![0u8; n];
        for y in 0..size {
            for x in 0..size {
                let (sx, sy) = self.source(x as f32, y as f32, centre);
                let (sx, sy) = (clamp(sx), clamp(sy));
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                for c in 0..3 {
                    let p = &img[c * n..(c + 1) * n];
                    let top = p[y0 * size + x0] * (1.0 - fx) + p[y0 * size + x1] * fx;
                    let bottom = p[y1 * size + x0] * (1.0 - fx) + p[y1 * size + x1] * fx;
                    out_img[c * n + y * size + x] = top * (1.0 - fy) + bottom * fy;
                }
                let (nx, ny) = (sx.round() as usize, sy.round() as usize);
                out_lab[y * size + x] = lab[ny * size + nx];
            }
        }
        (out_img, out_lab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(size: usize, seed: u32) -> Frame {
        let n = size * size;
        let img = (0..3 * n)
            .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 1000) as f32 / 1000.0)
            .collect();
        let lab = (0..n)
            .map(|i| ((i / size + (i % size) / 3 + seed as usize) % 3) as u8)
            .collect();
        (img, lab)
    }

    #[test]
    fn a_still_view_is_the_photo_and_a_cut_moves_on() {
        let photos = [photo(8, 1), photo(8, 2)];
        let still = make_sequence(&photos, 0, 8, Motion::Cut { every: 2 }, 5).unwrap();
        assert_eq!(still.len(), 5);
        for (f, frame) in still.iter().enumerate() {
            let want = &photos[(f / 2) % 2];
            assert_eq!(frame.1, want.1, "frame {f}");
            let diff = frame
                .0
                .iter()
                .zip(&want.0)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-6, "frame {f}: {diff}");
        }
    }

    #[test]
    fn an_integer_pan_shifts_labels_and_stays_in_the_photo() {
        let p = photo(16, 3);
        let seq = make_sequence(
            std::slice::from_ref(&p),
            0,
            16,
            Motion::Pan {
                pixels_per_frame: 1.0,
                zoom: 1.0,
            },
            3,
        )
        .unwrap();
        // zoom 1 leaves no room: the view stays put.
        assert_eq!(seq[2].1, p.1);
        let seq = make_sequence(
            std::slice::from_ref(&p),
            0,
            16,
            Motion::Pan {
                pixels_per_frame: 2.0,
                zoom: 1.5,
            },
            6,
        )
        .unwrap();
        assert_ne!(seq[0].1, seq[3].1, "the view moves");
        assert!(seq.iter().all(|(_, l)| l.iter().all(|&c| c < 3)));
        assert!(seq
            .iter()
            .all(|(i, _)| i.iter().all(|&v| (0.0..=1.0).contains(&v))));
    }

    #[test]
    fn rotation_zoom_and_brightness_keep_shapes_and_ranges() {
        let photos = [photo(12, 5)];
        for (name, motion) in Motion::standard() {
            let seq = make_sequence(&photos, 0, 12, motion, 4).unwrap();
            assert_eq!(seq.len(), 4, "{name}");
            for (img, lab) in &seq {
                assert_eq!((img.len(), lab.len()), (3 * 144, 144), "{name}");
                assert!(img.iter().all(|&v| (0.0..=1.0).contains(&v)), "{name}");
            }
            if !name.ends_with("pan") {
                assert_eq!(
                    seq[0].1, photos[0].1,
                    "{name}: frame 0 is the photo's labels"
                );
            }
        }
        let bright =
            make_sequence(&photos, 0, 12, Motion::Brightness { per_frame: 0.5 }, 2).unwrap();
        let (a, b): (f32, f32) = (bright[0].0.iter().sum(), bright[1].0.iter().sum());
        assert!(b > a);
    }

    #[test]
    fn bad_motions_and_photos_are_refused_by_name() {
        let photos = [photo(8, 1)];
        for (motion, field) in [
            (Motion::Cut { every: 0 }, "every"),
            (
                Motion::Pan {
                    pixels_per_frame: 1.0,
                    zoom: 0.5,
                },
                "zoom",
            ),
            (Motion::Zoom { rate: 0.0 }, "rate"),
        ] {
            let e = make_sequence(&photos, 0, 8, motion, 2)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let e = make_sequence(&photos, 0, 9, Motion::Cut { every: 1 }, 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("photo") && e.contains("9"), "{e}");
        assert!(make_sequence(&[], 0, 8, Motion::Cut { every: 1 }, 1).is_err());
    }
}
