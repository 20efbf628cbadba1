//! The analytic backward pass of the fused step, from the activations the
//! forward kept: the masked update and the normalization over the batch,
//! then per tile the cell MLP in reverse (weight gradients as GEMMs
//! accumulated per group of tiles), then the input gradient as a
//! transposed 3x3 (an im2col GEMM over the first layer's gradient, or the
//! flipped depthwise filter).

use rayon::prelude::*;

use super::forward::{depthwise, with_scratch, Saved, Scratch, TILE};
use super::layout::{gather3x3, nchw_to_nhwc, neighbour, nhwc_to_nchw, Dims, First};
use super::linalg::{add_colsum, matmul, relu_mask, with_avx2};
use super::norm;

/// Weight gradients are summed per group of tiles, then over the groups in
/// order: a fixed count, so that the sums do not depend on the threads.
const GROUPS: usize = 16;

/// The gradients of one step.
pub(crate) struct Grads {
    /// At `x = cat(state, env)`, `[B, S + E, H, W]`.
    pub x: Vec<f32>,
    /// At the packed parameters.
    pub params: Vec<f32>,
}

/// The gradients of `loss` given `gout`, its gradient at the new state
/// (`[B, S, H, W]`), and what the forward kept.
pub(crate) fn backward(d: &Dims, saved: &Saved, gout: &[f32]) -> Grads {
    let (cells, s, ci) = (d.cells(), d.s, d.ci());
    let w = &saved.weights;
    if cells == 0 {
        return Grads {
            x: Vec::new(),
            params: vec![0.0; w.pack.len],
        };
    }
    let dc = d.draw_channels();
    // Split the incoming gradient by the mask: `gs` flows to the old state
    // directly, `g` through the normalized candidate.
    let mut g = nchw_to_nhwc(gout, d.b, s, d.hw());
    let mut gs = vec![0.0; cells * s];
    g.par_chunks_mut(s)
        .zip(gs.par_chunks_mut(s))
        .enumerate()
        .with_min_len(256)
        .for_each(|(n, (gc, gsc))| {
            let mask = saved.draws[n * dc];
            for (gv, gsv) in gc.iter_mut().zip(gsc) {
                *gsv = (1.0 - mask) * *gv;
                *gv *= mask;
            }
        });
    norm::backward(d, &saved.stats, &saved.y, &mut g);

    let gw = d.first_grad_width();
    let mut ga = vec![0.0; cells * gw];
    let rl = d.record(TILE);
    let per_group = cells.div_ceil(TILE).div_ceil(GROUPS);
    let group_cells = per_group * TILE;
    let len = w.pack.len;
    let mut partial = vec![0.0; GROUPS * len];
    saved
        .rec
        .par_chunks(per_group * rl.len())
        .zip(g.par_chunks(group_cells * s))
        .zip(gs.par_chunks_mut(group_cells * s))
        .zip(ga.par_chunks_mut(group_cells * gw))
        .zip(partial.par_chunks_mut(len))
        .enumerate()
        .for_each(|(gi, ((((rec, gc), gsg), gag), acc))| {
            let tiles = rec
                .chunks(rl.len())
                .zip(gc.chunks(TILE * s))
                .zip(gsg.chunks_mut(TILE * s))
                .zip(gag.chunks_mut(TILE * gw));
            for (k, (((rt, gt), gst), gat)) in tiles.enumerate() {
                let n0 = gi * group_cells + k * TILE;
                with_scratch(d, |scr| {
                    tile_backward(d, saved, n0, (rt, gt), (gst, gat), scr, acc)
                });
            }
        });
    let mut gp = vec![0.0; len];
    for acc in partial.chunks(len) {
        for (a, b) in gp.iter_mut().zip(acc) {
            *a += b;
        }
    }

    let mut gx = vec![0.0; cells * ci];
    gx.par_chunks_mut(TILE * ci)
        .zip(gs.par_chunks(TILE * s))
        .enumerate()
        .for_each(|(t, (gxt, gst))| {
            with_scratch(d, |scr| {
                input_grad(d, saved, &ga, t * TILE, (gxt, gst), &mut scr.p)
            })
        });
    Grads {
        x: nhwc_to_nchw(&gx, d.b, ci, d.hw()),
        params: w.to_packed(&gp),
    }
}

