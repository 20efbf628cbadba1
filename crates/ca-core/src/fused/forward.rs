//! The forward pass of the fused step: per tile of firing cells, the whole
//! cell MLP (3x3 perception as an im2col GEMM or a depthwise filter plus a
//! 1x1 GEMM, hidden 1x1 GEMMs, the update, the residual and the reset mix);
//! then the normalization over the firing cells and the masked update.
//! Cells that do not fire are never evaluated: they keep their state.

use rayon::iter::Either;
use rayon::prelude::*;

use super::layout::{
    from_nhwc, gather3x3, gather_noise, taps, to_nhwc, Dims, Firing, First, Weights,
};
use super::linalg::{bias_relu, matmul, with_avx2};
use super::norm::{self, Stats};
use super::pool;

/// Cells per tile: the unit of work of one task, sized so that a tile's
/// im2col matrix and activations stay in the L2 cache.
pub(crate) const TILE: usize = 192;

/// Per-thread scratch buffers, sized for one tile and kept between steps
/// (fresh large allocations cost a page fault per 4 KiB).
#[derive(Default)]
pub(crate) struct Scratch {
    /// im2col matrix, `[TILE, 9 * max(S + E, hd)]`.
    pub p: Vec<f32>,
    /// Depthwise output, `[TILE, S + E]`.
    pub dw: Vec<f32>,
    /// One tile's activations when the forward does not keep them.
    pub rec: Vec<f32>,
    /// Gradient at the update, `[TILE, S]`.
    pub gu: Vec<f32>,
    /// Gradients at hidden activations, `[TILE, hd]` each.
    pub gh: [Vec<f32>; 2],
    /// Gradient at the reset gate's logit, `[TILE]`.
    pub gg: Vec<f32>,
}

impl Scratch {
    /// Grows the buffers to fit a step of `d`.
    fn fit(&mut self, d: &Dims) {
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        grow(&mut self.p, TILE * 9 * d.ci().max(d.hd));
        grow(&mut self.dw, TILE * d.ci());
        grow(&mut self.rec, d.record(TILE).len());
        grow(&mut self.gu, TILE * d.s);
        grow(&mut self.gh[0], TILE * d.hd);
        grow(&mut self.gh[1], TILE * d.hd);
        grow(&mut self.gg, TILE);
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch, grown to fit `d`. `f` must not
/// start rayon work (it would nest a second borrow on this thread).
pub(crate) fn with_scratch<R>(d: &Dims, f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.fit(d);
        f(&mut s)
    })
}

/// The inputs of one step, each contiguous f32 data of its NCHW tensor.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    /// The state, `[B, S, H, W]`.
    pub state: &'a [f32],
    /// The environment (the image, or the encoder's features), `[B, E, H,
    /// W]`.
    pub env: &'a [f32],
    /// The rule's parameters, packed (see [`super::layout::Packing`]).
    pub packed: &'a [f32],
    /// The update mask, `[B, 1, H, W]`.
    pub mask: &'a [f32],
    /// The reset noise, `[B, S, H, W]`, with a reset gate.
    pub noise: Option<&'a [f32]>,
}

/// What the forward keeps for the backward.
pub(crate) struct Saved {
    /// The parameters in internal layout.
    pub weights: Weights,
    /// The cells' inputs, state and environment side by side, `[N, S + E]`.
    pub x: Vec<f32>,
    /// The firing cells (with their masks), whose rows the buffers below
    /// hold.
    pub firing: Firing,
    /// The activations and the reset noise, one [`super::layout::Record`]
    /// per tile of rows.
    pub rec: Vec<f32>,
    /// The normalized candidate, `[rows, S]`.
    pub y: Vec<f32>,
    /// The normalization's statistics.
    pub stats: Stats,
}

impl Drop for Saved {
    /// Gives the step's large buffers back to the pool.
    fn drop(&mut self) {
        for v in [&mut self.x, &mut self.rec, &mut self.y] {
            pool::give(std::mem::take(v));
        }
    }
}

/// The result of the forward pass.
pub(crate) struct Output {
    /// The new state, `[B, S, H, W]`.
    pub out: Vec<f32>,
    /// What the backward needs, when asked for.
    pub saved: Option<Saved>,
}

