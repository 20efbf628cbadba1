//! Seeded synthetic scenes in the Oxford-IIIT Pet layout: a blobby,
//! animal-like object (body ellipse, head, ears, legs, tail, with a
//! noise-perturbed outline and fur-like oriented strokes) on a cluttered,
//! textured background, with a trimap whose boundary band (value 3) straddles
//! the object's edge.
//!
//! The same `(seed, index)` always gives the same scene, whatever the count.

use ca_core::ErrorShapes;
use std::f32::consts::PI;
use std::fs;
use std::io::BufWriter;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage};
use rand::Rng;

use crate::dataset::{image_path, trimap_path};
use crate::error::DataError;
use crate::labels::{trimap_to_class, NUM_CLASSES, TRIMAP_BACKGROUND, TRIMAP_BOUNDARY, TRIMAP_PET};
use crate::rng::stream_rng;

/// Species of a synthetic animal, as in the release (1 cat, 2 dog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Species {
    /// Species id 1 (`synth-cat-NNN` names).
    Cat,
    /// Species id 2 (`synth-dog-NNN` names).
    Dog,
}

/// One generated scene.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The RGB image.
    pub image: RgbImage,
    /// The trimap, same size, raw release values: 1 pet, 2 background,
    /// 3 boundary.
    pub trimap: GrayImage,
    /// The animal's species.
    pub species: Species,
}

/// How to generate a synthetic dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Number of image/trimap pairs (default 48).
    pub count: usize,
    /// Seed of every random draw (default 7).
    pub seed: u64,
    /// Longer image side in pixels (default 96); the shorter side is 62% to
    /// 100% of it.
    pub long_side: u32,
    /// Fraction of the pairs listed in `test.txt` (default 0.25); the rest go
    /// to `trainval.txt`.
    pub test_fraction: f32,
    /// JPEG quality 1..=100 (default 80).
    pub jpeg_quality: u8,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            count: 48,
            seed: 7,
            long_side: 96,
            test_fraction: 0.25,
            jpeg_quality: 80,
        }
    }
}

impl SynthOptions {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), DataError> {
        let invalid = |name, value: String, reason: &str| {
            Err(DataError::InvalidOption(ca_core::InvalidValue {
                name,
                value,
                reason: reason.to_string(),
            }))
        };
        if self.count == 0 {
            return invalid("count", "0".into(), "must be at least 1");
        }
        if !(16..=4096).contains(&self.long_side) {
            return invalid(
                "long_side",
                self.long_side.to_string(),
                "must be in 16..=4096",
            );
        }
        if !(0.0..=1.0).contains(&self.test_fraction) {
            return invalid(
                "test_fraction",
                self.test_fraction.to_string(),
                "must be in [0, 1]",
            );
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return invalid(
                "jpeg_quality",
                self.jpeg_quality.to_string(),
                "must be in 1..=100",
            );
        }
        Ok(())
    }
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// Pairs listed in `trainval.txt`.
    pub trainval: usize,
    /// Pairs listed in `test.txt`.
    pub test: usize,
    /// Pixel fractions of the model classes over all trimaps, indexed by
    /// class id (background, object, boundary).
    pub class_fractions: [f64; NUM_CLASSES],
    /// Total bytes of the image and trimap files.
    pub bytes: u64,
}

/// The sample name of scene `index`: `synth-cat-001`, `synth-dog-002`, ...
/// (1-based, zero-padded to at least three digits).
///
/// The names are all lower case and hyphenated, so they cannot be mistaken
/// for the release's `Breed_Name_123` files (which capitalise cat breeds);
/// the species is given by the split file's SPECIES column.
pub fn scene_name(species: Species, index: usize) -> String {
    let species = match species {
        Species::Cat => "cat",
        Species::Dog => "dog",
    };
    format!("synth-{species}-{:03}", index + 1)
}

/// Generates scene `index` of seed `seed` with the given longer side.
pub fn scene(seed: u64, index: usize, long_side: u32) -> Scene {
    let mut rng = stream_rng(seed, index as u64);
    generate(&mut rng, long_side)
}