/// The backward of the cell MLP on the tile starting at cell `n0`: `rec`
/// the tile's activations, `gc` the gradient at the mixed candidate
/// (`[m, S]`). Adds the residual path into `gs` (`[m, S]`), writes the
/// gradient at the first layer's input side into `ga` (`[m, hd]` before the
/// 3x3 weight, or `[m, S + E]` at the depthwise output), and accumulates the
/// weight gradients into `acc` (internal layout).
#[inline(always)]
fn tile_backward_impl(
    d: &Dims,
    saved: &Saved,
    n0: usize,
    inputs: (&[f32], &[f32]),
    outputs: (&mut [f32], &mut [f32]),
    scr: &mut Scratch,
    acc: &mut [f32],
) {
    let ((rec, gc), (gs, ga)) = (inputs, outputs);
    let (s, ci, hd, dc) = (d.s, d.ci(), d.hd, d.draw_channels());
    let m = gc.len() / s;
    let (w, x) = (&saved.weights, &saved.x);
    let v = &w.v;
    let rl = d.record(TILE);
    let h = |k: usize| &rec[rl.h(k)..rl.h(k) + m * hd];
    let hl = h(d.layers);
    let cand = &rec[rl.cand()..rl.cand() + m * s];

    // Reset mix and residual.
    let gu = &mut scr.gu[..m * s];
    let gg = &mut scr.gg[..m];
    for i in 0..m {
        let (g, gur) = (&gc[i * s..(i + 1) * s], &mut gu[i * s..(i + 1) * s]);
        if d.reset {
            let n = n0 + i;
            let r = rec[rl.r() + i];
            let z = &saved.draws[n * dc + 1..n * dc + 1 + s];
            let cr = &cand[i * s..(i + 1) * s];
            let gr: f32 = g
                .iter()
                .zip(z)
                .zip(cr)
                .map(|((gv, zv), cv)| gv * (zv - cv))
                .sum();
            gg[i] = gr * r * (1.0 - r);
            for (o, gv) in gur.iter_mut().zip(g) {
                *o = (1.0 - r) * gv;
            }
        } else {
            gur.copy_from_slice(g);
        }
        if d.residual {
            for (o, gv) in gs[i * s..(i + 1) * s].iter_mut().zip(gur.iter()) {
                *o += gv;
            }
        }
    }

    // Update layer (and reset gate) back to the last hidden layer.
    let [mut gh, mut gh2] = std::mem::take(&mut scr.gh);
    let (wu, bu) = w.pack.update;
    matmul(
        (hd, s, m),
        &mut acc[wu..wu + hd * s],
        s,
        true,
        (hl, 1, hd),
        (gu, s, 1),
    );
    add_colsum(&mut acc[bu..bu + s], gu, s, m);
    let wum = &v[wu..wu + hd * s];
    matmul(
        (m, hd, s),
        &mut gh[..m * hd],
        hd,
        false,
        (gu, s, 1),
        (wum, 1, s),
    );
    if let Some((wr, br)) = w.pack.reset {
        let wrv = &v[wr..wr + hd];
        for (i, &gi) in gg.iter().enumerate() {
            let (ghr, hr) = (&mut gh[i * hd..(i + 1) * hd], &hl[i * hd..(i + 1) * hd]);
            for (o, wv) in ghr.iter_mut().zip(wrv) {
                *o += gi * wv;
            }
            for (a, hv) in acc[wr..wr + hd].iter_mut().zip(hr) {
                *a += gi * hv;
            }
            acc[br] += gi;
        }
    }

    // Hidden layers, last to first.
    for k in (0..d.layers).rev() {
        let (wo, bo) = w.pack.hidden[k];
        relu_mask(&mut gh, hd, h(k + 1), hd, (m, hd));
        let ghm = &gh[..m * hd];
        matmul(
            (hd, hd, m),
            &mut acc[wo..wo + hd * hd],
            hd,
            true,
            (h(k), 1, hd),
            (ghm, hd, 1),
        );
        add_colsum(&mut acc[bo..bo + hd], ghm, hd, m);
        let wk = &v[wo..wo + hd * hd];
        matmul(
            (m, hd, hd),
            &mut gh2[..m * hd],
            hd,
            false,
            (ghm, hd, 1),
            (wk, 1, hd),
        );
        std::mem::swap(&mut gh, &mut gh2);
    }
    relu_mask(&mut gh, hd, h(0), hd, (m, hd));
    let ghm = &gh[..m * hd];

    // Perception layer.
    match w.pack.first {
        First::Conv { w: wo, b: bo } => {
            gather3x3(d, x, ci, n0, m, false, &mut scr.p);
            let gw = &mut acc[wo..wo + 9 * ci * hd];
            matmul(
                (9 * ci, hd, m),
                gw,
                hd,
                true,
                (&scr.p, 1, 9 * ci),
                (ghm, hd, 1),
            );
            add_colsum(&mut acc[bo..bo + hd], ghm, hd, m);
            ga[..m * hd].copy_from_slice(ghm);
        }
        First::Depthwise { dw, db, pw, pb } => {
            let dwo = &mut scr.dw[..m * ci];
            depthwise(d, x, n0, (&v[dw..dw + 9 * ci], &v[db..db + ci]), dwo);
            let gpw = &mut acc[pw..pw + ci * hd];
            matmul((ci, hd, m), gpw, hd, true, (dwo, 1, ci), (ghm, hd, 1));
            add_colsum(&mut acc[pb..pb + hd], ghm, hd, m);
            let gd = &mut ga[..m * ci];
            let wp = &v[pw..pw + ci * hd];
            matmul((m, ci, hd), gd, ci, false, (ghm, hd, 1), (wp, 1, hd));
            add_colsum(&mut acc[db..db + ci], gd, ci, m);
            for i in 0..m {
                let gdr = &gd[i * ci..(i + 1) * ci];
                for t in 0..9 {
                    if let Some(j) = neighbour(d, n0 + i, t, false) {
                        let gwt = &mut acc[dw + t * ci..dw + (t + 1) * ci];
                        for ((a, gv), xv) in gwt.iter_mut().zip(gdr).zip(&x[j * ci..]) {
                            *a += gv * xv;
                        }
                    }
                }
            }
        }
    }
    scr.gh = [gh, gh2];
}

