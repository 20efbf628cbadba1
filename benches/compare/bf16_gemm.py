#!/usr/bin/env python3
"""Would bf16 pay for the fused step's GEMMs on this CPU? (issue 26 item 2)

Times PyTorch's CPU matmul (oneDNN; AMX-BF16 / AVX512-BF16 where the CPU
has them) in fp32 and in bf16 on one thread, at the shapes of one tile of
the fused step (192 firing cells): the conv3x3 cell's first layer
(k = 9 * (48 + 3) = 459), the hidden 1x1 layers (72 x 72), the update
(72 -> 48) and the depthwise cell's pointwise layer (51 -> 72); and the
first layer at 4096 rows for comparison. A bf16 path in the project would
need kernels of its own (the `gemm` crate has none); this measures what the
best available ones give at these sizes before writing any.

Usage: python3 benches/compare/bf16_gemm.py   (needs torch; idle machine)
"""

import time

import torch


def bench(m, k, n, dtype, reps=2000):
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    for _ in range(50):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return (time.perf_counter() - t) / reps


def main():
    torch.set_num_threads(1)
    print(f"# torch {torch.__version__}, 1 thread")
    for m, k, n in [(192, 459, 72), (192, 72, 72), (192, 72, 48), (192, 51, 72), (4096, 459, 72)]:
        f = bench(m, k, n, torch.float32)
        h = bench(m, k, n, torch.bfloat16)
        flops = 2 * m * k * n
        print(f"m={m} k={k} n={n}: fp32 {f * 1e6:.1f} us ({flops / f / 1e9:.0f} GFLOP/s), "
              f"bf16 {h * 1e6:.1f} us ({flops / h / 1e9:.0f} GFLOP/s), speed-up {f / h:.2f}")


if __name__ == "__main__":
    main()
