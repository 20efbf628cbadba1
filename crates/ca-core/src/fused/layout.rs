//! Shapes, buffer layouts and parameter packing of the fused step.
//!
//! Inside the fused step every per-cell buffer is NHWC: cell `n = (b * H +
//! y) * W + x` holds its channels contiguously. The interface tensors are
//! NCHW and are transposed on the way in and out.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::config::{CellConfig, Norm, Perception};

/// Everything the kernels need to know about one step's shapes and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    /// Batch size `B`.
    pub b: usize,
    /// Grid height.
    pub h: usize,
    /// Grid width.
    pub w: usize,
    /// State channels `S`.
    pub s: usize,
    /// Environment channels `E`.
    pub e: usize,
    /// Hidden channels.
    pub hd: usize,
    /// Hidden `hd -> hd` layers after the perception layer.
    pub layers: usize,
    /// Whether the perception is depthwise + pointwise (else a full 3x3).
    pub depthwise: bool,
    /// The normalization of the candidate.
    pub norm: Norm,
    /// `s + U` (true) or `U` (false).
    pub residual: bool,
    /// Whether the reset gate is applied (and its parameters packed).
    pub reset: bool,
}

impl Dims {
    /// The dims of a step of `config` on a `[b, _, h, w]` grid.
    pub fn new(config: &CellConfig, reset: bool, (b, h, w): (usize, usize, usize)) -> Self {
        Dims {
            b,
            h,
            w,
            s: config.state_channels,
            e: config.env_channels,
            hd: config.hidden_channels,
            layers: config.hidden_layers,
            depthwise: config.perception != Perception::Conv3x3,
            norm: config.norm,
            residual: config.residual,
            reset,
        }
    }

    /// `S + E`, the channels the perception reads.
    pub fn ci(&self) -> usize {
        self.s + self.e
    }

    /// Cells of one image, `H * W`.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    /// Cells of the batch, `B * H * W`.
    pub fn cells(&self) -> usize {
        self.b * self.hw()
    }

    /// The layout of the activations the forward keeps for a tile of
    /// `tile` cells (see [`Record`]).
    pub fn record(&self, tile: usize) -> Record {
        Record {
            tile,
            hd: self.hd,
            s: self.s,
            layers: self.layers,
            reset: self.reset,
        }
    }

    /// Width of the first layer's input gradient, the buffer the transposed
    /// 3x3 pass gathers from: `hd` for a full 3x3, `S + E` for depthwise.
    pub fn first_grad_width(&self) -> usize {
        if self.depthwise {
            self.ci()
        } else {
            self.hd
        }
    }
}

/// The activations the forward keeps for one tile of up to `tile` cells,
/// field after field, each row-major over the tile's cells: the hidden
/// activations `h_0 .. h_L` (after ReLU, `[tile, hd]` each), the candidate
/// before the reset mix (`s + U` or `U`, `[tile, S]`) and the reset gate
/// `r` (`[tile]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Cells per tile.
    pub tile: usize,
    hd: usize,
    s: usize,
    layers: usize,
    reset: bool,
}

impl Record {
    /// Offset of `h_k`.
    pub fn h(&self, k: usize) -> usize {
        k * self.hd * self.tile
    }

    /// Offset of the candidate.
    pub fn cand(&self) -> usize {
        self.h(self.layers + 1)
    }

    /// Offset of `r`.
    pub fn r(&self) -> usize {
        self.cand() + self.s * self.tile
    }

    /// Offset of the reset noise of the tile's cells, `[tile, S]` (none
    /// without a reset gate).
    pub fn z(&self) -> usize {
        self.r() + self.tile
    }

    /// Floats per tile.
    pub fn len(&self) -> usize {
        self.z() + if self.reset { self.s * self.tile } else { 0 }
    }
}

