#!/usr/bin/env python3
"""Independent computation of one CA step for the golden-value tests of
ca-core (crates/ca-core/tests/golden_step.rs), in plain Python loops with no
shared code: run `python3 step_golden.py` and paste its output into the test.

Deterministic inputs (same formulas as the Rust test):
  parameter tensor t (in ca-core's param_shapes order), flat index i:
      0.5 * sin(1.3 i + 0.7 t + 0.1)
  state  [B,S,H,W] flat i: 1.5 * sin(0.9 i + 0.3)
  env    [B,E,H,W] flat i: 0.8 * cos(0.4 i)
  noise  [B,S,H,W] flat i: sin(2.1 i + 1.0)
  mask   [B,1,H,W] flat i: 1 if i % 3 != 1 else 0
"""
import math

EPS = 1e-5


def det(n, t):
    return [0.5 * math.sin(1.3 * i + 0.7 * t + 0.1) for i in range(n)]


def grid(B, C, H, W, f):
    v = [f(i) for i in range(B * C * H * W)]
    return [[[[v[((b * C + c) * H + y) * W + x] for x in range(W)] for y in range(H)]
             for c in range(C)] for b in range(B)]


def step(case):
    B, S, E, Hd, L = case["B"], case["S"], case["E"], case["hidden"], case["layers"]
    H, W = case["H"], case["W"]
    I = S + E
    shapes = []
    if case["perception"] == "conv3x3":
        shapes += [("perceive.weight", Hd * I * 9), ("perceive.bias", Hd)]
    else:
        shapes += [("depthwise.weight", I * 9), ("depthwise.bias", I),
                   ("pointwise.weight", Hd * I), ("pointwise.bias", Hd)]
    for k in range(L):
        shapes += [(f"hidden.{k}.weight", Hd * Hd), (f"hidden.{k}.bias", Hd)]
    shapes += [("update.weight", S * Hd), ("update.bias", S)]
    if case["reset"]:
        shapes += [("reset.weight", Hd), ("reset.bias", 1)]
    P = {name: det(n, t) for t, (name, n) in enumerate(shapes)}

    state = grid(B, S, H, W, lambda i: 1.5 * math.sin(0.9 * i + 0.3))
    env = grid(B, E, H, W, lambda i: 0.8 * math.cos(0.4 * i))
    noise = grid(B, S, H, W, lambda i: math.sin(2.1 * i + 1.0))
    mask = grid(B, 1, H, W, lambda i: 1.0 if i % 3 != 1 else 0.0)

    def x_at(b, c, y, x):
        if y < 0 or y >= H or x < 0 or x >= W:
            return 0.0
        return state[b][c][y][x] if c < S else env[b][c - S][y][x]

    relu = lambda v: max(v, 0.0)
    cand = [[[[0.0] * W for _ in range(H)] for _ in range(S)] for _ in range(B)]
    for b in range(B):
        for y in range(H):
            for x in range(W):
                if case["perception"] == "conv3x3":
                    w, bias = P["perceive.weight"], P["perceive.bias"]
                    h = []
                    for o in range(Hd):
                        acc = bias[o]
                        for c in range(I):
                            for ky in range(3):
                                for kx in range(3):
                                    acc += w[((o * I + c) * 3 + ky) * 3 + kx] * x_at(b, c, y + ky - 1, x + kx - 1)
                        h.append(relu(acc))
                else:
                    dw, db = P["depthwise.weight"], P["depthwise.bias"]
                    d = []
                    for c in range(I):
                        acc = db[c]
                        for ky in range(3):
                            for kx in range(3):
                                acc += dw[c * 9 + ky * 3 + kx] * x_at(b, c, y + ky - 1, x + kx - 1)
                        d.append(acc)
                    pw, pb = P["pointwise.weight"], P["pointwise.bias"]
                    h = [relu(pb[o] + sum(pw[o * I + c] * d[c] for c in range(I))) for o in range(Hd)]
                for k in range(L):
                    w, bias = P[f"hidden.{k}.weight"], P[f"hidden.{k}.bias"]
                    h = [relu(bias[o] + sum(w[o * Hd + j] * h[j] for j in range(Hd))) for o in range(Hd)]
                uw, ub = P["update.weight"], P["update.bias"]
                u = [ub[o] + sum(uw[o * Hd + j] * h[j] for j in range(Hd)) for o in range(S)]
                c_ = [state[b][o][y][x] + u[o] if case["residual"] else u[o] for o in range(S)]
                if case["reset"]:
                    rw, rb = P["reset.weight"], P["reset.bias"]
                    r = 1.0 / (1.0 + math.exp(-(rb[0] + sum(rw[j] * h[j] for j in range(Hd)))))
                    c_ = [r * noise[b][o][y][x] + (1 - r) * c_[o] for o in range(S)]
                for o in range(S):
                    cand[b][o][y][x] = c_[o]

    def groups(norm):
        if norm == "instance":
            return [[(b, c, y, x) for y in range(H) for x in range(W)] for b in range(B) for c in range(S)]
        if norm == "batch":
            return [[(b, c, y, x) for b in range(B) for y in range(H) for x in range(W)] for c in range(S)]
        if norm == "channel":
            return [[(b, c, y, x) for c in range(S)] for b in range(B) for y in range(H) for x in range(W)]
        return []

    # Batch and instance statistics over the firing cells (mask != 0) only.
    for g in groups(case["norm"]):
        if case["norm"] != "channel":
            g = [(b, c, y, x) for (b, c, y, x) in g if mask[b][0][y][x] != 0]
        vals = [cand[b][c][y][x] for (b, c, y, x) in g]
        m = sum(vals) / len(vals)
        v = sum((a - m) ** 2 for a in vals) / len(vals)
        for (b, c, y, x) in g:
            cand[b][c][y][x] = (cand[b][c][y][x] - m) / math.sqrt(v + EPS)

    out = []
    for b in range(B):
        for c in range(S):
            for y in range(H):
                for x in range(W):
                    m = mask[b][0][y][x]
                    out.append(m * cand[b][c][y][x] + (1 - m) * state[b][c][y][x])
    return out


CASES = {
    "conv3x3_instance_residual_reset": dict(B=1, S=2, E=1, hidden=3, layers=1, H=3, W=4,
                                            perception="conv3x3", norm="instance", residual=True, reset=True),
    "depthwise_batch_plain": dict(B=2, S=2, E=1, hidden=4, layers=0, H=2, W=3,
                                  perception="depthwise", norm="batch", residual=False, reset=False),
    "conv3x3_channel_residual": dict(B=1, S=3, E=2, hidden=4, layers=2, H=2, W=2,
                                     perception="conv3x3", norm="channel", residual=True, reset=False),
}

if __name__ == "__main__":
    for name, case in CASES.items():
        vals = ", ".join(f"{v:.6f}" for v in step(case))
        print(f"{name}: [{vals}]")
