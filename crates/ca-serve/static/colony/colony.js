// A colony of a ca-core cell rule on the GPU, in WebGL2: the state as
// RGBA32F texture arrays (4 channels a layer), one step as a few dozen
// full-screen passes with the semantics of ca-core's reference step
// (`CellRule::step_reference`, `normalize_firing`, `coarse_step`):
//
//   h = relu(perceive([s, env]))  (3x3 conv, or depthwise 3x3 then 1x1)
//   h = relu(W_k h + b_k)         (hidden 1x1 layers)
//   c = s + U(h)                  (or U(h) without residual)
//   c = r z + (1 - r) c,          r = sigmoid(W_R h + b_R)  (reset gate)
//   n = (c - mean) / sqrt(var + 1e-5), statistics over the firing cells
//   s' = s + m (n - s)            (m the update mask)
//
// A coarse-to-fine model's first steps run on its coarse grids: the state
// read every f-th cell, the environment averaged over f x f blocks, the new
// coarse state upsampled (nearest) back.

import { Gpu, packChannels, unpackChannels } from "./webgl.js";
import * as S from "./shaders.js";

/** Stream of the hash RNG that seeds the initial state, distinct from every
 * step index. */
const INIT_STREAM = 0xffffffff;

/** Cells summed per side by one pass of the norm's pyramid. */
const REDUCE_BLOCK = 8;

/** Added to the variance before the square root (ca-core's NORM_EPS). */
export const NORM_EPS = 1e-5;

/**
 * Packs a layer of `out` outputs over inputs laid out by `inputAt`
 * (channel -> [layer, lane]) in `groups` input layers, `taps` taps per
 * input (weight `[out, in, taps]` flat), as the DENSE shader reads it.
 */
function packDense(weight, bias, out, inputs, inputAt, groups, taps) {
  const width = groups * taps * 4 + 1;
  const rows = Math.ceil(out / 4);
  const data = new Float32Array(4 * width * rows);
  for (let o = 0; o < out; o++) {
    const row = (o >> 2) * width * 4;
    for (let i = 0; i < inputs; i++) {
      const [g, j] = inputAt(i);
      for (let k = 0; k < taps; k++) {
        data[row + 4 * ((g * taps + k) * 4 + j) + (o & 3)] = weight[(o * inputs + i) * taps + k];
      }
    }
    data[row + 4 * (width - 1) + (o & 3)] = bias[o];
  }
  return { width, rows, data };
}

/**
 * The statistics of one image's standardisation as ca-core's
 * `ImageNorm::apply`: `(x - mean[c]) * (gain / std[c])` per channel, in f32.
 */
function standardise(chw, plane, norm) {
  if (!norm) return Float32Array.from(chw);
  const out = new Float32Array(chw.length);
  for (let c = 0; c < 3; c++) {
    const scale = Math.fround(norm.gain / norm.std[c]);
    const mean = Math.fround(norm.mean[c]);
    for (let i = 0; i < plane; i++) out[c * plane + i] = Math.fround(Math.fround(chw[c * plane + i] - mean) * scale);
  }
  return out;
}

/** The mean of each `f x f` block of `channels` planes `h x w` (blocks cut
 * by the edge average the cells they have), as ca-core's `block_mean`. */
export function blockMean(chw, channels, h, w, f) {
  const [hc, wc] = [Math.ceil(h / f), Math.ceil(w / f)];
  const out = new Float32Array(channels * hc * wc);
  for (let c = 0; c < channels; c++) {
    for (let by = 0; by < hc; by++) {
      for (let bx = 0; bx < wc; bx++) {
        let sum = 0;
        let n = 0;
        for (let y = by * f; y < Math.min(h, (by + 1) * f); y++) {
          for (let x = bx * f; x < Math.min(w, (bx + 1) * f); x++) {
            sum += chw[c * h * w + y * w + x];
            n += 1;
          }
        }
        out[c * hc * wc + by * wc + bx] = sum / n;
      }
    }
  }
  return out;
}

