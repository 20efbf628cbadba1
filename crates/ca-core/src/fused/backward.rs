//! The analytic backward pass of the fused step, from the activations the
//! forward kept: the masked update and the normalization over the firing
//! cells, then per tile of firing cells the cell MLP in reverse (weight
//! gradients as GEMMs accumulated per group of tiles), then the input
//! gradient: for a full 3x3 each firing cell's neighbourhood gradient
//! scattered onto its neighbours, for depthwise the flipped filter.

use rayon::prelude::*;

use super::forward::{add_depthwise, depthwise, with_scratch, Saved, Scratch, TILE};
use super::layout::{from_nhwc, gather3x3, taps, transpose, Dims, First, Record};
use super::linalg::{add_colsum, matmul, relu_mask, with_avx2};
use super::norm;
use super::pool;

/// Weight gradients are summed per group of tiles, then over the groups in
/// order: a fixed count, so that the sums do not depend on the threads.
const GROUPS: usize = 16;

/// The gradients of one step.
pub(crate) struct Grads {
    /// At the state, `[B, S, H, W]`.
    pub state: Vec<f32>,
    /// At the environment, `[B, E, H, W]`, when asked for.
    pub env: Option<Vec<f32>>,
    /// At the packed parameters.
    pub params: Vec<f32>,
}

/// The gradients of `loss` given `gout`, its gradient at the new state
/// (`[B, S, H, W]`), and what the forward kept; the environment's gradient
/// only when `env_grad`.
pub(crate) fn backward(d: &Dims, saved: &Saved, gout: &[f32], env_grad: bool) -> Grads {
    let w = &saved.weights;
    if d.cells() == 0 {
        return Grads {
            state: Vec::new(),
            env: env_grad.then(Vec::new),
            params: vec![0.0; w.pack.len],
        };
    }
    let (mut gs, mut g) = split_by_mask(d, saved, gout);
    norm::backward(d, &saved.firing.starts, &saved.stats, &saved.y, &mut g);
    let (ga, gres, gp) = mlp_backward(d, saved, &g);
    if d.residual {
        let s = d.s;
        saved.firing.for_each_cell(&mut gs, s, |gsc, k| {
            for (o, gv) in gsc.iter_mut().zip(&gres[k * s..(k + 1) * s]) {
                *o += gv;
            }
        });
    }
    let gx = input_grad(d, saved, &ga, &gs);
    let shape = (d.b, d.hw(), d.ci());
    let grads = Grads {
        state: from_nhwc(&gx, shape, 0..d.s),
        env: env_grad.then(|| from_nhwc(&gx, shape, d.s..d.ci())),
        params: w.to_packed(&gp),
    };
    for v in [gs, g, ga, gres, gx] {
        pool::give(v);
    }
    grads
}

/// Splits the incoming gradient `gout` (`[B, S, H, W]`) by the mask: `gs`
/// (`[cells, S]`) flows to the old state directly, `g` (one row per
/// firing cell) through the normalized candidate.
fn split_by_mask(d: &Dims, saved: &Saved, gout: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (s, firing) = (d.s, &saved.firing);
    let mut gs = transpose(gout, d.b, (s, d.hw()));
    // Every row is written below.
    let mut g = pool::take(firing.rows() * s);
    g.par_chunks_mut(s)
        .zip(firing.cells.par_iter().zip(&firing.mask))
        .with_min_len(256)
        .for_each(|(gr, (&n, &mask))| {
            let n = n as usize;
            for (gv, gc) in gr.iter_mut().zip(&gs[n * s..(n + 1) * s]) {
                *gv = mask * gc;
            }
        });
    // In place: the gradient at the new state becomes the part that flows
    // to the old state directly.
    firing.for_each_cell(&mut gs, s, |gsc, k| {
        let keep = 1.0 - firing.mask[k];
        for gv in gsc.iter_mut() {
            *gv *= keep;
        }
    });
    (gs, g)
}

