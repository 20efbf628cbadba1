// "Settled after N steps" for the colony in the browser: ca-core's
// SettleTracker in JavaScript, under the rule the server uses
// (`Settling::default`, which models/index.json carries as `settling`).

/**
 * Follows the class probabilities of one image step by step and says when
 * its map has settled: the map watched is the most likely class of the
 * running average `p_t = s p_(t-1) + (1 - s) softmax_t` (`s` the rule's
 * `smoothing`); the image has settled at a step `t >= min_steps` where, in
 * each of the last `window` steps, that map changed at no more than
 * `max_change` of the cells; past `max_steps` it is not watched any more.
 */
export class SettleTracker {
  /** `rule`: `{max_change, window, min_steps, max_steps, smoothing}`. */
  constructor(rule) {
    this.rule = rule;
    this.restart();
  }

  /** Forgets everything: the next observation is step 1. */
  restart() {
    this.steps = 0;
    this.average = null;
    this.previous = null;
    this.quiet = 0;
    this.settledAfter = null;
  }

  /** Whether the next step's probabilities are still wanted (not settled,
   * not past `max_steps`). */
  get watching() {
    return this.settledAfter === null && this.steps < this.rule.max_steps;
  }

  /** Records the logits (`[C * plane]`, class-major) after the next step. */
  observe(logits, classes, plane) {
    this.steps += 1;
    const s = this.rule.smoothing;
    const p = new Float32Array(classes * plane);
    for (let i = 0; i < plane; i++) {
      let top = -Infinity;
      for (let k = 0; k < classes; k++) top = Math.max(top, logits[k * plane + i]);
      let sum = 0;
      for (let k = 0; k < classes; k++) sum += Math.exp(logits[k * plane + i] - top);
      for (let k = 0; k < classes; k++) {
        const q = Math.exp(logits[k * plane + i] - top) / sum;
        p[k * plane + i] = this.average ? s * this.average[k * plane + i] + (1 - s) * q : q;
      }
    }
    this.average = p;
    const map = new Uint8Array(plane);
    for (let i = 0; i < plane; i++) {
      let best = 0;
      for (let k = 1; k < classes; k++) if (p[k * plane + i] > p[best * plane + i]) best = k;
      map[i] = best;
    }
    if (this.previous) {
      let changed = 0;
      for (let i = 0; i < plane; i++) if (map[i] !== this.previous[i]) changed += 1;
      this.quiet = changed <= this.rule.max_change * plane ? this.quiet + 1 : 0;
    }
    this.previous = map;
    if (this.steps >= this.rule.min_steps && this.quiet >= this.rule.window) {
      this.settledAfter = this.steps;
    }
  }
}