/// Writes `options.count` scenes under `out` in the Oxford-IIIT Pet layout:
/// `images/NAME.jpg`, `annotations/trimaps/NAME.png` (8-bit grayscale),
/// `annotations/trainval.txt` and `annotations/test.txt`
/// (`NAME CLASSID SPECIES BREEDID`, class id 1 for cats and 2 for dogs).
/// Existing files of the same names are overwritten.
pub fn write_dataset(out: &Path, options: &SynthOptions) -> Result<SynthSummary, DataError> {
    options.validate()?;
    for dir in [out.join("images"), out.join("annotations").join("trimaps")] {
        fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    }
    let test = ((options.count as f32 * options.test_fraction).round() as usize).min(options.count);
    let trainval = options.count - test;
    let mut lists = [String::new(), String::new()];
    for (list, name) in lists.iter_mut().zip(["trainval", "test"]) {
        list.push_str(&format!(
            "# synthetic {name} scenes, seed {}: NAME CLASSID SPECIES BREEDID\n",
            options.seed
        ));
    }
    let mut counts = [0u64; NUM_CLASSES];
    let mut bytes = 0;
    for index in 0..options.count {
        let scene = scene(options.seed, index, options.long_side);
        let name = scene_name(scene.species, index);
        for &v in scene.trimap.as_raw() {
            if let Some(c) = trimap_to_class(u16::from(v)) {
                counts[usize::from(c)] += 1;
            }
        }
        let img_file = image_path(out, &name);
        let file = fs::File::create(&img_file).map_err(|e| DataError::io(&img_file, e))?;
        JpegEncoder::new_with_quality(BufWriter::new(file), options.jpeg_quality)
            .encode_image(&scene.image)
            .map_err(|e| DataError::Encode {
                path: img_file.clone(),
                reason: e.to_string(),
            })?;
        let tri_file = trimap_path(out, &name);
        scene
            .trimap
            .save_with_format(&tri_file, ImageFormat::Png)
            .map_err(|e| DataError::Encode {
                path: tri_file.clone(),
                reason: e.to_string(),
            })?;
        for f in [&img_file, &tri_file] {
            bytes += fs::metadata(f).map_err(|e| DataError::io(f, e))?.len();
        }
        let species_id = match scene.species {
            Species::Cat => 1,
            Species::Dog => 2,
        };
        let list = &mut lists[usize::from(index >= trainval)];
        list.push_str(&format!("{name} {species_id} {species_id} 1\n"));
    }
    for (list, split) in lists.iter().zip(["trainval.txt", "test.txt"]) {
        let path = out.join("annotations").join(split);
        fs::write(&path, list).map_err(|e| DataError::io(&path, e))?;
    }
    let total = counts.iter().sum::<u64>().max(1) as f64;
    Ok(SynthSummary {
        trainval,
        test,
        class_fractions: counts.map(|c| c as f64 / total),
        bytes,
    })
}

/// Smooth value noise: random values on a coarse grid, interpolated with a
/// smoothstep; roughly in [-1, 1].
struct ValueNoise {
    grid: Vec<f32>,
    cols: usize,
    cell: f32,
}

impl ValueNoise {
    fn new<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32, cell: f32) -> Self {
        let cols = (w as f32 / cell) as usize + 2;
        let rows = (h as f32 / cell) as usize + 2;
        let grid = (0..cols * rows)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        ValueNoise { grid, cols, cell }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let (gx, gy) = ((x / self.cell).max(0.0), (y / self.cell).max(0.0));
        let (ix, iy) = (gx as usize, gy as usize);
        let rows = self.grid.len() / self.cols;
        let (ix, iy) = (ix.min(self.cols - 2), iy.min(rows - 2));
        let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
        let (fx, fy) = (
            smooth((gx - ix as f32).min(1.0)),
            smooth((gy - iy as f32).min(1.0)),
        );
        let g = |i: usize, j: usize| self.grid[j * self.cols + i];
        let top = g(ix, iy) + (g(ix + 1, iy) - g(ix, iy)) * fx;
        let bottom = g(ix, iy + 1) + (g(ix + 1, iy + 1) - g(ix, iy + 1)) * fx;
        top + (bottom - top) * fy
    }
}

/// Two octaves of value noise.
struct Fbm(ValueNoise, ValueNoise);

impl Fbm {
    fn new<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32, cell: f32) -> Self {
        Fbm(
            ValueNoise::new(rng, w, h, cell),
            ValueNoise::new(rng, w, h, cell / 2.5),
        )
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        0.7 * self.0.at(x, y) + 0.3 * self.1.at(x, y)
    }
}

type Colour = [f32; 3];

/// A random colour, pulled a little towards grey so scenes look less
/// synthetic.
fn random_colour<R: Rng + ?Sized>(rng: &mut R) -> Colour {
    let grey = rng.random_range(0.2..0.8);
    mix([rng.random(), rng.random(), rng.random()], [grey; 3], 0.35)
}