/// One step of `inputs`; keeps the activations when `save`. The cell MLP
/// runs on the firing cells only (nonzero mask), in tiles of `TILE` rows.
pub(crate) fn forward(d: &Dims, inputs: Inputs<'_>, save: bool) -> Output {
    let (s, hw) = (d.s, d.hw());
    let weights = Weights::new(d, inputs.packed);
    let mut x = to_nhwc(&[(inputs.state, s), (inputs.env, d.e)], d.b, hw);
    let firing = Firing::new(d, inputs.mask);
    let noise = inputs.noise.filter(|_| d.reset);
    let rows = firing.rows();
    // Every row of `y` is written by its tile, and every part of `rec` the
    // backward reads (the rows of each tile's cells): recycled buffers.
    let mut y = pool::take(rows * s);
    let (tiles, record) = (rows.div_ceil(TILE), d.record(TILE));
    // Where each tile writes its activations, decided once: its part of
    // `rec` when they are kept, else (`None`) its thread's scratch.
    let mut rec = pool::take(if save { tiles * record.len() } else { 0 });
    let places = if save {
        Either::Left(rec.par_chunks_mut(record.len()).map(Some))
    } else {
        Either::Right(rayon::iter::repeat_n((), tiles).map(|()| None))
    };
    y.par_chunks_mut(TILE * s)
        .zip(firing.cells.par_chunks(TILE))
        .zip(places)
        .for_each(|((yt, cells), kept)| {
            with_scratch(d, |scr| {
                let r = kept.unwrap_or(&mut scr.rec[..record.len()]);
                if let Some(noise) = noise {
                    let zt = &mut r[record.z()..record.z() + cells.len() * s];
                    gather_noise(d, noise, cells, zt);
                }
                tile(d, &weights, &x, cells, &mut scr.p, &mut scr.dw, r, yt)
            })
        });
    let stats = norm::normalize(d, &firing.starts, &mut y);
    let out = if save {
        new_state(d, inputs.state, &firing, &y)
    } else {
        // Nothing keeps `x`: mix the firing cells into its state columns
        // (along its rows) and transpose those back.
        firing.for_each_cell(&mut x, d.ci(), |cell, k| {
            let m = firing.mask[k];
            for (o, &yv) in cell[..s].iter_mut().zip(&y[k * s..(k + 1) * s]) {
                *o += m * (yv - *o);
            }
        });
        from_nhwc(&x, (d.b, hw, d.ci()), 0..s)
    };
    let saved = Saved {
        weights,
        x,
        firing,
        rec,
        y,
        stats,
    };
    // Without a backward to come, the buffers go back to the pool now.
    let saved = save.then_some(saved);
    Output { out, saved }
}

/// Firing rows per task of [`new_state`]'s mix: the block's rows of `y`
/// (`[ROW_BLOCK, S]`) and the lines of the output they touch stay in L1
/// while it is written channel by channel.
const ROW_BLOCK: usize = 64;

/// Elements per task of [`new_state`]'s copy of the old state.
const COPY_BLOCK: usize = 1 << 15;

/// The new state `[B, S, H, W]`: the old state `state`, with each firing
/// cell moved towards its normalized candidate (`y`, `[rows, S]`) by its
/// mask value. Two parallel passes: the copy in blocks of `COPY_BLOCK`,
/// then the mix in blocks of `ROW_BLOCK` firing rows, channel by channel,
/// so that `y` is read along its rows and a block's writes stay in L1.
fn new_state(d: &Dims, state: &[f32], firing: &Firing, y: &[f32]) -> Vec<f32> {
    let (s, hw) = (d.s, d.hw());
    let mut out = Vec::with_capacity(state.len());
    out.spare_capacity_mut()[..state.len()]
        .par_chunks_mut(COPY_BLOCK)
        .zip(state.par_chunks(COPY_BLOCK))
        .for_each(|(o, old)| {
            for (o, &v) in o.iter_mut().zip(old) {
                o.write(v);
            }
        });
    // SAFETY: the capacity is `state.len()` and every element was written
    // above.
    unsafe { out.set_len(state.len()) };
    let at = SharedOut(out.as_mut_ptr(), out.len());
    firing
        .cells
        .par_chunks(ROW_BLOCK)
        .zip(firing.mask.par_chunks(ROW_BLOCK))
        .zip(y.par_chunks(ROW_BLOCK * s))
        .for_each(|((cells, mask), yb)| {
            // Where each cell's channel 0 lies in the output.
            let mut base = [0usize; ROW_BLOCK];
            for (b, &n) in base.iter_mut().zip(cells) {
                let n = n as usize;
                *b = n / hw * s * hw + n % hw;
            }
            for c in 0..s {
                for ((&b, &m), yr) in base.iter().zip(mask).zip(yb.chunks_exact(s)) {
                    let o = at.element(b + c * hw);
                    // SAFETY: `o` is channel `c` of a firing cell of this
                    // task, within `out` (`element` checks the bound); each
                    // firing cell is in one task only, so no two tasks
                    // touch the same element, and `out` is not otherwise
                    // used while they run.
                    unsafe { *o += m * (yr[c] - *o) };
                }
            }
        });
    out
}

