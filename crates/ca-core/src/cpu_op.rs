//! The inputs of a CPU candle custom op as plain slices: for the ops built
//! on `ca-core` (the fused step here, the decoder's scatter in `ca-hires`,
//! the pixel loss in `ca-sched`). Each error names the op and the input.

use candle_core::{CpuStorage, Layout, Storage};

/// The contiguous f32 data of a CPU storage laid out as `layout`; an error
/// `"{op}: {what} must be f32"` (or `... contiguous`) otherwise.
pub fn cpu_f32<'a>(
    op: &str,
    what: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else {
        candle_core::bail!("{op}: {what} must be f32");
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}

/// [`cpu_f32`] of a tensor's storage (`Tensor::storage_and_layout`), which
/// must be on the CPU.
pub fn storage_f32<'a>(
    op: &str,
    what: &str,
    storage: &'a Storage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => cpu_f32(op, what, cpu, layout),
        _ => candle_core::bail!("{op}: {what} must be on the CPU"),
    }
}