fn mix(a: Colour, b: Colour, t: f32) -> Colour {
    [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t)
}

fn scale(a: Colour, s: f32) -> Colour {
    a.map(|v| v * s)
}

/// Fur colours: ginger, brown, grey, black, cream, white-ish, fawn.
const FUR: [Colour; 7] = [
    [0.80, 0.45, 0.18],
    [0.45, 0.28, 0.15],
    [0.55, 0.55, 0.55],
    [0.12, 0.11, 0.10],
    [0.90, 0.82, 0.62],
    [0.92, 0.90, 0.86],
    [0.72, 0.58, 0.40],
];

/// A shape part of the animal, as a signed distance in pixels.
enum Part {
    /// Ellipse: centre, semi-axes, rotation.
    Ellipse {
        c: (f32, f32),
        a: f32,
        b: f32,
        angle: f32,
    },
    /// Segment with a radius (a capsule).
    Capsule {
        p: (f32, f32),
        q: (f32, f32),
        r: f32,
    },
}

impl Part {
    fn distance(&self, x: f32, y: f32) -> f32 {
        match *self {
            Part::Ellipse { c, a, b, angle } => {
                let (dx, dy) = (x - c.0, y - c.1);
                let (s, co) = angle.sin_cos();
                let (u, v) = (dx * co + dy * s, -dx * s + dy * co);
                let k = ((u / a).powi(2) + (v / b).powi(2)).sqrt();
                (k - 1.0) * a.min(b)
            }
            Part::Capsule { p, q, r } => {
                let (px, py) = (x - p.0, y - p.1);
                let (qx, qy) = (q.0 - p.0, q.1 - p.1);
                let t = ((px * qx + py * qy) / (qx * qx + qy * qy).max(1e-6)).clamp(0.0, 1.0);
                ((px - qx * t).powi(2) + (py - qy * t).powi(2)).sqrt() - r
            }
        }
    }
}

/// Polynomial smooth minimum: joins parts with a fillet of about `k` px.
fn smooth_min(a: f32, b: f32, k: f32) -> f32 {
    let h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0);
    b + (a - b) * h - k * h * (1.0 - h)
}

/// The parts of one animal and the direction its fur runs.
struct Animal {
    parts: Vec<Part>,
    axis: f32,
    centre: (f32, f32),
    size: f32,
    eyes: [(f32, f32); 2],
}

fn animal<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32) -> Animal {
    let (wf, hf) = (w as f32, h as f32);
    let m = wf.min(hf);
    let a = m * rng.random_range(0.31..0.40);
    let b = a * rng.random_range(0.55..0.72);
    let sitting = rng.random_bool(0.3);
    let facing: f32 = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let angle = if sitting {
        PI / 2.0 + rng.random_range(-0.25..0.25)
    } else {
        rng.random_range(-0.3..0.3)
    };
    let c = (
        wf / 2.0 + rng.random_range(-0.1..0.1) * wf,
        hf / 2.0 + rng.random_range(-0.02..0.12) * hf,
    );
    let (s, co) = angle.sin_cos();
    // Unit vectors along the body (towards the head when not sitting) and
    // "up" in image space.
    let along = if sitting {
        (0.0, -1.0)
    } else {
        (co * facing, s * facing)
    };
    let at = |t: f32, up: f32| (c.0 + along.0 * t, c.1 + along.1 * t - up);
    let rh = b * rng.random_range(0.8..1.05);
    let head = if sitting {
        at(a * 0.95, 0.0)
    } else {
        at(a * 0.85, b * 0.7)
    };
    let mut parts = vec![
        Part::Ellipse { c, a, b, angle },
        Part::Ellipse {
            c: head,
            a: rh * rng.random_range(1.0..1.2),
            b: rh,
            angle: 0.0,
        },
    ];
    parts.extend(ears(rng, head, rh));
    parts.extend(legs(rng, c, (a, b), co, sitting));
    // Tail from the back end.
    let back = if sitting {
        (c.0 - facing * b * 0.6, c.1 + a * 0.6)
    } else {
        at(-a * 0.9, 0.0)
    };
    let tail_end = (
        back.0 - facing * a * rng.random_range(0.3..0.7),
        back.1 - a * rng.random_range(-0.3..0.6),
    );
    parts.push(Part::Capsule {
        p: back,
        q: tail_end,
        r: b * rng.random_range(0.1..0.18),
    });
    let eye_dx = rh * 0.35;
    let eye_y = head.1 - rh * 0.1;
    let eye_shift = if sitting { 0.0 } else { facing * rh * 0.2 };
    Animal {
        parts,
        axis: if sitting { PI / 2.0 } else { angle },
        centre: c,
        size: b,
        eyes: [
            (head.0 + eye_shift - eye_dx, eye_y),
            (head.0 + eye_shift + eye_dx, eye_y),
        ],
    }
}

