//! The normalizations of the fused step, forward and backward, on a
//! candidate `[N, S]` in NHWC order. Sums are taken per fixed block of
//! cells in `f64` and combined in block order, so results do not depend on
//! the number of threads.

use rayon::prelude::*;

use super::layout::Dims;
use crate::config::Norm;
use crate::norm::NORM_EPS;

/// Cells per block of a reduction.
const BLOCK: usize = 1024;

/// Cells per task of an elementwise pass.
const MIN_CELLS: usize = 256;

/// The inverse standard deviation `1 / sqrt(var + eps)` of every group of a
/// normalization (per channel for batch, per image and channel for
/// instance, per cell for channel; empty for none).
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    inv: Vec<f32>,
}

/// For batch and instance norm: the group of channel `c` of image `img`.
fn group(d: &Dims, img: usize, c: usize) -> usize {
    match d.norm {
        Norm::Instance => img * d.s + c,
        _ => c,
    }
}

/// Per-group sums of `f(cell, channel) -> (a, b)` over the cells of each
/// group, for batch and instance norm.
fn group_sums(d: &Dims, f: impl Fn(usize, usize) -> (f64, f64) + Sync) -> Vec<(f64, f64)> {
    let (hw, s) = (d.hw(), d.s);
    let per_image = hw.div_ceil(BLOCK);
    let partial: Vec<Vec<(f64, f64)>> = (0..d.b * per_image)
        .into_par_iter()
        .map(|k| {
            let (img, blk) = (k / per_image, k % per_image);
            let n0 = img * hw + blk * BLOCK;
            let n1 = img * hw + ((blk + 1) * BLOCK).min(hw);
            let mut acc = vec![(0.0, 0.0); s];
            for n in n0..n1 {
                for (c, a) in acc.iter_mut().enumerate() {
                    let (u, v) = f(n, c);
                    a.0 += u;
                    a.1 += v;
                }
            }
            acc
        })
        .collect();
    let groups = if d.norm == Norm::Instance { d.b * s } else { s };
    let mut sums = vec![(0.0, 0.0); groups];
    for (k, acc) in partial.iter().enumerate() {
        let img = k / per_image;
        for (c, (u, v)) in acc.iter().enumerate() {
            let g = &mut sums[group(d, img, c)];
            g.0 += u;
            g.1 += v;
        }
    }
    sums
}

/// Cells per group of batch or instance norm.
fn group_size(d: &Dims) -> f64 {
    match d.norm {
        Norm::Instance => d.hw() as f64,
        _ => d.cells() as f64,
    }
}

/// Normalizes `y` (`[N, S]`) in place; returns the statistics the backward
/// needs.
pub(crate) fn normalize(d: &Dims, y: &mut [f32]) -> Stats {
    let s = d.s;
    match d.norm {
        Norm::None => Stats { inv: Vec::new() },
        Norm::Channel => {
            let mut inv = vec![0.0f32; d.cells()];
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
            let (hw, count) = (d.hw(), group_size(d));
            let yr: &[f32] = y;
            let mean: Vec<f64> = group_sums(d, |n, c| (yr[n * s + c] as f64, 0.0))
                .into_iter()
                .map(|(u, _)| u / count)
                .collect();
            let var = group_sums(d, |n, c| {
                let v = yr[n * s + c] as f64 - mean[group(d, n / hw, c)];
                (v * v, 0.0)
            });
            let inv: Vec<f64> = var
                .into_iter()
                .map(|(v, _)| 1.0 / (v / count + NORM_EPS).sqrt())
                .collect();
            y.par_chunks_mut(s)
                .enumerate()
                .with_min_len(MIN_CELLS)
                .for_each(|(n, cell)| {
                    for (c, v) in cell.iter_mut().enumerate() {
                        let g = group(d, n / hw, c);
                        *v = ((*v as f64 - mean[g]) * inv[g]) as f32;
                    }
                });
            Stats {
                inv: inv.into_iter().map(|v| v as f32).collect(),
            }
        }
    }
}

/// Turns `g`, the gradient at the normalized candidate `yhat` (`[N, S]`
/// each), into the gradient at its input, in place:
/// `inv * (g - mean(g) - yhat * mean(g * yhat))` over each group.
pub(crate) fn backward(d: &Dims, stats: &Stats, yhat: &[f32], g: &mut [f32]) {
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
            let (hw, count) = (d.hw(), group_size(d));
            let gr: &[f32] = g;
            let sums: Vec<(f32, f32)> = group_sums(d, |n, c| {
                let (gv, yv) = (gr[n * s + c] as f64, yhat[n * s + c] as f64);
                (gv, gv * yv)
            })
            .into_iter()
            .map(|(a, b)| ((a / count) as f32, (b / count) as f32))
            .collect();
            g.par_chunks_mut(s)
                .zip(yhat.par_chunks(s))
                .enumerate()
                .with_min_len(MIN_CELLS)
                .for_each(|(n, (gc, yc))| {
                    for (c, (gv, yv)) in gc.iter_mut().zip(yc).enumerate() {
                        let k = group(d, n / hw, c);
                        let (a, b) = sums[k];
                        *gv = stats.inv[k] * (*gv - a - yv * b);
                    }
                });
        }
    }
}