/** The textures of one grid size: state (ping-pong), environment, the
 * layers' activations, the draws and the norm's pyramids. */
class Grid {
  constructor(gpu, dims, width, height) {
    const { nS, nE, nH, nIn } = dims;
    this.width = width;
    this.height = height;
    this.state = [gpu.array(width, height, nS), gpu.array(width, height, nS)];
    this.current = 0;
    this.env = gpu.array(width, height, nE);
    this.depthwise = dims.depthwise ? gpu.array(width, height, nIn) : null;
    this.hidden = [gpu.array(width, height, nH), gpu.array(width, height, nH)];
    this.candidate = gpu.array(width, height, nS);
    this.noise = gpu.array(width, height, nS);
    this.mask = gpu.array(width, height, 1);
    // The norm's pyramids (sums and deviations), nS + 1 layers (the last
    // one counts the firing cells), down to 1 x 1.
    this.pyramids = [[], []];
    let [w, h] = [width, height];
    do {
      [w, h] = [Math.ceil(w / REDUCE_BLOCK), Math.ceil(h / REDUCE_BLOCK)];
      for (const p of this.pyramids) p.push(gpu.array(w, h, nS + 1));
    } while (w > 1 || h > 1);
  }
}

/**
 * A colony of one model on the GPU: images of `width x height` pixels (one
 * cell a pixel). Randomness: the browser's own hash RNG of (seed, step,
 * cell, channel), or draws handed to {@link Colony#step} (to reproduce the
 * Rust colony's).
 */
export class Colony {
  /** A colony of `model` (from model.js) on the WebGL2 context `gl`. */
  constructor(gl, model, width, height) {
    const c = model.config;
    this.model = model;
    this.config = c;
    this.width = width;
    this.height = height;
    this.gpu = new Gpu(gl);
    const gpu = this.gpu;
    const [nS, nE, nH] = [c.state_channels, c.env_channels, c.hidden_channels].map((n) => Math.ceil(n / 4));
    const depthwise = c.perception !== "conv3x3";
    this.dims = { nS, nE, nH, nIn: nS + nE, depthwise };
    this.programs = Object.fromEntries(
      ["DENSE", "DEPTHWISE", "CANDIDATE", "REDUCE", "NORMALIZE", "DRAW", "SUBSAMPLE", "UPSAMPLE", "DAMAGE"].map((k) => [k, gpu.program(S[k])])
    );
    const t = (name) => model.tensors.get(name).data;
    const stateAt = (i) => [i >> 2, i & 3];
    const inputAt = (i) => (i < c.state_channels ? stateAt(i) : [nS + ((i - c.state_channels) >> 2), (i - c.state_channels) & 3]);
    const weights = (layer) => gpu.texture2d(layer.width, layer.rows, layer.data);
    const inputs = c.state_channels + c.env_channels;
    const hidden = c.hidden_channels;
    this.weights = {};
    if (depthwise) {
      // Row g: texels 0..8 the taps of input layer g's 4 channels, 9 the biases.
      const data = new Float32Array(4 * 10 * (nS + nE));
      const [w, b] = [t("depthwise.weight"), t("depthwise.bias")];
      for (let i = 0; i < inputs; i++) {
        const [g, j] = inputAt(i);
        for (let k = 0; k < 9; k++) data[4 * (g * 10 + k) + j] = w[i * 9 + k];
        data[4 * (g * 10 + 9) + j] = b[i];
      }
      this.weights.depthwise = gpu.texture2d(10, nS + nE, data);
      this.weights.perceive = weights(packDense(t("pointwise.weight"), t("pointwise.bias"), hidden, inputs, inputAt, nS + nE, 1));
    } else {
      this.weights.perceive = weights(packDense(t("perceive.weight"), t("perceive.bias"), hidden, inputs, inputAt, nS + nE, 9));
    }
    this.weights.hidden = [];
    for (let l = 0; l < c.hidden_layers; l++) {
      this.weights.hidden.push(weights(packDense(t(`hidden.${l}.weight`), t(`hidden.${l}.bias`), hidden, hidden, stateAt, nH, 1)));
    }
    this.weights.update = weights(packDense(t("update.weight"), t("update.bias"), c.state_channels, hidden, stateAt, nH, 1));
    this.weights.reset = c.reset_gate ? weights(packDense(t("reset.weight"), t("reset.bias"), 1, hidden, stateAt, nH, 1)) : null;
    this.weights.classifier = weights(packDense(t("classifier.weight"), t("classifier.bias"), c.num_classes, c.state_channels, stateAt, nS, 1));
    this.full = new Grid(gpu, this.dims, width, height);
    this.coarse = new Map();
    for (const level of c.cascade?.levels ?? []) {
      this.coarse.set(level.factor, new Grid(gpu, this.dims, Math.ceil(width / level.factor), Math.ceil(height / level.factor)));
    }
    this.logitsTexture = gpu.array(width, height, 1);
    this.seed = 0;
    this.steps = 0;
    this.damages = 0;
  }