/// Ears on a head at `head` of radius `rh`: pointed (cat-like, thin) or
/// floppy (dog-like, thicker, lower), one draw for both.
fn ears<R: Rng + ?Sized>(rng: &mut R, head: (f32, f32), rh: f32) -> [Part; 2] {
    let pointy = rng.random_bool(0.5);
    [-1.0f32, 1.0].map(|side| {
        let base = (head.0 + side * rh * 0.55, head.1 - rh * 0.55);
        let tip = if pointy {
            (base.0 + side * rh * 0.25, base.1 - rh * 0.75)
        } else {
            (base.0 + side * rh * 0.55, base.1 + rh * 0.45)
        };
        let r = rh * if pointy { 0.22 } else { 0.3 };
        Part::Capsule { p: base, q: tip, r }
    })
}

/// Legs under a body centred at `c` with half-axes `(a, b)` and axis
/// cosine `co`: four standing, two front paws when sitting.
fn legs<R: Rng + ?Sized>(
    rng: &mut R,
    c: (f32, f32),
    (a, b): (f32, f32),
    co: f32,
    sitting: bool,
) -> Vec<Part> {
    let leg_r = b * rng.random_range(0.18..0.26);
    let bottom = c.1 + if sitting { a * 0.8 } else { b * 0.6 };
    let offsets: &[f32] = if sitting {
        &[-0.35, 0.35]
    } else {
        &[-0.75, -0.45, 0.45, 0.75]
    };
    let leg_len = b * rng.random_range(0.8..1.3);
    offsets
        .iter()
        .map(|&t| {
            let x = c.0 + t * if sitting { b } else { a } * co.abs().max(0.5);
            let p = (x, bottom - leg_len * 0.4);
            let q = (
                x + rng.random_range(-0.2..0.2) * leg_len,
                bottom + leg_len * 0.6,
            );
            Part::Capsule { p, q, r: leg_r }
        })
        .collect()
}

/// Paints a cluttered background: a two-colour noise field, rectangles
/// (some striped, some noisy), disks and pixel noise.
fn background<R: Rng + ?Sized>(rng: &mut R, w: u32, h: u32) -> Vec<Colour> {
    let (c0, c1) = (random_colour(rng), random_colour(rng));
    let cell = rng.random_range(10.0..30.0);
    let field = Fbm::new(rng, w, h, cell);
    let mut canvas: Vec<Colour> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x as f32, y as f32)))
        .map(|(x, y)| mix(c0, c1, 0.5 + 0.5 * field.at(x, y)))
        .collect();
    let (wf, hf) = (w as f32, h as f32);
    for _ in 0..rng.random_range(3..9) {
        let colour = random_colour(rng);
        let other = random_colour(rng);
        let (x0, y0) = (
            rng.random_range(-0.2..0.9) * wf,
            rng.random_range(-0.2..0.9) * hf,
        );
        let (rw, rh) = (
            rng.random_range(0.1..0.6) * wf,
            rng.random_range(0.1..0.6) * hf,
        );
        let stripes = rng.random_bool(0.4);
        let stripe_angle: f32 = rng.random_range(0.0..PI);
        let period = rng.random_range(3.0..10.0);
        let cell = rng.random_range(3.0..8.0);
        let texture = Fbm::new(rng, w, h, cell);
        let disk = rng.random_bool(0.25);
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32, y as f32);
                let inside = if disk {
                    let (dx, dy) = (
                        (xf - x0 - rw / 2.0) / (rw / 2.0),
                        (yf - y0 - rh / 2.0) / (rw / 2.0),
                    );
                    dx * dx + dy * dy < 1.0
                } else {
                    xf >= x0 && xf < x0 + rw && yf >= y0 && yf < y0 + rh
                };
                if !inside {
                    continue;
                }
                let t = if stripes {
                    let u = xf * stripe_angle.cos() + yf * stripe_angle.sin();
                    f32::from(u8::from((u / period).rem_euclid(2.0) < 1.0))
                } else {
                    0.5 + 0.35 * texture.at(xf, yf)
                };
                canvas[(y * w + x) as usize] = mix(colour, other, t);
            }
        }
    }
    for p in &mut canvas {
        let n = rng.random_range(-0.04..0.04);
        *p = p.map(|v| v + n);
    }
    canvas
}

