// The page's colony in the visitor's browser: a model from
// models/NAME.safetensors on WebGL2 (colony.js), fed by a photo or the
// camera's frames (nothing leaves the page), stepped on animation frames
// at the chosen speed, drawn into the page's four views.

import { loadModel } from "./model.js";
import { Colony, classify } from "./colony.js";
import { createContext } from "./webgl.js";
import { SettleTracker } from "./settle.js";

/** Class colours, as ca-viz's PALETTE (background, object, boundary). */
export const PALETTE = [[30, 40, 90], [240, 130, 30], [250, 240, 160]];
/** Class names, as ca-core's CLASS_NAMES. */
export const CLASS_NAMES = ["background", "object", "boundary"];

/** Most steps one animation frame runs (a slow GPU still draws). */
const MAX_STEPS_PER_FRAME = 16;

/** Milliseconds an animation frame should take at most: past it, the
 * frames run fewer steps, so that the page stays responsive on a slow GPU
 * (a software one steps the main cell in about 0.1 s). */
const FRAME_BUDGET_MS = 50;

/** A colour on the black-red-yellow-white ramp for t in [0, 1] (ca-viz's
 * heat_colour). */
function heat(t) {
  const c = (v) => Math.round(255 * Math.min(1, Math.max(0, v)));
  return [c(3 * t), c(3 * t - 1), c(3 * t - 2)];
}

/** A fixed projection of `channels` state channels onto RGB (a hash of the
 * channel and the colour), so that the same model always looks the same. */
function projection(channels) {
  const m = [];
  let x = 0x5eedc010;
  for (let i = 0; i < 3 * channels; i++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    x = Math.imul(x ^ (x >>> 12), 0x297a2d39) >>> 0;
    m.push(((x >>> 8) / 16777216 - 0.5) * 2 * Math.sqrt(3 / channels));
  }
  return m;
}

/** The live colony of the page. `ui` gives the views (`overlay`,
 * `classes`, `state`, `uncertainty`: canvases), `settling` (the rule of
 * "settled after N steps", models/index.json's) and `say(text, sticky)`;
 * `onFrame(stats)` is called after every drawn frame. */
export class LiveColony {
  constructor(ui) {
    this.ui = ui;
    this.gl = createContext();
    this.colony = null;
    this.modelName = null;
    this.image = null;
    this.running = false;
    this.speed = 30;
    this.limit = null;
    this.sinceReset = 0;
    this.uncertainty = false;
    this.settle = new SettleTracker(ui.settling);
    this.seed = 0;
    this.due = 0;
    this.perFrame = 1;
    this.frames = 0;
    this.videoFrames = 0;
    this.rate = { at: performance.now(), steps: 0, frames: 0, video: 0 };
    this.shown = { sps: 0, fps: 0, videoFps: 0 };
    this.dirty = false;
    this.active = true;
    this.last = performance.now();
    this.scratch = document.createElement("canvas");
    requestAnimationFrame((t) => this.tick(t));
  }

  /** Loads model `name` from `models/NAME.safetensors` (keeping the image
   * and restarting from noise); the Error names the file and the problem. */
  async useModel(name) {
    const model = await loadModel(`models/${encodeURIComponent(name)}.safetensors`);
    const size = model.imageSize;
    this.colony = new Colony(this.gl, model, size, size);
    this.modelName = name;
    this.projection = projection(model.config.state_channels);
    this.scratch.width = size;
    this.scratch.height = size;
    if (this.image) {
      this.colony.setImage(this.image);
      this.reset();
    }
    return model;
  }