  /** The coarse factor of step `t` (0-based), or 1 on the full grid, as
   * ca-core's `Cascade::factor_at`. */
  factorAt(t) {
    let end = 0;
    for (const level of this.config.cascade?.levels ?? []) {
      end += level.steps;
      if (t < end) return level.factor;
    }
    return 1;
  }

  /** The grid step `t` runs on. */
  gridAt(t) {
    const f = this.factorAt(t);
    return f === 1 ? this.full : this.coarse.get(f);
  }

  /** Sets the image the cells read: `chw` RGB planes of `width x height`
   * values in [0, 1]; standardised as the model's config says, averaged
   * over blocks for each coarse grid. */
  setImage(chw) {
    const plane = this.width * this.height;
    if (chw.length !== 3 * plane) {
      throw new Error(`the image has ${chw.length} values, the colony needs 3 x ${this.height} x ${this.width}`);
    }
    const env = standardise(chw, plane, this.config.image_norm);
    this.gpu.upload(this.full.env, packChannels(env, 3, plane));
    for (const [f, grid] of this.coarse) {
      const coarse = blockMean(env, 3, this.height, this.width, f);
      this.gpu.upload(grid.env, packChannels(coarse, 3, grid.width * grid.height));
    }
  }

  /** Restarts from the state N(0, I) drawn by the hash RNG from `seed`. */
  restart(seed) {
    this.seed = seed >>> 0;
    this.steps = 0;
    const g = this.full;
    for (let l = 0; l < this.dims.nS; l++) {
      this.gpu.draw(this.programs.DRAW, g.state[g.current], l,
        { uSeed: { u: this.seed }, uStream: { u: INIT_STREAM }, uMask: { i: 0 }, uLayer: { i: l }, uChannels: { i: this.config.state_channels }, uP: { f: 0 }, uSize: { i: [g.width, g.height] } }, {});
    }
  }

  /** Replaces the state: `chw` S planes of `width x height` values. */
  setState(chw) {
    const plane = this.width * this.height;
    if (chw.length !== this.config.state_channels * plane) {
      throw new Error(`the state has ${chw.length} values, the colony needs ${this.config.state_channels} x ${this.height} x ${this.width}`);
    }
    const g = this.full;
    this.gpu.upload(g.state[g.current], packChannels(chw, this.config.state_channels, plane));
  }

  /** The state, S planes of `width x height` values (CHW). */
  readState() {
    const g = this.full;
    return unpackChannels(this.gpu.read(g.state[g.current]), this.config.state_channels, this.width * this.height);
  }

