#!/usr/bin/env python3
"""Side-by-side timing of one CA step: this project (fused CPU path, via
`examples/step_timing.rs`) against the identical step in PyTorch eager.

Installs nothing: needs `torch` importable (`pip install torch`) and the
example built (`cargo build --release --example step_timing`). Both sides
run on the same thread count (`--threads`, default: all cores, which is what
rayon uses). For each case the two are timed in alternating rounds (project,
PyTorch, project, ...) and the medians compared:

    ratio = PyTorch time / project time   (> 1: the project is faster)

The comparison is only valid on an idle machine (other load slows PyTorch's
OpenMP threads more than rayon's): before timing, the script reads the
1-minute load average and refuses to run (exit 2) when it is above 0.5 per
core, unless `--force`, which marks the output header as not valid.

Fraction of peak: the script runs `step_timing --fma-peak --threads N`
once (a plain loop of independent vector FMAs on N threads, the machine's
fp32 FMA peak) and reports, for each side, the case's fp32 FLOPs divided by
its median time and that peak. The FLOPs are counted analytically from the
cell, per cell and step (ci = state + 3 image channels, hd hidden, s state):

    first layer   2*9*ci*hd           (conv3x3)
                  2*9*ci + 2*ci*hd    (depthwise 3x3, then 1x1)
    hidden        2*hd*hd per hidden layer (2 layers)
    update        2*hd*s
    reset gate    2*hd

only the multiply-adds of the convolutions (biases, activations, the norm,
the mask mix, the classifier and the loss are not counted). It is the
DENSE count over ALL cells of the grid, firing or not: a side that skips
the cells that keep their state does less work than counted, and its
"% peak" is then an effective rate of the dense step. A forward case is one
step; a training case is K = 10 steps forward and about twice that for the
backward, so 3 x K steps.

The step, as in `ca_core::CellRule::step_reference`: perception (3x3 conv,
or depthwise 3x3 then 1x1) + ReLU, hidden 1x1 + ReLU layers, update 1x1,
residual, reset gate r = sigmoid(W_R h) mixing noise z in, instance norm of
the candidate with its statistics taken over the FIRING cells only (those
whose update mask is nonzero), per image and channel: with f = (mask != 0),
mean = sum(f*c) / max(sum f, 1) and the biased variance likewise over H, W,
eps 1e-5, no affine; then the masked update. PyTorch still computes every
cell's candidate (the dense "PyTorch eager" baseline). The training step:
K = 10 unrolled steps, 1x1 classifier, cross entropy at the last step,
backward, and Adam as the trainer runs it (`ca_sched::Adam` under
`TrainConfig::default()`): each gradient tensor normalized to g / (||g|| +
1e-8), then Adam with lr 3e-4, betas (0.9, 0.999), eps 1e-8. Random draws
are made once, outside the timed region.

Usage: python3 benches/compare/torch_step.py [--cases SUBSTRING] [--rounds N]
       [--reps N] [--threads N] [--all-variants] [--force]
"""

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "step_timing")
UNROLL = 10
ENV_CHANNELS = 3
HIDDEN_LAYERS = 2
# The trainer's Adam: ca_sched::TrainConfig::default() and adam.rs.
LEARNING_RATE = 3e-4
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
GRAD_NORM_EPS = 1e-8
NORM_EPS = 1e-5
# Refuse to time above this 1-minute load average per core.
MAX_LOAD_PER_CORE = 0.5


class Rule(torch.nn.Module):
    def __init__(self, perception, s, h, e=ENV_CHANNELS, layers=HIDDEN_LAYERS, classes=3):
        super().__init__()
        ci = s + e
        self.depthwise = perception == "depthwise"
        if self.depthwise:
            self.dw = torch.nn.Conv2d(ci, ci, 3, padding=1, groups=ci)
            self.first = torch.nn.Conv2d(ci, h, 1)
        else:
            self.first = torch.nn.Conv2d(ci, h, 3, padding=1)
        self.hidden = torch.nn.ModuleList(torch.nn.Conv2d(h, h, 1) for _ in range(layers))
        self.update = torch.nn.Conv2d(h, s, 1)
        self.reset = torch.nn.Conv2d(h, 1, 1)
        self.classifier = torch.nn.Conv2d(s, classes, 1)

    def step(self, state, env, mask, noise):
        x = torch.cat([state, env], 1)
        if self.depthwise:
            x = self.dw(x)
        hid = F.relu(self.first(x))
        for layer in self.hidden:
            hid = F.relu(layer(hid))
        cand = state + self.update(hid)
        r = torch.sigmoid(self.reset(hid))
        cand = r * noise + (1 - r) * cand
        cand = firing_instance_norm(cand, mask)
        return state + mask * (cand - state)