/// Blends `colour` into the pixel at (x, y) with weight `alpha`.
fn blend(canvas: &mut [Colour], w: u32, h: u32, x: i32, y: i32, colour: Colour, alpha: f32) {
    if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
        let p = &mut canvas[(y as u32 * w + x as u32) as usize];
        *p = mix(*p, colour, alpha);
    }
}

fn generate<R: Rng + ?Sized>(rng: &mut R, long_side: u32) -> Scene {
    let short = ((long_side as f32) * rng.random_range(0.62..1.0)).round() as u32;
    let (w, h) = if rng.random_bool(0.6) {
        (long_side, short)
    } else {
        (short, long_side)
    };
    let species = if rng.random_bool(0.5) {
        Species::Cat
    } else {
        Species::Dog
    };
    let canvas = background(rng, w, h);
    let animal = animal(rng, w, h);
    let outline = Fbm::new(rng, w, h, (animal.size * 0.5).max(3.0));
    let sdf = signed_distance(&animal, &outline, w, h);
    let mut fur = fur(rng, &animal, &sdf, w, h);
    paint_eyes(&mut fur, &animal, w, h);
    // A boundary band of half-width `band` around the edge.
    let band = rng.random_range(1.2..1.8) * long_side as f32 / 96.0;
    let (image, trimap) = composite(&canvas, &fur, &sdf, band, w);
    Scene {
        image,
        trimap,
        species,
    }
}

/// The animal's signed distance at every pixel centre (negative inside):
/// its parts smoothly united, the edge roughened by `outline`.
fn signed_distance(animal: &Animal, outline: &Fbm, w: u32, h: u32) -> Vec<f32> {
    let amp = animal.size * 0.12;
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x as f32 + 0.5, y as f32 + 0.5)))
        .map(|(x, y)| {
            let mut distances = animal.parts.iter().map(|p| p.distance(x, y));
            let first = distances.next().unwrap_or(f32::INFINITY);
            let d = distances.fold(first, |acc, d| smooth_min(acc, d, 3.0));
            d + amp * outline.at(x, y)
        })
        .collect()
}

/// Fur: base colour with a pattern (tabby stripes or patches), shading
/// towards the edge, then oriented strokes inside the animal.
fn fur<R: Rng + ?Sized>(rng: &mut R, animal: &Animal, sdf: &[f32], w: u32, h: u32) -> Vec<Colour> {
    let base = FUR[rng.random_range(0..FUR.len())];
    let second = mix(base, FUR[rng.random_range(0..FUR.len())], 0.7);
    let tabby = rng.random_bool(0.5);
    let patches = Fbm::new(rng, w, h, animal.size * 0.8);
    let wobble = Fbm::new(rng, w, h, 6.0);
    let period = animal.size * rng.random_range(0.35..0.6);
    let (sa, ca) = animal.axis.sin_cos();
    let mut fur = vec![[0.0f32; 3]; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let (xf, yf) = (x as f32, y as f32);
            let pattern = if tabby {
                let u = (xf - animal.centre.0) * ca + (yf - animal.centre.1) * sa;
                0.5 + 0.5 * ((u / period) * PI + 2.0 * wobble.at(xf, yf)).sin()
            } else {
                f32::from(u8::from(patches.at(xf, yf) > 0.25))
            };
            let shade = 1.0 - 0.3 * (1.0 + sdf[i] / (animal.size * 0.6)).clamp(0.0, 1.0);
            let light = 1.0 + 0.15 * ((animal.centre.1 - yf) / animal.size).clamp(-1.0, 1.0);
            fur[i] = scale(mix(base, second, pattern * 0.8), shade * light);
        }
    }
    let area = sdf.iter().filter(|&&d| d < 0.0).count();
    for _ in 0..area / 2 {
        let (x, y) = (rng.random_range(0..w), rng.random_range(0..h));
        if sdf[(y * w + x) as usize] >= 0.0 {
            continue;
        }
        let angle = animal.axis + 0.8 * wobble.at(x as f32, y as f32) + rng.random_range(-0.3..0.3);
        let len = rng.random_range(2.0..5.0f32);
        let tone = rng.random_range(0.65..1.35);
        let colour = scale(fur[(y * w + x) as usize], tone);
        let steps = (len * 2.0) as usize;
        for s in 0..=steps {
            let t = s as f32 / 2.0;
            let (px, py) = (x as f32 + t * angle.cos(), y as f32 + t * angle.sin());
            blend(&mut fur, w, h, px as i32, py as i32, colour, 0.45);
        }
    }
    fur
}

