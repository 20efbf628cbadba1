#!/usr/bin/env python3
"""Side-by-side timing of one CA step: this project (fused CPU path, via
`examples/step_timing.rs`) against the identical step in PyTorch eager.

Installs nothing: needs `torch` importable (`pip install torch`) and the
example built (`cargo build --release --example step_timing`). Both sides
run on the same thread count (`--threads`, default: all cores, which is what
rayon uses). For each case the two are timed in alternating rounds (project,
PyTorch, project, ...) and the medians compared:

    speedup = PyTorch time / project time   (>= 1: the project is faster)

and, as a check that is less sensitive to other load on the machine, the
CPU seconds (all threads) per step of each side and their ratio.

The step, as in `ca_core::CellRule::step_reference`: perception (3x3 conv,
or depthwise 3x3 then 1x1) + ReLU, hidden 1x1 + ReLU layers, update 1x1,
residual, reset gate r = sigmoid(W_R h) mixing noise z in, instance norm of
the candidate (biased variance, eps 1e-5, no affine), masked update. The
training step: K = 10 unrolled steps, 1x1 classifier, cross entropy,
backward, Adam. Random draws are made once, outside the timed region.

Usage: python3 benches/compare/torch_step.py [--cases SUBSTRING] [--rounds N]
       [--reps N] [--all-variants]
"""

import argparse
import os
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


class Rule(torch.nn.Module):
    def __init__(self, perception, s, h, e=3, layers=2, classes=3):
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
        cand = F.instance_norm(cand, eps=1e-5)
        return state + mask * (cand - state)


def torch_case(kind, perception, s, h, b, hw):
    torch.manual_seed(0)
    rule = Rule(perception, s, h)
    state = torch.randn(b, s, hw, hw)
    env = torch.randn(b, 3, hw, hw)
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
    opt = torch.optim.Adam(rule.parameters(), lr=1e-3)

    def run():
        st = state
        for mask, noise in draws:
            st = rule.step(st, env, mask, noise)
        loss = F.cross_entropy(rule.classifier(st), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return run


def time_torch(run, reps):
    """Wall times of `reps` runs after a warm-up, and mean CPU s per run."""
    run()
    times = []
    cpu0 = time.process_time()
    for _ in range(reps):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times, (time.process_time() - cpu0) / reps


def time_project(case, reps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        [EXAMPLE, "--case", case, "--reps", str(reps)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    for line in out.splitlines():
        m = re.match(
            r"STEP case=(\S+) backend=fused reps=(\d+) median_s=(\S+) min_s=(\S+) cpu_s=(\S+)", line
        )
        if m and m.group(1) == case:
            # One median per round: the example reports only medians.
            return [float(m.group(3))], float(m.group(5))
    raise RuntimeError(f"no STEP line for {case} in:\n{out}")


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="", help="only case ids containing this")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per case")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per round and side")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--all-variants", action="store_true", help="all six Table 1 rules, not just 48/72")
    args = ap.parse_args()
    if not os.path.exists(EXAMPLE):
        sys.exit(f"{EXAMPLE} missing: run `cargo build --release --example step_timing` first")
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x {args.reps} reps")
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'case':40s} {'project_s':>10s} {'pytorch_s':>10s} {'speedup':>8s} "
          f"{'proj_cpu_s':>10s} {'torch_cpu_s':>11s} {'cpu_ratio':>9s}")
    for case, kind, p, s, h, b, hw in cases(args.all_variants):
        if args.cases not in case:
            continue
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
        print(f"{case:40s} {po:10.4f} {pt:10.4f} {pt / po:8.2f} {co:10.3f} {ct:11.3f} {ct / co:9.2f}",
              flush=True)


if __name__ == "__main__":
    main()