/// Where each tensor lies in the packed parameter vector. The packed vector
/// concatenates the flattened rule tensors in the order of
/// [`crate::CellParams::named`] (classifier left out, reset gate only when
/// used); the internal copy uses the same ranges, but each weight is
/// transposed to `[in, out]` row-major (the 3x3 weight to `[9 * ci, hd]`
/// with row `t * ci + c` for tap `t = 3 * ky + kx`, the depthwise weight to
/// `[9, ci]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packing {
    /// The perception layer.
    pub first: First,
    /// `(weight, bias)` offsets of the hidden layers.
    pub hidden: Vec<(usize, usize)>,
    /// Update weight `[hd, S]` and bias `[S]`.
    pub update: (usize, usize),
    /// Reset weight `[hd]` and bias `[1]`.
    pub reset: Option<(usize, usize)>,
    /// Total floats.
    pub len: usize,
}

/// Offsets of the perception layer's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum First {
    /// 3x3 weight `[9 * ci, hd]` and bias `[hd]`.
    Conv { w: usize, b: usize },
    /// Depthwise weight `[9, ci]`, bias `[ci]`, pointwise `[ci, hd]`, bias `[hd]`.
    Depthwise {
        dw: usize,
        db: usize,
        pw: usize,
        pb: usize,
    },
}

impl Packing {
    /// The packing of `d`'s parameters.
    pub fn new(d: &Dims) -> Self {
        let (ci, hd, s) = (d.ci(), d.hd, d.s);
        let mut at = 0;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let first = if d.depthwise {
            First::Depthwise {
                dw: take(9 * ci),
                db: take(ci),
                pw: take(ci * hd),
                pb: take(hd),
            }
        } else {
            First::Conv {
                w: take(9 * ci * hd),
                b: take(hd),
            }
        };
        let hidden = (0..d.layers).map(|_| (take(hd * hd), take(hd))).collect();
        let update = (take(hd * s), take(s));
        let reset = d.reset.then(|| (take(hd), take(1)));
        Packing {
            first,
            hidden,
            update,
            reset,
            len: at,
        }
    }

    /// `perm[i]`: the index in the packed (PyTorch-layout) vector of the
    /// internal element `i`. Biases map to themselves.
    fn permutation(&self, d: &Dims) -> Vec<usize> {
        let (ci, hd, s) = (d.ci(), d.hd, d.s);
        let mut perm: Vec<usize> = (0..self.len).collect();
        // An `[out, in]` weight stored internally as `[in, out]`.
        let transposed = |perm: &mut [usize], at: usize, out: usize, inp: usize| {
            for i in 0..inp {
                for o in 0..out {
                    perm[at + i * out + o] = at + o * inp + i;
                }
            }
        };
        match self.first {
            First::Conv { w, .. } => {
                // Internal (t * ci + c, o) <- original [o, c, t].
                for t in 0..9 {
                    for c in 0..ci {
                        for o in 0..hd {
                            perm[w + (t * ci + c) * hd + o] = w + (o * ci + c) * 9 + t;
                        }
                    }
                }
            }
            First::Depthwise { dw, pw, .. } => {
                transposed(&mut perm, dw, ci, 9);
                transposed(&mut perm, pw, hd, ci);
            }
        }
        for &(w, _) in &self.hidden {
            transposed(&mut perm, w, hd, hd);
        }
        transposed(&mut perm, self.update.0, s, hd);
        perm
    }
}

/// The rule's parameters in internal layout.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    /// Offsets into `v`.
    pub pack: Packing,
    /// The internal copy (see [`Packing`]).
    pub v: Vec<f32>,
    perm: Vec<usize>,
}

impl Weights {
    /// Internal weights from the packed vector `packed` (PyTorch layouts).
    pub fn new(d: &Dims, packed: &[f32]) -> Self {
        let pack = Packing::new(d);
        let perm = pack.permutation(d);
        let v = perm.iter().map(|&j| packed[j]).collect();
        Weights { pack, v, perm }
    }

    /// A gradient in internal layout, returned in the packed layout.
    pub fn to_packed(&self, internal: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; internal.len()];
        for (g, &j) in internal.iter().zip(&self.perm) {
            out[j] = *g;
        }
        out
    }
}

