//! The decoder's stride-2 transposed convolution (kernel 3, padding 1) on
//! the CPU as one GEMM and a scatter: per image, the columns
//! `P = W^T x` (`[O * 9, h * w]`, `W` the weight `[C, O * 9]`, `x` the
//! input `[C, h * w]`, both read in place) hold every tap's contribution of
//! every input cell, and the scatter ("col2im") adds column `o * 9 + 3 *
//! ky + kx` of cell `(y, x)` to output `(o, 2y - 1 + ky, 2x - 1 + kx)`.
//! The GEMM is candle's batched matmul (its backward gives the input's and
//! the weight's gradients); the scatter is a custom op whose backward is
//! the matching gather. candle's own `conv_transpose2d` on the CPU is a
//! direct loop that took 9 ms per decoder call of the 96/48 model at
//! batch 8, more than the cell's step.

use ca_core::cpu_op::cpu_f32;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::error::Result;

/// Taps of the 3x3 kernel.
const TAPS: usize = 9;

/// The transposed convolution `conv_transpose2d(x, weight, padding 1,
/// output padding 1, stride 2)` cut to `out` (`(H, W)`, at most `(2h, 2w)`)
/// without bias, for CPU tensors; `None` elsewhere (the caller then uses
/// candle's op).
///
/// # Shapes
///
/// `x` `[B, C, h, w]`, `weight` `[C, O, 3, 3]`; result `[B, O, H, W]`.
pub(crate) fn conv_transpose_s2(
    x: &Tensor,
    weight: &Tensor,
    out: (usize, usize),
) -> Result<Option<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    let (b, c, h, w) = x.dims4()?;
    let o = weight.dim(1)?;
    // `[O * 9, C]`, the same for every image (a stride-0 batch dimension).
    let wt = weight.reshape((c, o * TAPS))?.t()?.broadcast_left(b)?;
    let cols = wt.matmul(&x.reshape((b, c, h * w))?)?;
    let op = Col2Im {
        input: (h, w),
        out,
        channels: o,
    };
    Ok(Some(cols.contiguous()?.apply_op1(op)?))
}

/// The scatter of the columns `[B, O * 9, h * w]` into `[B, O, H, W]`.
struct Col2Im {
    /// `(h, w)` of the input grid.
    input: (usize, usize),
    /// `(H, W)` of the output.
    out: (usize, usize),
    /// Output channels `O`.
    channels: usize,
}

impl Col2Im {
    /// For each tap `(ky, kx)` and input row `y`: the output row `2y - 1 +
    /// ky` when it lies in `0..H`; likewise for columns. Calls `f(tap,
    /// (y, x), (Y, X))` for every pair that lands inside the output.
    fn for_each_hit(&self, mut f: impl FnMut(usize, (usize, usize), (usize, usize))) {
        let ((h, w), (oh, ow)) = (self.input, self.out);
        let land = |i: usize, k: usize, n: usize| (2 * i + k).checked_sub(1).filter(|&v| v < n);
        for t in 0..TAPS {
            let (ky, kx) = (t / 3, t % 3);
            for y in 0..h {
                let Some(oy) = land(y, ky, oh) else { continue };
                for x in 0..w {
                    if let Some(ox) = land(x, kx, ow) {
                        f(t, (y, x), (oy, ox));
                    }
                }
            }
        }
    }

    /// Per image: adds the columns `cols` (`[O * 9, h * w]`) into `out`
    /// (`[O, H, W]`, zeroed by the caller).
    fn scatter(&self, cols: &[f32], out: &mut [f32]) {
        let ((h, w), (oh, ow)) = (self.input, self.out);
        for o in 0..self.channels {
            let plane = &mut out[o * oh * ow..(o + 1) * oh * ow];
            let taps = &cols[o * TAPS * h * w..(o + 1) * TAPS * h * w];
            self.for_each_hit(|t, (y, x), (oy, ox)| {
                plane[oy * ow + ox] += taps[t * h * w + y * w + x];
            });
        }
    }

    /// Per image: the gradient at the columns (`[O * 9, h * w]`, zeroed by
    /// the caller; the taps that land outside the output stay 0) from the
    /// gradient at the output `g` (`[O, H, W]`).
    fn gather(&self, g: &[f32], cols: &mut [f32]) {
        let ((h, w), (oh, ow)) = (self.input, self.out);
        for o in 0..self.channels {
            let plane = &g[o * oh * ow..(o + 1) * oh * ow];
            let taps = &mut cols[o * TAPS * h * w..(o + 1) * TAPS * h * w];
            self.for_each_hit(|t, (y, x), (oy, ox)| {
                taps[t * h * w + y * w + x] = plane[oy * ow + ox];
            });
        }
    }

    /// Floats of one image's columns and of one image's output.
    fn sizes(&self) -> (usize, usize) {
        let ((h, w), (oh, ow)) = (self.input, self.out);
        (self.channels * TAPS * h * w, self.channels * oh * ow)
    }
}

/// Images of `per_out` values made from the images of `per_in` values in
/// `input` (the contiguous f32 data of `storage`), one task per image:
/// `f(image_in, image_out)` adds into its zeroed output image. Returns the
/// output and the image count; `what` names the op in errors.
fn per_image(
    what: &str,
    (storage, layout): (&CpuStorage, &Layout),
    (per_in, per_out): (usize, usize),
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> candle_core::Result<(Vec<f32>, usize)> {
    use rayon::prelude::*;
    let input = cpu_f32(what, "input", storage, layout)?;
    if per_in == 0 || per_out == 0 || input.len() % per_in != 0 {
        candle_core::bail!("{what}: {} values, not images of {per_in}", input.len());
    }
    let b = input.len() / per_in;
    let mut out = vec![0.0f32; b * per_out];
    out.par_chunks_mut(per_out)
        .zip(input.par_chunks(per_in))
        .for_each(|(o, i)| f(i, o));
    Ok((out, b))
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "ca-hires-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (out, b) = per_image("decoder scatter", (s, l), self.sizes(), |c, o| {
            self.scatter(c, o)
        })?;
        Ok((
            CpuStorage::F32(out),
            Shape::from((b, self.channels, self.out.0, self.out.1)),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let gather = Gather(Col2Im { ..*self });
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&gather)?
                .reshape(arg.shape())?,
        ))
    }
}

/// The backward of [`Col2Im`]: the output's gradient `[B, O, H, W]` to the
/// columns' `[B, O * 9, h * w]`.
struct Gather(Col2Im);

impl CustomOp1 for Gather {
    fn name(&self) -> &'static str {
        "ca-hires-col2im-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (per_cols, per_out) = self.0.sizes();
        let (cols, b) = per_image("decoder gather", (s, l), (per_out, per_cols), |g, c| {
            self.0.gather(g, c)
        })?;
        let (h, w) = self.0.input;
        Ok((
            CpuStorage::F32(cols),
            Shape::from((b, self.0.channels * TAPS, h * w)),
        ))
    }
}
