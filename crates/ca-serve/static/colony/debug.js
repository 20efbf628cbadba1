// The colony's debug entry point, `window.cellsegDebug` on debug.html: runs
// a model's colony in this browser from given arrays, so that a test can
// compare it with the Rust colony (crates/ca-serve/tests/webgl.rs).

import { loadModel, modelFromBytes } from "./model.js";
import { Colony, classify } from "./colony.js";
import { createContext } from "./webgl.js";

/** Base64 of the bytes of a typed array. */
export function toBase64(array) {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** The little-endian f32 values of base64 `text`. */
export function f32FromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

const colonies = new Map();

/** One colony per model URL and size, its shaders compiled once. */
async function colonyFor(url, width, height) {
  const key = `${url} ${width}x${height}`;
  if (!colonies.has(key)) {
    const model = await loadModel(url);
    colonies.set(key, new Colony(createContext(), model, width, height));
  }
  return colonies.get(key);
}

/**
 * Runs a colony and returns what it reached:
 *
 * - `model`: the model file's URL; `width`, `height`: the grid;
 * - `image`: base64 of the f32 RGB planes (CHW, values in [0, 1]);
 * - `state` (optional): base64 of the f32 initial state (S planes); else
 *   the hash RNG's N(0, I) from `seed`;
 * - `steps`: steps to run; `draws` (optional): the URL of a binary file
 *   of f32 draws, step after step the mask (one value a cell of the grid
 *   the step runs on) then, with a reset gate, the noise (S planes; the
 *   file may hold more steps than are run); else
 *   the hash RNG draws them from `seed` and the step;
 * - `seed`: the hash RNG's seed (0 when absent).
 *
 * Returns `{ state, labels, steps, ms }`: the final state (base64 of f32,
 * S planes), the class of every cell (base64 of u8), the steps run and the
 * milliseconds the steps took (the GPU flushed).
 */
async function run(options) {
  const { width, height, steps } = options;
  const colony = await colonyFor(options.model, width, height);
  colony.setImage(f32FromBase64(options.image));
  colony.restart(options.seed ?? 0);
  if (options.state) colony.setState(f32FromBase64(options.state));
  let draws = null;
  if (options.draws) {
    const response = await fetch(options.draws);
    if (!response.ok) throw new Error(`${options.draws}: HTTP ${response.status}`);
    draws = new Float32Array(await response.arrayBuffer());
  }
  const s = colony.config.state_channels;
  let at = 0;
  const started = performance.now();
  for (let t = 0; t < steps; t++) {
    if (draws) {
      const grid = colony.gridAt(t);
      const plane = grid.width * grid.height;
      const needed = plane * (colony.config.reset_gate ? 1 + s : 1);
      if (at + needed > draws.length) {
        throw new Error(`${options.draws}: ${draws.length} values end before the draws of step ${t}`);
      }
      const mask = draws.subarray(at, at + plane);
      const noise = colony.config.reset_gate ? draws.subarray(at + plane, at + needed) : null;
      at += needed;
      colony.step({ mask, noise });
    } else {
      colony.step();
    }
  }
  const state = colony.readState();
  const ms = performance.now() - started;
  const plane = width * height;
  const { labels } = classify(colony.logits(), colony.config.num_classes, plane);
  return { state: toBase64(state), labels: toBase64(labels), steps, ms };
}

/**
 * Steps per second of `steps` steps of the model at `url` on a
 * `width x height` grid with the hash RNG (after `warmup` steps), the GPU
 * flushed by reading the state back at the end.
 */
async function bench({ model, width, height, steps, warmup = 3 }) {
  const colony = await colonyFor(model, width, height);
  colony.setImage(new Float32Array(3 * width * height).fill(0.5));
  colony.restart(1);
  for (let t = 0; t < warmup; t++) colony.step();
  colony.readState();
  const started = performance.now();
  for (let t = 0; t < steps; t++) colony.step();
  colony.readState();
  const seconds = (performance.now() - started) / 1000;
  return { steps, seconds, steps_per_second: steps / seconds };
}

/** Reads a model file given as base64 (`name` in messages): its config,
 * or the Error's message the page would show. */
function readModel({ name, bytes }) {
  const raw = atob(bytes);
  const buffer = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) buffer[i] = raw.charCodeAt(i);
  try {
    return { config: modelFromBytes(buffer.buffer, name).config };
  } catch (e) {
    return { error: e.message };
  }
}

window.cellsegDebug = { run, bench, readModel };
document.body.dataset.ready = "1";