/// The firing cells of a step: those whose update mask is nonzero. Only
/// they run the cell MLP; the others keep their state. Their per-cell
/// buffers ("rows") are compact, in cell order, so the rows of image `b`
/// are `starts[b] .. starts[b + 1]`.
#[derive(Debug, Clone)]
pub(crate) struct Firing {
    /// Cell index of each row, increasing.
    pub cells: Vec<u32>,
    /// The mask value of each row (nonzero).
    pub mask: Vec<f32>,
    /// Row offsets of the images, `B + 1` entries.
    pub starts: Vec<usize>,
    /// Row of each cell, `u32::MAX` for a cell that does not fire.
    pub row_of: Vec<u32>,
}

impl Firing {
    /// The firing cells of the update mask `mask` (`[B, 1, H, W]`).
    pub fn new(d: &Dims, mask_draws: &[f32]) -> Self {
        let hw = d.hw();
        let mut cells = Vec::with_capacity(d.cells());
        let mut mask = Vec::with_capacity(d.cells());
        let mut starts = Vec::with_capacity(d.b + 1);
        let mut row_of = vec![u32::MAX; d.cells()];
        for img in 0..d.b {
            starts.push(cells.len());
            let plane = &mask_draws[img * hw..(img + 1) * hw];
            for (p, &m) in plane.iter().enumerate() {
                if m != 0.0 {
                    let n = img * hw + p;
                    row_of[n] = cells.len() as u32;
                    cells.push(n as u32);
                    mask.push(m);
                }
            }
        }
        starts.push(cells.len());
        Firing {
            cells,
            mask,
            starts,
            row_of,
        }
    }

    /// Number of rows (firing cells).
    pub fn rows(&self) -> usize {
        self.cells.len()
    }

    /// Runs `f(cell, row)` on the slice `cell` of `buf` (`[N, width]`) of
    /// every firing cell, `row` its row, in parallel.
    pub fn for_each_cell(
        &self,
        buf: &mut [f32],
        width: usize,
        f: impl Fn(&mut [f32], usize) + Sync + Send,
    ) {
        buf.par_chunks_mut(width)
            .zip(self.row_of.par_iter())
            .with_min_len(256)
            .filter(|(_, &k)| k != u32::MAX)
            .for_each(|(cell, &k)| f(cell, k as usize));
    }
}

/// The reset noise of the cells `cells` into `z` (`[cells.len(), S]`) from
/// the noise draws `[B, S, H, W]`: in blocks of 64 cells, channel by
/// channel, so that the noise is read along its planes and the block of
/// `z` stays in L1.
pub(crate) fn gather_noise(d: &Dims, noise: &[f32], cells: &[u32], z: &mut [f32]) {
    let (s, hw) = (d.s, d.hw());
    for (zb, cells) in z.chunks_mut(NOISE_BLOCK * s).zip(cells.chunks(NOISE_BLOCK)) {
        // Where each cell's channel 0 lies in the noise.
        let mut at = [0usize; NOISE_BLOCK];
        for (a, &n) in at.iter_mut().zip(cells) {
            let (img, p) = (n as usize / hw, n as usize % hw);
            *a = img * s * hw + p;
        }
        for c in 0..s {
            for (i, &a) in at[..cells.len()].iter().enumerate() {
                zb[i * s + c] = noise[a + c * hw];
            }
        }
    }
}

/// Cells per block of [`gather_noise`].
const NOISE_BLOCK: usize = 64;

/// Side of a block when transposing; keeps a block of either side in L1.
const TRANSPOSE_BLOCK: usize = 64;

/// Each of the `b` row-major `[rows, cols]` matrices of `src`, transposed to
/// `[cols, rows]`: NCHW to NHWC with `(rows, cols) = (C, HW)`, NHWC to NCHW
/// with `(HW, C)`.
pub(crate) fn transpose(src: &[f32], b: usize, (rows, cols): (usize, usize)) -> Vec<f32> {
    let len = rows * cols;
    filled(b, len, rows, |img, j0, d| {
        let n = d.len() / rows;
        transpose_into(
            &src[img * len + j0..(img + 1) * len],
            cols,
            d,
            rows,
            (rows, n),
        )
    })
}