/// The output of [`new_state`], shared by tasks that write disjoint
/// elements of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32, usize);

// SAFETY: the tasks holding it write disjoint elements (see `new_state`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A pointer to element `i` (panics unless `i` is below the length);
    /// writing through it is the caller's to make exclusive.
    fn element(self, i: usize) -> *mut f32 {
        assert!(i < self.1, "element {i} of {}", self.1);
        // In bounds (asserted), so within the allocation.
        self.0.wrapping_add(i)
    }
}

with_avx2! {
    /// [`tile_impl`], vectorized for the CPU at hand.
    fn tile => tile_impl(
        d: &Dims,
        w: &Weights,
        x: &[f32],
        cells: &[u32],
        p: &mut [f32],
        dwo: &mut [f32],
        rec: &mut [f32],
        y: &mut [f32],
    )
}

/// The depthwise 3x3 filter (zero padding) of the cells `cells` of `x`
/// (`[N, ci]`) with taps `wdw` (`[9, ci]`) and bias `bias`, into `out`
/// (`[cells.len(), ci]`).
#[inline(always)]
pub(crate) fn depthwise(
    d: &Dims,
    x: &[f32],
    cells: &[u32],
    (wdw, bias): (&[f32], &[f32]),
    out: &mut [f32],
) {
    for (row, &n) in out.chunks_exact_mut(d.ci()).zip(cells) {
        row.copy_from_slice(bias);
        add_depthwise(d, x, wdw, (n as usize, false), row);
    }
}

/// Adds to `row` (`[ci]`) the depthwise 3x3 filter `wdw` (`[9, ci]`, zero
/// padding) of `src` (`[N, ci]`) at cell `n`; with `flip` the filter is
/// flipped (its transpose, which gives the input gradient).
#[inline(always)]
pub(crate) fn add_depthwise(
    d: &Dims,
    src: &[f32],
    wdw: &[f32],
    (n, flip): (usize, bool),
    row: &mut [f32],
) {
    let ci = d.ci();
    for (t, j) in taps(d, n, flip) {
        let (xs, ws) = (&src[j * ci..(j + 1) * ci], &wdw[t * ci..(t + 1) * ci]);
        for ((o, xv), wv) in row.iter_mut().zip(xs).zip(ws) {
            *o += xv * wv;
        }
    }
}

/// The cell MLP of the tile of cells `cells`, from the NHWC input `x`
/// (`[N, S + E]`) and the tile's reset noise in `rec` (one tile's
/// [`super::layout::Record`]); writes the activations into `rec` and the
/// mixed candidate into `y` (`[m, S]`, `m = cells.len()`); `p` and `dw` are
/// scratch.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_impl(
    d: &Dims,
    w: &Weights,
    x: &[f32],
    cells: &[u32],
    p: &mut [f32],
    dwo: &mut [f32],
    rec: &mut [f32],
    y: &mut [f32],
) {
    let (m, hd) = (cells.len(), d.hd);
    let rl = d.record(TILE);
    perception_forward(d, w, x, cells, (p, dwo), &mut rec[..m * hd]);
    for (k, &(wo, bo)) in w.pack.hidden.iter().enumerate() {
        let (lo, hi) = rec.split_at_mut(rl.h(k + 1));
        let (hin, hout) = (&lo[rl.h(k)..rl.h(k) + m * hd], &mut hi[..m * hd]);
        matmul(
            (m, hd, hd),
            hout,
            hd,
            false,
            (hin, hd, 1),
            (&w.v[wo..wo + hd * hd], hd, 1),
        );
        bias_relu(hout, hd, m, &w.v[bo..bo + hd]);
    }
    update_forward(d, w, x, cells, rec, y);
}