/// Dark discs at the animal's eyes.
fn paint_eyes(fur: &mut [Colour], animal: &Animal, w: u32, h: u32) {
    let r = (animal.size * 0.09).max(1.0);
    let reach = r.ceil() as i32;
    for &(ex, ey) in &animal.eyes {
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                if (dx * dx + dy * dy) as f32 <= r * r {
                    let (x, y) = (ex as i32 + dx, ey as i32 + dy);
                    blend(fur, w, h, x, y, [0.05, 0.05, 0.03], 0.9);
                }
            }
        }
    }
}

/// The photo (animal over background with a one-pixel anti-aliased edge)
/// and its trimap (boundary within `band` of the edge).
fn composite(
    canvas: &[Colour],
    fur: &[Colour],
    sdf: &[f32],
    band: f32,
    w: u32,
) -> (RgbImage, GrayImage) {
    let h = sdf.len() as u32 / w;
    let mut image = RgbImage::new(w, h);
    let mut trimap = GrayImage::new(w, h);
    for (i, (&d, (bg, fg))) in sdf.iter().zip(canvas.iter().zip(fur)).enumerate() {
        let alpha = (0.5 - d).clamp(0.0, 1.0);
        let c = mix(*bg, *fg, alpha);
        let (x, y) = ((i as u32) % w, (i as u32) / w);
        image.put_pixel(
            x,
            y,
            Rgb(c.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)),
        );
        let t = if d.abs() <= band {
            TRIMAP_BOUNDARY
        } else if d < 0.0 {
            TRIMAP_PET
        } else {
            TRIMAP_BACKGROUND
        };
        trimap.put_pixel(x, y, Luma([t]));
    }
    (image, trimap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_seeded() {
        let a = scene(7, 3, 64);
        let b = scene(7, 3, 64);
        assert_eq!(a.image, b.image);
        assert_eq!(a.trimap, b.trimap);
        assert_ne!(scene(7, 4, 64).image, a.image);
        assert_ne!(scene(8, 3, 64).image, a.image);
    }

    #[test]
    fn scene_shapes_and_trimap_values() {
        for i in 0..8 {
            let s = scene(1, i, 80);
            let (w, h) = s.image.dimensions();
            assert_eq!(w.max(h), 80);
            assert!(w.min(h) >= 49);
            assert_eq!(s.trimap.dimensions(), (w, h));
            for v in [TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BOUNDARY] {
                assert!(
                    s.trimap.as_raw().contains(&v),
                    "scene {i} lacks trimap value {v}"
                );
            }
            assert!(s.trimap.as_raw().iter().all(|&v| (1..=3).contains(&v)));
        }
    }

    #[test]
    fn class_fractions_are_like_the_real_set() {
        let mut counts = [0usize; 4];
        for i in 0..32 {
            for &v in scene(7, i, 96).trimap.as_raw() {
                counts[usize::from(v)] += 1;
            }
        }
        let total = counts.iter().sum::<usize>() as f64;
        let pet = counts[1] as f64 / total;
        let boundary = counts[3] as f64 / total;
        assert!((0.2..0.4).contains(&pet), "object fraction {pet}");
        assert!(
            (0.06..0.16).contains(&boundary),
            "boundary fraction {boundary}"
        );
    }

    #[test]
    fn scene_names_are_not_release_like() {
        assert_eq!(scene_name(Species::Cat, 0), "synth-cat-001");
        assert_eq!(scene_name(Species::Dog, 1), "synth-dog-002");
        assert_eq!(scene_name(Species::Dog, 999), "synth-dog-1000");
        // The release's names are `[A-Za-z]+(_[A-Za-z]+)*_[0-9]+`; ours have
        // no underscore at all.
        for i in [0, 9, 47, 998, 12345] {
            for sp in [Species::Cat, Species::Dog] {
                let name = scene_name(sp, i);
                assert!(!name.contains('_'), "{name}");
                assert_eq!(name, name.to_lowercase());
            }
        }
    }

    #[test]
    fn options_validate() {
        assert!(SynthOptions::default().validate().is_ok());
        let bad = SynthOptions {
            count: 0,
            ..SynthOptions::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("count = 0"));
        let bad = SynthOptions {
            test_fraction: 2.0,
            ..SynthOptions::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("test_fraction"));
    }
}