/// The cell MLP in reverse, per tile of rows, from `g` at its output: the
/// gradient at the first layer's input side (`ga`) and at the residual
/// (`gres`), one row per firing cell, and the weight gradients (internal
/// layout), summed per group of tiles and then over the groups in order.
fn mlp_backward(d: &Dims, saved: &Saved, g: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (s, rows) = (d.s, saved.firing.rows());
    let gw = d.first_grad_width();
    // Each tile writes its rows of `ga`, and of `gres` when there is a
    // residual (without one `gres` is neither written nor read).
    let mut ga = pool::take(rows * gw);
    let mut gres = pool::take(rows * s);
    let rl = d.record(TILE);
    let per_group = rows.div_ceil(TILE).div_ceil(GROUPS).max(1);
    let group_rows = per_group * TILE;
    let len = saved.weights.pack.len;
    let mut partial = vec![0.0; GROUPS * len];
    saved
        .rec
        .par_chunks(per_group * rl.len())
        .zip(g.par_chunks(group_rows * s))
        .zip(gres.par_chunks_mut(group_rows * s))
        .zip(ga.par_chunks_mut(group_rows * gw))
        .zip(saved.firing.cells.par_chunks(group_rows))
        .zip(partial.par_chunks_mut(len))
        .for_each(|(((((rec, gc), grg), gag), cg), acc)| {
            let tiles = rec
                .chunks(rl.len())
                .zip(gc.chunks(TILE * s))
                .zip(grg.chunks_mut(TILE * s))
                .zip(gag.chunks_mut(TILE * gw))
                .zip(cg.chunks(TILE));
            for ((((rt, gt), grt), gat), ct) in tiles {
                with_scratch(d, |scr| {
                    tile_backward(d, saved, ct, (rt, gt), (grt, gat), scr, acc)
                });
            }
        });
    let mut gp = vec![0.0; len];
    for acc in partial.chunks(len) {
        for (a, b) in gp.iter_mut().zip(acc) {
            *a += b;
        }
    }
    (ga, gres, gp)
}

/// The gradient at `x` (`[cells, S + E]`) from `ga` at the first layer's
/// input side and `gs` on the state channels.
fn input_grad(d: &Dims, saved: &Saved, ga: &[f32], gs: &[f32]) -> Vec<f32> {
    let (cells, s, ci) = (d.cells(), d.s, d.ci());
    match saved.weights.pack.first {
        First::Conv { .. } => conv_input_grad(d, saved, ga, gs),
        First::Depthwise { .. } => {
            // Spread the rows over the grid (zero where a cell does not
            // fire), then the flipped filter gathers from it.
            let mut gcells = vec![0.0; cells * ci];
            saved.firing.for_each_cell(&mut gcells, ci, |o, k| {
                o.copy_from_slice(&ga[k * ci..(k + 1) * ci])
            });
            let mut gx = vec![0.0; cells * ci];
            gx.par_chunks_mut(TILE * ci)
                .zip(gs.par_chunks(TILE * s))
                .enumerate()
                .for_each(|(t, (gxt, gst))| {
                    depthwise_input_grad(d, saved, &gcells, t * TILE, (gxt, gst))
                });
            gx
        }
    }
}

/// A raw pointer to the input-gradient buffer, shared by the band tasks of
/// [`conv_input_grad`]; each task makes a slice of the grid rows it alone
/// writes.
#[derive(Clone, Copy)]
struct GridPtr(*mut f32);

