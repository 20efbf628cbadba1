//! The normalizations of the fused step, forward and backward, on the
//! candidates of the firing cells (`[rows, S]`, see [`Firing`]): the
//! statistics of batch and instance norm are taken over the firing cells
//! only (`docs/FIRING.md`). Sums are taken per fixed block of rows in `f64`
//! and combined in block order, so results do not depend on the number of
//! threads.

use rayon::prelude::*;

use super::layout::Dims;
#[cfg(doc)]
use super::layout::Firing;
use crate::config::Norm;
use crate::norm::NORM_EPS;

/// Rows per block of a reduction.
const BLOCK: usize = 1024;

/// Rows per task of an elementwise pass.
const MIN_CELLS: usize = 256;

/// The inverse standard deviation `1 / sqrt(var + eps)` of every group of a
/// normalization (per channel for batch, per image and channel for
/// instance, per row for channel; empty for none).
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    inv: Vec<f32>,
}

/// For batch and instance norm: the groups of the channels `0..S` of image
/// `img`, in channel order.
fn groups_of(d: &Dims, img: usize) -> std::ops::Range<usize> {
    match d.norm {
        Norm::Instance => img * d.s..(img + 1) * d.s,
        _ => 0..d.s,
    }
}

/// Per-group sums over the rows of each group, for batch and instance norm:
/// `f(image, row, a, b)` adds row `row`'s contributions to the per-channel
/// sums `a` and `b` (`[S]` each; written as loops over whole rows so that
/// they vectorize). `starts` are the images' row offsets (see [`Firing`]).
fn group_sums(
    d: &Dims,
    starts: &[usize],
    f: impl Fn(usize, usize, &mut [f64], &mut [f64]) + Sync,
) -> Vec<(f64, f64)> {
    let s = d.s;
    let blocks: Vec<(usize, usize, usize)> = (0..d.b)
        .flat_map(|img| {
            let (r0, r1) = (starts[img], starts[img + 1]);
            (r0..r1)
                .step_by(BLOCK)
                .map(move |a| (img, a, (a + BLOCK).min(r1)))
        })
        .collect();
    let partial: Vec<Vec<f64>> = blocks
        .par_iter()
        .map(|&(img, r0, r1)| {
            let mut acc = vec![0.0; 2 * s];
            let (a, b) = acc.split_at_mut(s);
            for k in r0..r1 {
                f(img, k, a, b);
            }
            acc
        })
        .collect();
    let groups = if d.norm == Norm::Instance { d.b * s } else { s };
    let mut sums = vec![(0.0, 0.0); groups];
    for (&(img, ..), acc) in blocks.iter().zip(&partial) {
        let g = &mut sums[groups_of(d, img)];
        for (g, (u, v)) in g.iter_mut().zip(acc[..s].iter().zip(&acc[s..])) {
            g.0 += u;
            g.1 += v;
        }
    }
    sums
}

/// Rows per group of batch or instance norm (at least 1, so that an image
/// with no firing cell gets finite, unused statistics).
fn group_sizes(d: &Dims, starts: &[usize]) -> Vec<f64> {
    let count = |n: usize| n.max(1) as f64;
    match d.norm {
        Norm::Instance => (0..d.b * d.s)
            .map(|g| count(starts[g / d.s + 1] - starts[g / d.s]))
            .collect(),
        _ => vec![count(starts[d.b]); d.s],
    }
}

/// Runs `f(image, row index, row)` over every row of `y` (`[rows, S]`), in
/// parallel.
fn for_each_row(
    d: &Dims,
    starts: &[usize],
    y: &mut [f32],
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let s = d.s;
    let mut images = Vec::with_capacity(d.b);
    let mut rest = y;
    for img in 0..d.b {
        let (a, b) = rest.split_at_mut((starts[img + 1] - starts[img]) * s);
        images.push((img, a));
        rest = b;
    }
    images.into_par_iter().for_each(|(img, rows)| {
        rows.par_chunks_mut(s)
            .enumerate()
            .with_min_len(MIN_CELLS)
            .for_each(|(i, row)| f(img, starts[img] + i, row))
    });
}