  /**
   * One step. `draws` (optional) gives the update mask (`mask`, one value
   * a cell of the grid this step runs on) and the reset noise (`noise`, S
   * planes of that grid); without it the hash RNG draws them from (seed,
   * step).
   */
  step(draws) {
    const factor = this.factorAt(this.steps);
    const grid = this.gridAt(this.steps);
    const gpu = this.gpu;
    const P = this.programs;
    const { nS } = this.dims;
    const size = { i: [grid.width, grid.height] };
    if (factor !== 1) {
      const full = this.full;
      for (let l = 0; l < nS; l++) {
        gpu.draw(P.SUBSAMPLE, grid.state[grid.current], l, { uLayer: { i: l }, uFactor: { i: factor } }, { uIn: full.state[full.current] });
      }
    }
    if (draws) {
      const plane = grid.width * grid.height;
      if (draws.mask.length !== plane) throw new Error(`the mask has ${draws.mask.length} values, step ${this.steps} runs on ${grid.height} x ${grid.width} cells`);
      gpu.upload(grid.mask, packChannels(draws.mask, 1, plane));
      if (this.config.reset_gate) {
        if (!draws.noise || draws.noise.length !== this.config.state_channels * plane) {
          throw new Error(`the noise needs ${this.config.state_channels} x ${grid.height} x ${grid.width} values`);
        }
        gpu.upload(grid.noise, packChannels(draws.noise, this.config.state_channels, plane));
      }
    } else {
      const common = { uSeed: { u: this.seed }, uStream: { u: this.steps }, uChannels: { i: this.config.state_channels }, uP: { f: this.config.update_prob }, uSize: size };
      gpu.draw(P.DRAW, grid.mask, 0, { ...common, uMask: { i: 1 }, uLayer: { i: 0 } }, {});
      if (this.config.reset_gate) {
        for (let l = 0; l < nS; l++) gpu.draw(P.DRAW, grid.noise, l, { ...common, uMask: { i: 0 }, uLayer: { i: l } }, {});
      }
    }
    this.stepGrid(grid);
    if (factor !== 1) {
      const full = this.full;
      const next = 1 - full.current;
      for (let l = 0; l < nS; l++) {
        gpu.draw(P.UPSAMPLE, full.state[next], l, { uLayer: { i: l }, uFactor: { i: factor } }, { uIn: grid.state[grid.current] });
      }
      full.current = next;
    }
    this.steps += 1;
  }

  /** One step of the rule on `grid`, its draws in place. */
  stepGrid(g) {
    const gpu = this.gpu;
    const P = this.programs;
    const c = this.config;
    const { nS, nE, nH } = this.dims;
    const size = { i: [g.width, g.height] };
    const state = g.state[g.current];
    const dense = (target, weights, a, nA, b, nB, taps, relu) => {
      for (let l = 0; l < target.layers; l++) {
        gpu.draw(P.DENSE, target, l, { uNA: { i: nA }, uNB: { i: nB }, uTaps: { i: taps }, uOut: { i: l }, uRelu: { i: relu }, uSize: size },
          { uA: a, uB: b, uW: weights });
      }
    };
    if (this.dims.depthwise) {
      for (let l = 0; l < nS + nE; l++) {
        gpu.draw(P.DEPTHWISE, g.depthwise, l, { uNA: { i: nS }, uOut: { i: l }, uSize: size }, { uA: state, uB: g.env, uW: this.weights.depthwise });
      }
      dense(g.hidden[0], this.weights.perceive, g.depthwise, nS + nE, null, 0, 1, 1);
    } else {
      dense(g.hidden[0], this.weights.perceive, state, nS, g.env, nE, 9, 1);
    }
    let h = 0;
    for (const w of this.weights.hidden) {
      dense(g.hidden[1 - h], w, g.hidden[h], nH, null, 0, 1, 1);
      h = 1 - h;
    }
    for (let l = 0; l < nS; l++) {
      gpu.draw(P.CANDIDATE, g.candidate, l,
        { uNH: { i: nH }, uOut: { i: l }, uResidual: { i: c.residual ? 1 : 0 }, uReset: { i: c.reset_gate ? 1 : 0 } },
        { uH: g.hidden[h], uState: state, uNoise: g.noise, uW: this.weights.update, uR: this.weights.reset });
    }
    const normed = c.norm === "instance" || c.norm === "batch";
    if (normed) {
      this.reduce(g, g.pyramids[0], 1, null);
      this.reduce(g, g.pyramids[1], 2, g.pyramids[0].at(-1));
    }
    const next = g.state[1 - g.current];
    for (let l = 0; l < nS; l++) {
      gpu.draw(P.NORMALIZE, next, l, { uNorm: { i: normed ? 1 : 0 }, uLayer: { i: l }, uNS: { i: nS } },
        { uState: state, uCand: g.candidate, uMask: g.mask, uMean: normed ? g.pyramids[0].at(-1) : null, uVar: normed ? g.pyramids[1].at(-1) : null });
    }
    g.current = 1 - g.current;
  }