impl GridPtr {
    /// The pointer (a method, so that closures capture the `Sync` wrapper
    /// rather than its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the tasks that use it at the same time write disjoint ranges (see
// `conv_input_grad`).
unsafe impl Send for GridPtr {}
// SAFETY: as above.
unsafe impl Sync for GridPtr {}

/// The gradient at `x` (`[N, S + E]`) for a full 3x3 perception: each
/// firing cell's first-layer gradient `ga` (`[rows, hd]`) times the
/// transposed weight gives its 3x3 neighbourhood's gradient (`[9 * ci]`),
/// scattered onto the neighbours; plus `gs` (`[N, S]`) on the state
/// channels. The grid is cut into bands of `BAND` rows or more; a band's
/// scatter reaches one grid row past each side, so the even bands run in
/// parallel, then the odd ones, and no two tasks write the same cell. The
/// order of the sums is fixed, whatever the threads.
fn conv_input_grad(d: &Dims, saved: &Saved, ga: &[f32], gs: &[f32]) -> Vec<f32> {
    let (s, ci, hd, hw) = (d.s, d.ci(), d.hd, d.hw());
    let mut gx = vec![0.0; d.cells() * ci];
    gx.par_chunks_mut(ci)
        .zip(gs.par_chunks(s))
        .with_min_len(256)
        .for_each(|(o, gsr)| o[..s].copy_from_slice(gsr));
    let band = BAND.max(TILE.div_ceil(d.w.max(1)));
    let bands = d.h.div_ceil(band);
    let cells = &saved.firing.cells;
    let ptr = GridPtr(gx.as_mut_ptr());
    for parity in 0..2 {
        (0..d.b * bands)
            .into_par_iter()
            .filter(|k| (k % bands) % 2 == parity)
            .for_each(|k| {
                let (img, y0) = (k / bands, (k % bands) * band);
                let y1 = (y0 + band).min(d.h);
                let first = img * hw + y0 * d.w;
                let (r0, r1) = (
                    cells.partition_point(|&n| (n as usize) < first),
                    cells.partition_point(|&n| (n as usize) < first + (y1 - y0) * d.w),
                );
                // The grid rows y0 - 1 .. y1 + 1 of this image.
                let lo = img * hw + y0.saturating_sub(1) * d.w;
                let hi = img * hw + (y1 + 1).min(d.h) * d.w;
                // SAFETY: `lo .. hi` lies in `gx`; bands of the same parity
                // are at least two grid rows apart (`band >= 2`) or in
                // different images, so their ranges do not overlap, and the
                // phases run one after the other.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(ptr.get().add(lo * ci), (hi - lo) * ci)
                };
                with_scratch(d, |scr| {
                    for (ct, gat) in cells[r0..r1]
                        .chunks(TILE)
                        .zip(ga[r0 * hd..r1 * hd].chunks(TILE * hd))
                    {
                        scatter3x3(d, saved, ct, gat, (out, lo), &mut scr.p)
                    }
                })
            });
    }
    gx
}

/// Grid rows per band of [`conv_input_grad`], at least.
const BAND: usize = 2;

with_avx2! {
    /// [`scatter3x3_impl`], vectorized for the CPU at hand.
    fn scatter3x3 => scatter3x3_impl(
        d: &Dims,
        saved: &Saved,
        cells: &[u32],
        ga: &[f32],
        out: (&mut [f32], usize),
        q: &mut [f32],
    )
}

/// For the tile of cells `cells` with first-layer gradients `ga` (`[m,
/// hd]`): `q = ga W^T` (`[m, 9 * ci]`), then each tap's part added to the
/// neighbour it came from, in `out` (`[.., ci]`, starting at cell `lo`).
#[inline(always)]
fn scatter3x3_impl(
    d: &Dims,
    saved: &Saved,
    cells: &[u32],
    ga: &[f32],
    (out, lo): (&mut [f32], usize),
    q: &mut [f32],
) {
    let (ci, hd, m) = (d.ci(), d.hd, cells.len());
    let First::Conv { w: wo, .. } = saved.weights.pack.first else {
        unreachable!("scatter3x3 is for a full 3x3 perception");
    };
    let wc = &saved.weights.v[wo..wo + 9 * ci * hd];
    let q = &mut q[..m * 9 * ci];
    matmul((m, 9 * ci, hd), q, 9 * ci, false, (ga, hd, 1), (wc, 1, hd));
    for (row, &n) in q.chunks_exact(9 * ci).zip(cells) {
        for (t, j) in taps(d, n as usize, false) {
            let o = &mut out[(j - lo) * ci..(j - lo + 1) * ci];
            for (a, v) in o.iter_mut().zip(&row[t * ci..(t + 1) * ci]) {
                *a += v;
            }
        }
    }
}