/// The NHWC buffer `[B, H, W, C]` of NCHW parts laid side by side along the
/// channels (e.g. the state `[B, S, H, W]` and the environment `[B, E, H,
/// W]` give `[B, H, W, S + E]`); `parts` are `(data, channels)`.
pub(crate) fn to_nhwc(parts: &[(&[f32], usize)], b: usize, hw: usize) -> Vec<f32> {
    let ci: usize = parts.iter().map(|&(_, c)| c).sum();
    filled(b, hw * ci, ci, |img, p0, d| {
        let n = d.len() / ci;
        let mut c0 = 0;
        for &(src, c) in parts {
            let part = &src[img * c * hw + p0..(img + 1) * c * hw];
            transpose_into(part, hw, &mut d[c0..], ci, (c, n));
            c0 += c;
        }
    })
}

/// The channels `channels` of the NHWC buffer `src` (`[B, H, W, C]`, `C =
/// ci`) as an NCHW one, `[B, channels.len(), H, W]`.
pub(crate) fn from_nhwc(
    src: &[f32],
    (b, hw, ci): (usize, usize, usize),
    channels: std::ops::Range<usize>,
) -> Vec<f32> {
    let c = channels.len();
    filled(b, c * hw, hw, |img, c0, d| {
        let image = &src[img * hw * ci..(img + 1) * hw * ci];
        transpose_into(&image[channels.start + c0..], ci, d, hw, (hw, d.len() / hw));
    })
}

/// Elements a task of [`filled`] writes, about: enough to outweigh the
/// cost of a task, few enough that a single large image still spreads over
/// every thread. A task has at least 8 rows: when the rows are channels
/// (NCHW output) each task reads 8 values of every source row, so that a
/// task does not read a whole cache line for one value.
const TASK_ELEMS: usize = 1 << 15;

/// A vector of `blocks` blocks of `len` values, each block made of rows of
/// `row_len` values (`row_len` divides `len`), in a buffer of the step's
/// pool. The rows of each block are written in parallel, in tasks of a few
/// consecutive rows: `fill(block, first_row, rows)` writes the rows
/// starting at row `first_row` of block `block`. The memory is not zeroed
/// first: `fill` must write every element it is given (the transposes
/// above do).
fn filled(
    blocks: usize,
    len: usize,
    row_len: usize,
    fill: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let n = blocks * len;
    let mut v = super::pool::take_empty(n);
    if n > 0 {
        let task_rows = (TASK_ELEMS / row_len).next_multiple_of(8).max(8);
        v.spare_capacity_mut()[..n]
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, block)| {
                block
                    .par_chunks_mut(task_rows * row_len)
                    .enumerate()
                    .for_each(|(t, rows)| fill(i, t * task_rows, rows))
            });
    }
    // SAFETY: the capacity is at least `n` and `fill` wrote every one of
    // the first `n` elements (its contract, kept by its callers: each
    // transposes a full `[rows, cols]` matrix into the rows it is given).
    unsafe { v.set_len(n) };
    v
}