def firing_instance_norm(c, mask):
    """Instance norm of `c` [B, C, H, W] with the statistics over the firing
    cells (mask [B, 1, H, W] nonzero) of each image and channel: mean =
    sum(f c) / max(sum f, 1), biased variance likewise, eps 1e-5."""
    f = (mask != 0).to(c.dtype)
    n = f.sum((2, 3), keepdim=True).clamp(min=1.0)
    mean = (f * c).sum((2, 3), keepdim=True) / n
    centered = c - mean
    var = (f * centered * centered).sum((2, 3), keepdim=True) / n
    return centered * torch.rsqrt(var + NORM_EPS)


def normalize_grads(params):
    """The trainer's per-tensor gradient normalization, g / (||g|| + 1e-8)
    (ca_sched::adam, GradNorm::PerTensor)."""
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.grad.div_(p.grad.norm() + GRAD_NORM_EPS)


def torch_case(kind, perception, s, h, b, hw):
    torch.manual_seed(0)
    rule = Rule(perception, s, h)
    state = torch.randn(b, s, hw, hw)
    env = torch.randn(b, ENV_CHANNELS, hw, hw)
    draws = [
        ((torch.rand(b, 1, hw, hw) < 0.5).float(), torch.randn(b, s, hw, hw))
        for _ in range(UNROLL if kind == "train" else 1)
    ]
    if kind == "forward":
        def run():
            with torch.no_grad():
                rule.step(state, env, *draws[0])
        return run
    labels = (torch.arange(b * hw * hw) * 7 % 3).reshape(b, hw, hw)
    params = list(rule.parameters())
    opt = torch.optim.Adam(params, lr=LEARNING_RATE, betas=BETAS, eps=ADAM_EPS)

    def run():
        st = state
        for mask, noise in draws:
            st = rule.step(st, env, mask, noise)
        loss = F.cross_entropy(rule.classifier(st), labels)
        opt.zero_grad()
        loss.backward()
        normalize_grads(params)
        opt.step()
    return run


def step_flops(perception, s, h, e=ENV_CHANNELS, layers=HIDDEN_LAYERS):
    """fp32 FLOPs of one step of one cell (dense; see the module docstring)."""
    ci = s + e
    if perception == "depthwise":
        first = 2 * 9 * ci + 2 * ci * h
    else:
        first = 2 * 9 * ci * h
    return first + layers * 2 * h * h + 2 * h * s + 2 * h


def case_flops(kind, perception, s, h, b, hw):
    """fp32 FLOPs of one run of a case over all b * hw * hw cells."""
    steps = 3 * UNROLL if kind == "train" else 1
    return b * hw * hw * steps * step_flops(perception, s, h)


def time_torch(run, reps):
    """Wall times of `reps` runs after a warm-up (at least one run and
    WARM_UP_S seconds, as `step_timing` warms up), and mean CPU s per run."""
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < WARM_UP_S:
        run()
    times = []
    cpu0 = time.process_time()
    for _ in range(reps):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times, (time.process_time() - cpu0) / reps


# Least seconds of warm-up before a side is timed: `WARM_UP_S` of
# benches/common/timing.rs.
WARM_UP_S = 0.2


def project_env(threads):
    return dict(os.environ, RAYON_NUM_THREADS=str(threads))


def time_project(case, reps, threads):
    out = subprocess.run(
        [EXAMPLE, "--case", case, "--reps", str(reps)],
        check=True, capture_output=True, text=True, env=project_env(threads),
    ).stdout
    for line in out.splitlines():
        m = re.match(
            r"STEP case=(\S+) backend=fused reps=(\d+) median_s=(\S+) min_s=(\S+) cpu_s=(\S+)", line
        )
        if m and m.group(1) == case:
            # One median per round: the example reports only medians.
            return [float(m.group(3))], float(m.group(5))
    raise RuntimeError(f"no STEP line for {case} in:\n{out}")


def fma_peak(threads):
    """The machine's fp32 FMA peak in GFLOP/s on `threads` threads, from
    `step_timing --fma-peak`, and the instruction set it used."""
    out = subprocess.run(
        [EXAMPLE, "--fma-peak", "--threads", str(threads)],
        check=True, capture_output=True, text=True, env=project_env(threads),
    ).stdout
    m = re.search(r"PEAK fma threads=(\d+) gflops=(\S+)(?: isa=(\S+))?", out)
    if not m:
        raise RuntimeError(f"no PEAK fma line in:\n{out}")
    return float(m.group(2)), m.group(3) or "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cases(all_variants):
    variants = [(p, s, h) for (s, h) in ([(48, 72), (32, 48), (64, 96)] if all_variants else [(48, 72)])
                for p in ("conv3x3", "depthwise")]
    for p, s, h in variants:
        v = f"{p}-{s}x{h}"
        for b in (1, 32):
            yield (f"forward/{v}/b{b}/48x48", "forward", p, s, h, b, 48)
        yield (f"forward/{v}/b1/512x512", "forward", p, s, h, 1, 512)
        for b in (8, 32):
            yield (f"train/{v}/b{b}/48x48", "train", p, s, h, b, 48)