/// The backward of the cell MLP on the tile of cells `cells`: `rec` the
/// tile's activations, `gc` the gradient at the mixed candidate (`[m, S]`).
/// Writes the residual path's gradient into `gres` (`[m, S]`), the gradient
/// at the first layer's input side into `ga` (`[m, hd]` before the 3x3
/// weight, or `[m, S + E]` at the depthwise output), and accumulates the
/// weight gradients into `acc` (internal layout).
#[inline(always)]
fn tile_backward_impl(
    d: &Dims,
    saved: &Saved,
    cells: &[u32],
    inputs: (&[f32], &[f32]),
    outputs: (&mut [f32], &mut [f32]),
    scr: &mut Scratch,
    acc: &mut [f32],
) {
    let ((rec, gc), (gres, ga)) = (inputs, outputs);
    let tile = Tile {
        d,
        saved,
        cells,
        rec,
        rl: d.record(TILE),
    };
    let (m, s) = (cells.len(), d.s);
    let (gu, gg) = (&mut scr.gu[..m * s], &mut scr.gg[..m]);
    reset_mix_backward(&tile, gc, gu, gg);
    if d.residual {
        gres[..m * s].copy_from_slice(gu);
    }
    let [mut gh, mut gh2] = std::mem::take(&mut scr.gh);
    update_backward(&tile, (gu, gg), &mut gh, acc);
    hidden_backward(&tile, (&mut gh, &mut gh2), acc);
    perception_backward(&tile, &gh[..m * d.hd], scr, ga, acc);
    scr.gh = [gh, gh2];
}

/// One tile of firing cells as its backward reads it: the dimensions, what
/// the forward kept, the tile's cells and its record of activations.
struct Tile<'a> {
    d: &'a Dims,
    saved: &'a Saved,
    cells: &'a [u32],
    rec: &'a [f32],
    rl: Record,
}

impl Tile<'_> {
    /// The tile's activations `h_k`, `[m, hd]`.
    #[inline(always)]
    fn h(&self, k: usize) -> &[f32] {
        let start = self.rl.h(k);
        &self.rec[start..start + self.cells.len() * self.d.hd]
    }
}