/// `dst[j * dst_stride + i] = src[i * src_stride + j]` for `i < rows`, `j <
/// cols`, in blocks that keep either side in L1: a transpose between
/// strided row-major matrices. The writes run along `dst`'s rows. On x86
/// with AVX, whole 8x8 blocks are transposed in registers (the scalar
/// loop does about one element per cycle; the kernel about eight).
#[inline]
fn transpose_into(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    (rows, cols): (usize, usize),
) {
    if rows == 0 || cols == 0 {
        return;
    }
    // Every index below is under these two bounds.
    assert!(src.len() >= (rows - 1) * src_stride + cols);
    assert!(dst.len() >= (cols - 1) * dst_stride + rows);
    #[cfg(target_arch = "x86_64")]
    let (r8, c8) = if std::arch::is_x86_feature_detected!("avx") {
        let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: the CPU has AVX; the blocks lie within the bounds
        // asserted above (see `transpose_8x8_blocks`).
        unsafe { x86::transpose_8x8_blocks(src, src_stride, dst, dst_stride, (r8, c8)) };
        (r8, c8)
    } else {
        (0, 0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (r8, c8) = (0, 0);
    // What the 8x8 blocks left: the rows from `r8`, then the columns from
    // `c8` of the rows before it.
    transpose_scalar(src, (src_stride, dst_stride), dst, r8..rows, 0..cols);
    transpose_scalar(src, (src_stride, dst_stride), dst, 0..r8, c8..cols);
}

/// The scalar loop of [`transpose_into`] over rows `rows` and columns
/// `cols` of `src` (strides `(src, dst)`), whose bounds the caller has
/// asserted for the whole matrix.
#[inline]
fn transpose_scalar(
    src: &[f32],
    (src_stride, dst_stride): (usize, usize),
    dst: &mut [MaybeUninit<f32>],
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    for i0 in rows.clone().step_by(TRANSPOSE_BLOCK) {
        let i1 = (i0 + TRANSPOSE_BLOCK).min(rows.end);
        for j0 in cols.clone().step_by(TRANSPOSE_BLOCK) {
            let j1 = (j0 + TRANSPOSE_BLOCK).min(cols.end);
            for j in j0..j1 {
                for i in i0..i1 {
                    // SAFETY: i and j lie within the matrix whose bounds
                    // `transpose_into` asserted.
                    unsafe {
                        let v = *src.get_unchecked(i * src_stride + j);
                        dst.get_unchecked_mut(j * dst_stride + i).write(v);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::TRANSPOSE_BLOCK;

    /// The 8x8 blocks of the `[r8, c8]` corner of [`super::transpose_into`]
    /// (`r8`, `c8` multiples of 8), in L1-sized groups of blocks.
    ///
    /// # Safety
    ///
    /// The CPU has AVX, and `src` and `dst` hold the whole `[r8, c8]`
    /// matrix and its transpose at their strides (the bounds
    /// `transpose_into` asserts for the larger matrix).
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose_8x8_blocks(
        src: &[f32],
        ss: usize,
        dst: &mut [MaybeUninit<f32>],
        ds: usize,
        (r8, c8): (usize, usize),
    ) {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr().cast::<f32>());
        for i0 in (0..r8).step_by(TRANSPOSE_BLOCK) {
            for j0 in (0..c8).step_by(TRANSPOSE_BLOCK) {
                for i in (i0..(i0 + TRANSPOSE_BLOCK).min(r8)).step_by(8) {
                    for j in (j0..(j0 + TRANSPOSE_BLOCK).min(c8)).step_by(8) {
                        // SAFETY: rows i..i + 8 and columns j..j + 8 lie
                        // within the matrix (the caller's contract).
                        unsafe { transpose_8x8(s.add(i * ss + j), ss, d.add(j * ds + i), ds) };
                    }
                }
            }
        }
    }

    /// `d[c * ds + r] = s[r * ss + c]` for `r, c < 8`, in eight registers.
    ///
    /// # Safety
    ///
    /// AVX, and eight rows of eight floats readable at `s` and writable at
    /// `d` with those strides.
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn transpose_8x8(s: *const f32, ss: usize, d: *mut f32, ds: usize) {
        // SAFETY: the caller's contract covers every row read and written.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(s.add(k * ss)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (k, v) in out.into_iter().enumerate() {
                _mm256_storeu_ps(d.add(k * ds), v);
            }
        }
    }
}

/// The 3x3 neighbourhood of cell `n`: entry `t` (tap `t = 3 * ky + kx`,
/// offset `(ky - 1, kx - 1)`, negated when `flip`) is the cell there, or
/// `None` past the border (zero padding). The cell's coordinates are
/// worked out once for the nine taps.
#[inline]
pub(crate) fn neighbours(d: &Dims, n: usize, flip: bool) -> [Option<usize>; 9] {
    let hw = d.hw();
    let (img, p) = (n / hw, n % hw);
    let (y, x) = (p / d.w, p % d.w);
    let rows = [y.checked_sub(1), Some(y), (y + 1 < d.h).then_some(y + 1)];
    let cols = [x.checked_sub(1), Some(x), (x + 1 < d.w).then_some(x + 1)];
    std::array::from_fn(|t| {
        let (ky, kx) = if flip {
            (2 - t / 3, 2 - t % 3)
        } else {
            (t / 3, t % 3)
        };
        match (rows[ky], cols[kx]) {
            (Some(yy), Some(xx)) => Some(img * hw + yy * d.w + xx),
            _ => None,
        }
    })
}

/// The taps of cell `n`'s 3x3 neighbourhood that lie inside the grid, as
/// `(tap, neighbour)` pairs in tap order (see [`neighbours`]): the loop of
/// the depthwise filter, its weight gradient, its input gradient (`flip`)
/// and the 3x3 scatter.
#[inline]
pub(crate) fn taps(d: &Dims, n: usize, flip: bool) -> impl Iterator<Item = (usize, usize)> {
    neighbours(d, n, flip)
        .into_iter()
        .enumerate()
        .filter_map(|(t, j)| Some((t, j?)))
}

/// The 3x3 neighbourhoods of the cells `cells` of `src` (`[N, c]`) into
/// `dst` (`[m, 9 * c]`, tap-major, `m = cells.len()`): row `i`, columns
/// `t * c .. (t + 1) * c` hold the neighbour of `cells[i]` at tap `t` (see
/// [`neighbours`]), zeros past the border.
pub(crate) fn gather3x3(d: &Dims, src: &[f32], c: usize, cells: &[u32], dst: &mut [f32]) {
    let m = cells.len();
    for (row, &n) in dst[..m * 9 * c].chunks_exact_mut(9 * c).zip(cells) {
        let nb = neighbours(d, n as usize, false);
        for (tap, j) in row.chunks_exact_mut(c).zip(nb) {
            match j {
                Some(j) => tap.copy_from_slice(&src[j * c..(j + 1) * c]),
                None => tap.fill(0.0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(depthwise: bool, reset: bool) -> Dims {
        Dims {
            b: 2,
            h: 3,
            w: 4,
            s: 3,
            e: 2,
            hd: 4,
            layers: 2,
            depthwise,
            norm: Norm::None,
            residual: true,
            reset,
        }
    }

    #[test]
    fn permutation_is_a_bijection_and_round_trips() {
        for (dw, reset) in [(false, false), (true, true)] {
            let d = dims(dw, reset);
            let packed: Vec<f32> = (0..Packing::new(&d).len).map(|i| i as f32).collect();
            let w = Weights::new(&d, &packed);
            assert_eq!(w.to_packed(&w.v), packed);
        }
    }

    #[test]
    fn conv_weight_is_tap_major() {
        let d = dims(false, false);
        let packed: Vec<f32> = (0..Packing::new(&d).len).map(|i| i as f32).collect();
        let w = Weights::new(&d, &packed);
        let (ci, hd) = (d.ci(), d.hd);
        // Original [o=1, c=2, t=5] lies at (1 * ci + 2) * 9 + 5.
        assert_eq!(w.v[(5 * ci + 2) * hd + 1], ((ci + 2) * 9 + 5) as f32);
    }

    #[test]
    fn transposes_round_trip() {
        // 70 > TRANSPOSE_BLOCK: a full and a partial block.
        let x: Vec<f32> = (0..2 * 3 * 70).map(|i| i as f32).collect();
        let y = transpose(&x, 2, (3, 70));
        assert_eq!(y[3], 1.0);
        assert_eq!(y[3 * 70 + 3], (3 * 70 + 1) as f32);
        assert_eq!(transpose(&y, 2, (70, 3)), x);
    }

    #[test]
    fn nhwc_of_two_parts_and_back() {
        // State 3 channels, environment 2, two images of 70 cells.
        let (b, hw) = (2, 70);
        let state: Vec<f32> = (0..b * 3 * hw).map(|i| i as f32).collect();
        let env: Vec<f32> = (0..b * 2 * hw).map(|i| -(i as f32) - 1.0).collect();
        let x = to_nhwc(&[(&state, 3), (&env, 2)], b, hw);
        // Image 1, cell 5, channel 4 = env channel 1 of image 1 at cell 5.
        assert_eq!(x[(hw + 5) * 5 + 4], env[(2 + 1) * hw + 5]);
        assert_eq!(x[(hw + 5) * 5 + 2], state[(3 + 2) * hw + 5]);
        // The same as the transpose of the channel concatenation.
        let mut cat = Vec::new();
        for img in 0..b {
            cat.extend_from_slice(&state[img * 3 * hw..(img + 1) * 3 * hw]);
            cat.extend_from_slice(&env[img * 2 * hw..(img + 1) * 2 * hw]);
        }
        assert_eq!(x, transpose(&cat, b, (5, hw)));
        assert_eq!(from_nhwc(&x, (b, hw, 5), 0..3), state);
        assert_eq!(from_nhwc(&x, (b, hw, 5), 3..5), env);
    }

    #[test]
    fn transposes_split_into_tasks_match_a_plain_transpose() {
        // Images large enough that each is written by several tasks of
        // `filled`, with a partial last task (hw not a multiple of the
        // rows per task), and channels that give whole 8x8 blocks and a
        // remainder (11 = 8 + 3).
        let (b, hw, s, e) = (2, 3 * TASK_ELEMS / 5 + 7, 11, 2);
        let state: Vec<f32> = (0..b * s * hw).map(|i| i as f32).collect();
        let env: Vec<f32> = (0..b * e * hw).map(|i| -(i as f32)).collect();
        let x = to_nhwc(&[(&state, s), (&env, e)], b, hw);
        let ci = s + e;
        for img in 0..b {
            for p in [0, 1, hw / 2, hw - 1] {
                for c in 0..s {
                    assert_eq!(x[(img * hw + p) * ci + c], state[(img * s + c) * hw + p]);
                }
                for c in 0..e {
                    assert_eq!(x[(img * hw + p) * ci + s + c], env[(img * e + c) * hw + p]);
                }
            }
        }
        assert_eq!(from_nhwc(&x, (b, hw, ci), 0..s), state);
        assert_eq!(from_nhwc(&x, (b, hw, ci), s..ci), env);
        let t = transpose(&state, b, (s, hw));
        assert_eq!(t, to_nhwc(&[(&state, s)], b, hw));
        assert_eq!(transpose(&t, b, (hw, s)), state);
    }

    #[test]
    fn neighbours_respect_the_border() {
        let d = dims(false, false);
        // Cell (b=1, y=0, x=0) = 12: no upper or left neighbour.
        assert_eq!(neighbours(&d, 12, false)[0], None);
        assert_eq!(neighbours(&d, 12, false)[4], Some(12));
        assert_eq!(neighbours(&d, 12, false)[8], Some(12 + 4 + 1));
        assert_eq!(neighbours(&d, 12, true)[0], Some(12 + 4 + 1));
        // Last cell of image 0 has no lower neighbour in image 1.
        assert_eq!(neighbours(&d, 11, false)[7], None);
        // An inner cell (b=0, y=1, x=1) = 5 has all nine, row by row.
        let all: Vec<usize> = neighbours(&d, 5, false)
            .iter()
            .map(|j| j.unwrap())
            .collect();
        assert_eq!(all, [0, 1, 2, 4, 5, 6, 8, 9, 10]);
        let flipped: Vec<usize> = neighbours(&d, 5, true).iter().map(|j| j.unwrap()).collect();
        assert_eq!(flipped, [10, 9, 8, 6, 5, 4, 2, 1, 0]);
        // A corner has four taps, the flipped ones at the opposite taps.
        let corner: Vec<(usize, usize)> = taps(&d, 12, false).collect();
        assert_eq!(corner, [(4, 12), (5, 13), (7, 16), (8, 17)]);
        let flipped: Vec<(usize, usize)> = taps(&d, 12, true).collect();
        assert_eq!(flipped, [(0, 17), (1, 16), (3, 13), (4, 12)]);
    }
}