/// The perception layer of the tile: `h0` (`[m, hd]`, after the ReLU) from
/// `x`; `p` (im2col) and `dwo` (depthwise output) are scratch. (The
/// helpers of [`tile_impl`] are `inline(always)` so that they are compiled
/// inside its AVX2 copy.)
#[inline(always)]
fn perception_forward(
    d: &Dims,
    w: &Weights,
    x: &[f32],
    cells: &[u32],
    (p, dwo): (&mut [f32], &mut [f32]),
    h0: &mut [f32],
) {
    let (ci, hd, m) = (d.ci(), d.hd, cells.len());
    let v = &w.v;
    match w.pack.first {
        First::Conv { w: wo, b: bo } => {
            gather3x3(d, x, ci, cells, p);
            let wc = &v[wo..wo + 9 * ci * hd];
            matmul((m, hd, 9 * ci), h0, hd, false, (p, 9 * ci, 1), (wc, hd, 1));
            bias_relu(h0, hd, m, &v[bo..bo + hd]);
        }
        First::Depthwise { dw, db, pw, pb } => {
            let dwo = &mut dwo[..m * ci];
            depthwise(d, x, cells, (&v[dw..dw + 9 * ci], &v[db..db + ci]), dwo);
            let wp = &v[pw..pw + ci * hd];
            matmul((m, hd, ci), h0, hd, false, (dwo, ci, 1), (wp, hd, 1));
            bias_relu(h0, hd, m, &v[pb..pb + hd]);
        }
    }
}

/// The update layer, the residual and the reset mix of the tile: the
/// candidate and the gate into `rec`, the mixed candidate into `y`
/// (`[m, S]`), from the last hidden activations and the reset noise in
/// `rec`, and `x`.
#[inline(always)]
fn update_forward(d: &Dims, w: &Weights, x: &[f32], cells: &[u32], rec: &mut [f32], y: &mut [f32]) {
    let (s, ci, hd) = (d.s, d.ci(), d.hd);
    let m = cells.len();
    let rl = d.record(TILE);
    let v = &w.v;
    let (lo, hi) = rec.split_at_mut(rl.cand());
    let hl = &lo[rl.h(d.layers)..rl.h(d.layers) + m * hd];
    let (cand, hi) = hi.split_at_mut(rl.r() - rl.cand());
    let (gate, z) = hi.split_at_mut(rl.z() - rl.r());
    let cand = &mut cand[..m * s];
    let (wu, bu) = w.pack.update;
    matmul(
        (m, s, hd),
        cand,
        s,
        false,
        (hl, hd, 1),
        (&v[wu..wu + hd * s], s, 1),
    );
    for (i, &n) in cells.iter().enumerate() {
        let n = n as usize;
        let row = &mut cand[i * s..(i + 1) * s];
        for (c, u) in row.iter_mut().enumerate() {
            *u += v[bu + c];
            if d.residual {
                *u += x[n * ci + c];
            }
        }
        let yrow = &mut y[i * s..(i + 1) * s];
        match w.pack.reset {
            Some((wr, br)) => {
                let hrow = &hl[i * hd..(i + 1) * hd];
                let logit: f32 = hrow
                    .iter()
                    .zip(&v[wr..wr + hd])
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    + v[br];
                let r = 1.0 / (1.0 + (-logit).exp());
                gate[i] = r;
                let z = &z[i * s..(i + 1) * s];
                for ((yv, zv), cv) in yrow.iter_mut().zip(z).zip(row.iter()) {
                    *yv = r * zv + (1.0 - r) * cv;
                }
            }
            None => yrow.copy_from_slice(row),
        }
    }
}