/// Through the reset mix: `gu` (`[m, S]`) the gradient
/// at the update, `gg` (`[m]`) at the reset gate's logit, from `gc` at the
/// mixed candidate. (The helpers of [`tile_backward_impl`] are
/// `inline(always)` so that they are compiled inside its AVX2 copy.)
#[inline(always)]
fn reset_mix_backward(t: &Tile, gc: &[f32], gu: &mut [f32], gg: &mut [f32]) {
    let (d, s, m) = (t.d, t.d.s, t.cells.len());
    let cand = &t.rec[t.rl.cand()..t.rl.cand() + m * s];
    for i in 0..m {
        let (g, gur) = (&gc[i * s..(i + 1) * s], &mut gu[i * s..(i + 1) * s]);
        if d.reset {
            let r = t.rec[t.rl.r() + i];
            let z = &t.rec[t.rl.z() + i * s..t.rl.z() + (i + 1) * s];
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
    }
}

/// The update layer (and the reset gate) back to the last hidden layer:
/// their weight gradients into `acc`, the gradient at `h_L` into `gh`.
#[inline(always)]
fn update_backward(t: &Tile, (gu, gg): (&[f32], &[f32]), gh: &mut [f32], acc: &mut [f32]) {
    let (s, hd, m) = (t.d.s, t.d.hd, t.cells.len());
    let w = &t.saved.weights;
    let v = &w.v;
    let hl = t.h(t.d.layers);
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
}

/// The hidden layers, last to first, through their ReLUs, down to the
/// gradient at the perception's output (left in `gh.0`).
#[inline(always)]
fn hidden_backward(t: &Tile, (gh, gh2): (&mut Vec<f32>, &mut Vec<f32>), acc: &mut [f32]) {
    let (hd, m) = (t.d.hd, t.cells.len());
    let w = &t.saved.weights;
    for k in (0..t.d.layers).rev() {
        let (wo, bo) = w.pack.hidden[k];
        relu_mask(gh, hd, t.h(k + 1), hd, (m, hd));
        let ghm = &gh[..m * hd];
        matmul(
            (hd, hd, m),
            &mut acc[wo..wo + hd * hd],
            hd,
            true,
            (t.h(k), 1, hd),
            (ghm, hd, 1),
        );
        add_colsum(&mut acc[bo..bo + hd], ghm, hd, m);
        let wk = &w.v[wo..wo + hd * hd];
        matmul(
            (m, hd, hd),
            &mut gh2[..m * hd],
            hd,
            false,
            (ghm, hd, 1),
            (wk, 1, hd),
        );
        std::mem::swap(gh, gh2);
    }
    relu_mask(gh, hd, t.h(0), hd, (m, hd));
}

/// The perception layer: its weight gradients into `acc` from `ghm`, the
/// gradient at its output (`[m, hd]`); the gradient at its input side into
/// `ga` (`[m, hd]` before the 3x3 weight, `[m, S + E]` at the depthwise
/// output).
#[inline(always)]
fn perception_backward(t: &Tile, ghm: &[f32], scr: &mut Scratch, ga: &mut [f32], acc: &mut [f32]) {
    let (d, cells, x) = (t.d, t.cells, &t.saved.x);
    let (ci, hd, m) = (d.ci(), d.hd, cells.len());
    let v = &t.saved.weights.v;
    match t.saved.weights.pack.first {
        First::Conv { w: wo, b: bo } => {
            gather3x3(d, x, ci, cells, &mut scr.p);
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
            depthwise(d, x, cells, (&v[dw..dw + 9 * ci], &v[db..db + ci]), dwo);
            let gpw = &mut acc[pw..pw + ci * hd];
            matmul((ci, hd, m), gpw, hd, true, (dwo, 1, ci), (ghm, hd, 1));
            add_colsum(&mut acc[pb..pb + hd], ghm, hd, m);
            let gd = &mut ga[..m * ci];
            let wp = &v[pw..pw + ci * hd];
            matmul((m, ci, hd), gd, ci, false, (ghm, hd, 1), (wp, 1, hd));
            add_colsum(&mut acc[db..db + ci], gd, ci, m);
            for (gdr, &n) in gd.chunks_exact(ci).zip(cells) {
                for (t, j) in taps(d, n as usize, false) {
                    let gwt = &mut acc[dw + t * ci..dw + (t + 1) * ci];
                    for ((a, gv), xv) in gwt.iter_mut().zip(gdr).zip(&x[j * ci..]) {
                        *a += gv * xv;
                    }
                }
            }
        }
    }
}

with_avx2! {
    /// [`tile_backward_impl`], vectorized for the CPU at hand.
    fn tile_backward => tile_backward_impl(
        d: &Dims,
        saved: &Saved,
        cells: &[u32],
        inputs: (&[f32], &[f32]),
        outputs: (&mut [f32], &mut [f32]),
        scr: &mut Scratch,
        acc: &mut [f32],
    )
}

/// For a depthwise perception, the gradient at `x` of the cells from `n0`
/// on (`gx`, `[m, S + E]`): the flipped depthwise filter applied to `ga`
/// (`[N, S + E]`, zero where a cell does not fire), plus `gs` (`[m, S]`) on
/// the state channels.
fn depthwise_input_grad(
    d: &Dims,
    saved: &Saved,
    ga: &[f32],
    n0: usize,
    (gx, gs): (&mut [f32], &[f32]),
) {
    let (s, ci) = (d.s, d.ci());
    let First::Depthwise { dw, .. } = saved.weights.pack.first else {
        unreachable!("depthwise_input_grad is for a depthwise perception");
    };
    let wdw = &saved.weights.v[dw..dw + 9 * ci];
    for (i, (row, gsr)) in gx.chunks_exact_mut(ci).zip(gs.chunks_exact(s)).enumerate() {
        row.fill(0.0);
        add_depthwise(d, ga, wdw, (n0 + i, true), row);
        for (o, gv) in row.iter_mut().zip(gsr) {
            *o += gv;
        }
    }
}