/// Normalizes `y` (`[rows, S]`, the candidates of the firing cells) in
/// place, with statistics over the firing cells of each group; returns the
/// statistics the backward needs. `starts` are the images' row offsets.
pub(crate) fn normalize(d: &Dims, starts: &[usize], y: &mut [f32]) -> Stats {
    let s = d.s;
    match d.norm {
        Norm::None => Stats { inv: Vec::new() },
        Norm::Channel => {
            let mut inv = vec![0.0f32; y.len() / s];
            y.par_chunks_mut(s)
                .zip(inv.par_iter_mut())
                .with_min_len(MIN_CELLS)
                .for_each(|(cell, inv)| {
                    let mean = cell.iter().map(|&v| v as f64).sum::<f64>() / s as f64;
                    let var =
                        cell.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / s as f64;
                    let i = 1.0 / (var + NORM_EPS).sqrt();
                    for v in cell.iter_mut() {
                        *v = ((*v as f64 - mean) * i) as f32;
                    }
                    *inv = i as f32;
                });
            Stats { inv }
        }
        Norm::Batch | Norm::Instance => {
            let count = group_sizes(d, starts);
            let yr: &[f32] = y;
            let mean: Vec<f64> = group_sums(d, starts, |_, k, a, _| {
                for (a, &v) in a.iter_mut().zip(&yr[k * s..(k + 1) * s]) {
                    *a += v as f64;
                }
            })
            .into_iter()
            .zip(&count)
            .map(|((u, _), n)| u / n)
            .collect();
            let var = group_sums(d, starts, |img, k, a, _| {
                let m = &mean[groups_of(d, img)];
                for ((a, &v), m) in a.iter_mut().zip(&yr[k * s..(k + 1) * s]).zip(m) {
                    let v = v as f64 - m;
                    *a += v * v;
                }
            });
            let inv: Vec<f64> = var
                .into_iter()
                .zip(&count)
                .map(|((v, _), n)| 1.0 / (v / n + NORM_EPS).sqrt())
                .collect();
            for_each_row(d, starts, y, |img, _, cell| {
                let g = groups_of(d, img);
                for ((v, m), i) in cell.iter_mut().zip(&mean[g.clone()]).zip(&inv[g]) {
                    *v = ((*v as f64 - m) * i) as f32;
                }
            });
            Stats {
                inv: inv.into_iter().map(|v| v as f32).collect(),
            }
        }
    }
}

/// Turns `g`, the gradient at the normalized candidate `yhat` (`[rows,
/// S]` each, the firing cells), into the gradient at its input, in place:
/// `inv * (g - mean(g) - yhat * mean(g * yhat))` over each group.
pub(crate) fn backward(d: &Dims, starts: &[usize], stats: &Stats, yhat: &[f32], g: &mut [f32]) {
    let s = d.s;
    match d.norm {
        Norm::None => {}
        Norm::Channel => {
            g.par_chunks_mut(s)
                .zip(yhat.par_chunks(s))
                .zip(stats.inv.par_iter())
                .with_min_len(MIN_CELLS)
                .for_each(|((gc, yc), &inv)| {
                    let (mut a, mut b) = (0.0f64, 0.0f64);
                    for (gv, yv) in gc.iter().zip(yc) {
                        a += *gv as f64;
                        b += (*gv * *yv) as f64;
                    }
                    let (a, b) = ((a / s as f64) as f32, (b / s as f64) as f32);
                    for (gv, yv) in gc.iter_mut().zip(yc) {
                        *gv = inv * (*gv - a - yv * b);
                    }
                });
        }
        Norm::Batch | Norm::Instance => {
            let count = group_sizes(d, starts);
            let gr: &[f32] = g;
            let sums: Vec<(f32, f32)> = group_sums(d, starts, |_, k, a, b| {
                let row = k * s..(k + 1) * s;
                for (((a, b), &gv), &yv) in
                    a.iter_mut().zip(b).zip(&gr[row.clone()]).zip(&yhat[row])
                {
                    let (gv, yv) = (gv as f64, yv as f64);
                    *a += gv;
                    *b += gv * yv;
                }
            })
            .into_iter()
            .zip(&count)
            .map(|((a, b), n)| ((a / n) as f32, (b / n) as f32))
            .collect();
            for_each_row(d, starts, g, |img, k, gc| {
                let yc = &yhat[k * s..(k + 1) * s];
                let grp = groups_of(d, img);
                let (sums, inv) = (&sums[grp.clone()], &stats.inv[grp]);
                for (((gv, yv), &(a, b)), &inv) in gc.iter_mut().zip(yc).zip(sums).zip(inv) {
                    *gv = inv * (*gv - a - yv * b);
                }
            });
        }
    }
}