def fmt_s(x):
    return f"{x * 1e3:.1f} ms" if x < 0.1 else f"{x:.3f} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="", help="only case ids containing this")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per case")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per round and side")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--all-variants", action="store_true", help="all six Table 1 rules, not just 48/72")
    ap.add_argument("--force", action="store_true",
                    help=f"time even when the load average is above {MAX_LOAD_PER_CORE} per core "
                         "(the results are then not a valid comparison)")
    args = ap.parse_args()
    if not os.path.exists(EXAMPLE):
        sys.exit(f"{EXAMPLE} missing: run `cargo build --release --example step_timing` first")
    selected = [c for c in cases(args.all_variants) if args.cases in c[0]]
    if not selected:
        hint = ""
        if not args.all_variants and any(args.cases in c[0] for c in cases(True)):
            hint = " (it matches cases of the other Table 1 rules: add --all-variants)"
        sys.exit(f"no case id contains '{args.cases}'{hint}")

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    overloaded = load_before > MAX_LOAD_PER_CORE * cores
    if overloaded and not args.force:
        print(f"error: 1-minute load average {load_before:.2f} on {cores} cores is above "
              f"{MAX_LOAD_PER_CORE} per core ({MAX_LOAD_PER_CORE * cores:.2f}): the machine is not "
              "idle and the comparison would not be valid (other load slows PyTorch's OpenMP "
              "threads more than rayon's). Wait for the machine to be idle, or pass --force to "
              "time anyway (results marked invalid).", file=sys.stderr)
        sys.exit(2)

    torch.set_num_threads(args.threads)
    if overloaded:
        bar = "#" * 78
        print(bar)
        print(f"# WARNING: --force on a LOADED machine: 1-minute load average {load_before:.2f} "
              f"> {MAX_LOAD_PER_CORE} x {cores} cores.")
        print("# These timings are NOT a valid idle-machine comparison; do not report them.")
        print(bar)
    print(f"# torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x {args.reps} reps")
    print(f"# load average at start: {load_before:.2f} ({cores} cores)")
    peak, isa = fma_peak(args.threads)
    print(f"# fp32 FMA peak: {peak:.1f} GFLOP/s on {args.threads} threads ({isa})", flush=True)

    rows = []
    for case, kind, p, s, h, b, hw in selected:
        run = torch_case(kind, p, s, h, b, hw)
        ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
        for _ in range(args.rounds):
            t, c = time_project(case, args.reps, args.threads)
            ours += t
            ours_cpu.append(c)
            t, c = time_torch(run, args.reps)
            theirs += t
            theirs_cpu.append(c)
        po, pt = statistics.median(ours), statistics.median(theirs)
        co, ct = statistics.median(ours_cpu), statistics.median(theirs_cpu)
        gflop = case_flops(kind, p, s, h, b, hw) / 1e9
        pct_o, pct_t = 100 * gflop / po / peak, 100 * gflop / pt / peak
        rows.append((case, po, pt, pct_o, pct_t))
        cpu_ratio = f"{ct / co:.2f}" if co > 0 else "n/a (no project CPU time read)"
        print(f"# {case}: project {po:.4f} s ({co:.4f} cpu s), PyTorch {pt:.4f} s ({ct:.4f} cpu s), "
              f"ratio {pt / po:.2f}, cpu ratio {cpu_ratio}, {gflop:.2f} GFLOP", flush=True)

    load_after = os.getloadavg()[0]
    print()
    print("| case | project s | PyTorch s | ratio (PyTorch/project) | project % peak | PyTorch % peak |")
    print("|---|---|---|---|---|---|")
    for case, po, pt, pct_o, pct_t in rows:
        print(f"| {case} | {fmt_s(po)} | {fmt_s(pt)} | {pt / po:.2f} | {pct_o:.1f}% | {pct_t:.1f}% |")
    print()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"Machine: {cpu_model()}, {cores} cores; load average {load_before:.2f} before, "
          f"{load_after:.2f} after; {date}; torch {torch.__version__}, {args.threads} threads each side; "
          f"fp32 FMA peak {peak:.1f} GFLOP/s ({isa}); {args.rounds} alternating rounds x {args.reps} reps."
          + (" NOT IDLE (--force): not a valid comparison." if overloaded else "")
          # The run itself keeps `threads` cores busy: only load beyond that
          # points at other jobs.
          + (f" Load rose above the run's own {args.threads} threads plus {MAX_LOAD_PER_CORE} per core:"
             " check for other jobs."
             if load_after > args.threads + MAX_LOAD_PER_CORE * cores and not overloaded else ""))


if __name__ == "__main__":
    main()