  /** The image of `source` (an ImageBitmap, video or canvas) at the
   * model's grid: its centred square for a video, the whole picture
   * resized otherwise (as the server resizes photos); RGB planes in [0, 1]. */
  grab(source, crop) {
    const size = this.scratch.width;
    const ctx = this.scratch.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingQuality = "high";
    if (crop) {
      const [w, h] = [source.videoWidth, source.videoHeight];
      const side = Math.min(w, h);
      ctx.drawImage(source, (w - side) / 2, (h - side) / 2, side, side, 0, 0, size, size);
    } else {
      ctx.drawImage(source, 0, 0, size, size);
    }
    const rgba = ctx.getImageData(0, 0, size, size).data;
    const plane = size * size;
    const chw = new Float32Array(3 * plane);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) chw[c * plane + i] = rgba[4 * i + c] / 255;
    }
    return chw;
  }

  /** A photo: the colony restarts from noise on it and runs. */
  async photo(file) {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    this.image = this.grab(bitmap, false);
    bitmap.close();
    this.colony.setImage(this.image);
    this.seed += 1;
    this.reset();
    this.running = true;
  }

  /** A camera frame: the colony keeps its state and reads the new image
   * (the first frame starts it from noise). */
  frame(video) {
    if (!this.colony || !video.videoWidth) return;
    const first = this.image === null;
    this.image = this.grab(video, true);
    this.colony.setImage(this.image);
    this.videoFrames += 1;
    this.settle.restart();
    if (first) {
      this.reset();
      this.running = true;
    }
  }

  /** Restarts from noise (counting the step limit anew). */
  reset() {
    this.colony.restart(this.seed);
    this.sinceReset = 0;
    this.settle.restart();
    this.dirty = true;
  }

  /** Damages the disc at (`x`, `y`) of radius `radius` (fractions of the
   * view); the step limit counts anew. */
  damage(x, y, radius) {
    if (!this.colony || !this.image) return;
    this.colony.damage(x, y, radius);
    this.sinceReset = 0;
    this.settle.restart();
    this.dirty = true;
  }

  /** Stops the animation loop (the page switched to the server). */
  stop() {
    this.active = false;
    this.running = false;
  }

  tick(now) {
    if (!this.active) return;
    requestAnimationFrame((t) => this.tick(t));
    const dt = Math.min(0.25, (now - this.last) / 1000);
    this.last = now;
    const c = this.colony;
    const started = performance.now();
    if (c && this.image && this.running) {
      this.due = Math.min(this.perFrame, this.due + this.speed * dt);
      let n = Math.floor(this.due);
      if (this.limit !== null) n = Math.min(n, this.limit - this.sinceReset);
      for (let i = 0; i < n; i++) {
        c.step();
        // Each step's map until it settles (a read-back per step, only
        // for the first max_steps steps after a change).
        if (this.settle.watching) this.settle.observe(c.logits(), c.config.num_classes, c.width * c.height);
      }
      this.due -= Math.max(0, n);
      this.sinceReset += Math.max(0, n);
      this.rate.steps += Math.max(0, n);
      if (this.limit !== null && this.sinceReset >= this.limit) this.running = false;
      if (n > 0) this.dirty = true;
    }
    if (c && this.image && this.dirty) {
      this.draw();
      this.dirty = false;
      this.frames += 1;
      this.rate.frames += 1;
      // The frame's work is done (the draw read the GPU back): fewer steps
      // a frame when it took too long, more when there is room.
      const took = performance.now() - started;
      if (took > FRAME_BUDGET_MS) this.perFrame = Math.max(1, Math.floor(this.perFrame / 2));
      else if (took < FRAME_BUDGET_MS / 2) this.perFrame = Math.min(MAX_STEPS_PER_FRAME, this.perFrame + 1);
    }
    const elapsed = (now - this.rate.at) / 1000;
    if (elapsed >= 1) {
      this.shown = {
        sps: this.rate.steps / elapsed,
        fps: this.rate.frames / elapsed,
        videoFps: (this.videoFrames - this.rate.video) / elapsed,
      };
      this.rate = { at: now, steps: 0, frames: 0, video: this.videoFrames };
    }
    this.ui.onFrame({
      step: c ? c.steps : 0,
      settledAfter: this.settle.settledAfter,
      running: this.running,
      frames: this.frames,
      videoFrames: this.videoFrames,
      ...this.shown,
    });
  }

  /** Draws the four views from the colony's logits and state. */
  draw() {
    const c = this.colony;
    const size = c.width;
    const plane = size * size;
    const classes = c.config.num_classes;
    const { labels, entropy } = classify(c.logits(), classes, plane);
    const state = c.readState();
    const s = c.config.state_channels;
    const views = {
      overlay: new ImageData(size, size),
      classes: new ImageData(size, size),
      state: new ImageData(size, size),
      uncertainty: new ImageData(size, size),
    };
    const p = this.projection;
    for (let i = 0; i < plane; i++) {
      const colour = PALETTE[labels[i]] ?? [255, 0, 255];
      const px = (view, rgb) => {
        view.data.set(rgb, 4 * i);
        view.data[4 * i + 3] = 255;
      };
      px(views.classes, colour);
      px(views.overlay, [0, 1, 2].map((k) => Math.round(0.5 * 255 * this.image[k * plane + i] + 0.5 * colour[k])));
      const rgb = [0, 0, 0];
      for (let ch = 0; ch < s; ch++) {
        const v = state[ch * plane + i];
        for (let k = 0; k < 3; k++) rgb[k] += p[3 * ch + k] * v;
      }
      px(views.state, rgb.map((a) => Math.round(255 * Math.min(1, Math.max(0, 0.5 + a / 4)))));
      px(views.uncertainty, this.uncertainty ? heat(entropy[i]) : [40, 40, 40]);
    }
    const ctx = this.scratch.getContext("2d", { willReadFrequently: true });
    for (const [name, image] of Object.entries(views)) {
      const canvas = this.ui[name];
      ctx.putImageData(image, 0, 0);
      const out = canvas.getContext("2d");
      out.imageSmoothingEnabled = false;
      out.drawImage(this.scratch, 0, 0, size, size, 0, 0, canvas.width, canvas.height);
    }
  }
}