with_avx2! {
    /// [`tile_backward_impl`], vectorized for the CPU at hand.
    fn tile_backward => tile_backward_impl(
        d: &Dims,
        saved: &Saved,
        n0: usize,
        inputs: (&[f32], &[f32]),
        outputs: (&mut [f32], &mut [f32]),
        scr: &mut Scratch,
        acc: &mut [f32],
    )
}

/// The gradient at `x` of the tile starting at cell `n0` (`gx`, `[m, S +
/// E]`): the transposed perception applied to `ga` (all cells), plus `gs`
/// (`[m, S]`) on the state channels.
#[inline(always)]
fn input_grad_impl(
    d: &Dims,
    saved: &Saved,
    ga: &[f32],
    n0: usize,
    out: (&mut [f32], &[f32]),
    q: &mut [f32],
) {
    let (gx, gs) = out;
    let (s, ci, hd) = (d.s, d.ci(), d.hd);
    let m = gx.len() / ci;
    let w = &saved.weights;
    match w.pack.first {
        First::Conv { .. } => {
            gather3x3(d, ga, hd, n0, m, true, q);
            let q = &q[..m * 9 * hd];
            matmul(
                (m, ci, 9 * hd),
                gx,
                ci,
                false,
                (q, 9 * hd, 1),
                (&w.conv_t, ci, 1),
            );
        }
        First::Depthwise { dw, .. } => {
            let wdw = &w.v[dw..dw + 9 * ci];
            for (i, row) in gx.chunks_exact_mut(ci).enumerate() {
                row.fill(0.0);
                for t in 0..9 {
                    if let Some(j) = neighbour(d, n0 + i, t, true) {
                        let (gd, wt) = (&ga[j * ci..(j + 1) * ci], &wdw[t * ci..(t + 1) * ci]);
                        for ((o, gv), wv) in row.iter_mut().zip(gd).zip(wt) {
                            *o += gv * wv;
                        }
                    }
                }
            }
        }
    }
    for (row, gsr) in gx.chunks_exact_mut(ci).zip(gs.chunks_exact(s)) {
        for (o, gv) in row.iter_mut().zip(gsr) {
            *o += gv;
        }
    }
}

with_avx2! {
    /// [`input_grad_impl`], vectorized for the CPU at hand.
    fn input_grad => input_grad_impl(
        d: &Dims,
        saved: &Saved,
        ga: &[f32],
        n0: usize,
        out: (&mut [f32], &[f32]),
        q: &mut [f32],
    )
}