  /** The norm's sums of `mode` (1: candidates, 2: squared deviations from
   * the means of `stats`) down `pyramid` to 1 x 1. */
  reduce(g, pyramid, mode, stats) {
    const { nS } = this.dims;
    let input = g.candidate;
    let inSize = [g.width, g.height];
    pyramid.forEach((level, i) => {
      for (let l = 0; l <= nS; l++) {
        this.gpu.draw(this.programs.REDUCE, level, l,
          { uMode: { i: i === 0 ? mode : 0 }, uLayer: { i: l }, uNS: { i: nS }, uBlock: { i: REDUCE_BLOCK }, uInSize: { i: inSize } },
          { uIn: input, uMask: g.mask, uStats: stats });
      }
      input = level;
      inSize = [level.width, level.height];
    });
  }

  /** Class logits of every cell: `num_classes` planes of `width x height`. */
  logits() {
    const g = this.full;
    const { nS } = this.dims;
    this.gpu.draw(this.programs.DENSE, this.logitsTexture, 0,
      { uNA: { i: nS }, uNB: { i: 0 }, uTaps: { i: 1 }, uOut: { i: 0 }, uRelu: { i: 0 }, uSize: { i: [g.width, g.height] } },
      { uA: g.state[g.current], uB: null, uW: this.weights.classifier });
    return unpackChannels(this.gpu.read(this.logitsTexture), this.config.num_classes, this.width * this.height);
  }

  /** Replaces the state in the disc at (`x`, `y`) (fractions of the width
   * and height) of radius `radius` (a fraction of the longer side) by fresh
   * noise, as the server's damage brush. */
  damage(x, y, radius) {
    const g = this.full;
    const next = 1 - g.current;
    this.damages += 1;
    for (let l = 0; l < this.dims.nS; l++) {
      this.gpu.draw(this.programs.DAMAGE, g.state[next], l,
        { uLayer: { i: l }, uChannels: { i: this.config.state_channels }, uSeed: { u: (this.seed ^ Math.imul(this.damages, 0x9e3779b9)) >>> 0 },
          uCx: { f: x * this.width }, uCy: { f: y * this.height }, uRadius: { f: radius * Math.max(this.width, this.height) }, uSize: { i: [this.width, this.height] } },
        { uIn: g.state[g.current] });
    }
    g.current = next;
  }
}

/** The most likely class of every cell (the first on a tie) and the
 * normalised entropy of its softmax (0 sure, 1 uniform), from
 * `logits` (`classes` planes of `plane` values). */
export function classify(logits, classes, plane) {
  const labels = new Uint8Array(plane);
  const entropy = new Float32Array(plane);
  const norm = Math.log(classes);
  for (let i = 0; i < plane; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (logits[k * plane + i] > logits[best * plane + i]) best = k;
    labels[i] = best;
    if (classes > 1) {
      const top = logits[best * plane + i];
      let sum = 0;
      for (let k = 0; k < classes; k++) sum += Math.exp(logits[k * plane + i] - top);
      let h = 0;
      for (let k = 0; k < classes; k++) {
        const p = Math.exp(logits[k * plane + i] - top) / sum;
        if (p > 0) h -= p * Math.log(p);
      }
      entropy[i] = h / norm;
    }
  }
  return { labels, entropy };
}
