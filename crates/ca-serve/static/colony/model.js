// A ca-core model file in the browser: its cell config (metadata
// `ca.cell_config`), its square image size (`ca.image_size`) and its
// tensors, each checked against the shape the config needs, as
// `ca_core::param_shapes` lists them.

import { parseSafetensors } from "./safetensors.js";

/** The metadata key of the cell config's JSON. */
export const CONFIG_KEY = "ca.cell_config";
/** The metadata key of the file format. */
export const FORMAT_KEY = "ca.format";
/** The format this reader understands. */
export const FORMAT = "ca-core/1";
/** The metadata key of the square image size the model was trained at. */
export const IMAGE_SIZE_KEY = "ca.image_size";
/** The metadata key that marks a high-resolution (encoder/decoder) model. */
export const HIRES_KEY = "ca.hires";

/** Perceptions the browser step implements. */
const PERCEPTIONS = ["conv3x3", "depthwise", "random_depthwise"];
/** Norms the browser step implements ("batch" over one image is "instance"). */
const NORMS = ["none", "instance", "batch"];
/** Classes the classifier pass reads out in one texel. */
const MAX_CLASSES = 4;

/**
 * The tensor names and shapes a config needs, in the order of
 * `ca_core::param_shapes`.
 */
export function paramShapes(c) {
  const [s, h, i, k] = [c.state_channels, c.hidden_channels, c.state_channels + c.env_channels, c.num_classes];
  const out = [];
  const layer = (id, w) => {
    out.push([`${id}.weight`, w]);
    out.push([`${id}.bias`, [w[0]]]);
  };
  if (c.perception === "conv3x3") {
    layer("perceive", [h, i, 3, 3]);
  } else {
    layer("depthwise", [i, 1, 3, 3]);
    layer("pointwise", [h, i]);
  }
  for (let l = 0; l < c.hidden_layers; l++) layer(`hidden.${l}`, [h, h]);
  layer("update", [s, h]);
  if (c.reset_gate) layer("reset", [1, h]);
  layer("classifier", [k, s]);
  return out;
}

function positiveInteger(config, field, name) {
  const v = config[field];
  if (!Number.isInteger(v) || v < 1) {
    throw new Error(`${name}: cell config field '${field}' = ${JSON.stringify(v)}: must be a whole number of at least 1`);
  }
}

/**
 * Checks a cell config (the parsed `ca.cell_config`) for what the browser
 * step can run; the Error names the file, the field and its value.
 */
export function checkConfig(config, name) {
  if (config === null || typeof config !== "object") {
    throw new Error(`${name}: '${CONFIG_KEY}' is not a JSON object`);
  }
  for (const field of ["state_channels", "hidden_channels", "env_channels", "num_classes"]) {
    positiveInteger(config, field, name);
  }
  if (!Number.isInteger(config.hidden_layers) || config.hidden_layers < 0 || config.hidden_layers > 64) {
    throw new Error(`${name}: cell config field 'hidden_layers' = ${JSON.stringify(config.hidden_layers)}: must be a whole number from 0 to 64`);
  }
  if (!PERCEPTIONS.includes(config.perception)) {
    throw new Error(`${name}: unknown perception '${config.perception}' (the browser runs ${PERCEPTIONS.join(", ")})`);
  }
  if (!NORMS.includes(config.norm)) {
    throw new Error(`${name}: norm '${config.norm}' is not run in the browser (it runs ${NORMS.join(", ")}); use the server`);
  }
  if (typeof config.residual !== "boolean" || typeof config.reset_gate !== "boolean") {
    throw new Error(`${name}: cell config fields 'residual' and 'reset_gate' must be true or false`);
  }
  if (!(config.update_prob > 0 && config.update_prob <= 1)) {
    throw new Error(`${name}: cell config field 'update_prob' = ${JSON.stringify(config.update_prob)}: must lie in (0, 1]`);
  }
  if (config.env_channels !== 3) {
    throw new Error(`${name}: env_channels = ${config.env_channels}: the browser runs RGB models (3 environment channels); models behind an encoder stay on the server`);
  }
  if (config.num_classes > MAX_CLASSES) {
    throw new Error(`${name}: ${config.num_classes} classes: the browser reads at most ${MAX_CLASSES}`);
  }
  const norm = config.image_norm;
  if (norm != null) {
    const finite3 = (a) => Array.isArray(a) && a.length === 3 && a.every(Number.isFinite);
    if (!finite3(norm.mean) || !finite3(norm.std) || !norm.std.every((v) => v > 0) || !(norm.gain > 0)) {
      throw new Error(`${name}: image_norm ${JSON.stringify(norm)}: needs 3 finite means, 3 positive deviations and a positive gain`);
    }
  }
  let previous = Infinity;
  for (const level of config.cascade?.levels ?? []) {
    if (!Number.isInteger(level.factor) || level.factor < 2 || level.factor >= previous || !Number.isInteger(level.steps) || level.steps < 1) {
      throw new Error(`${name}: cascade ${JSON.stringify(config.cascade.levels)}: factors must be whole, at least 2 and decreasing, steps at least 1`);
    }
    previous = level.factor;
  }
}

/**
 * A model from the bytes of its safetensors file `name`: `{ name, config,
 * imageSize, tensors }`, every tensor the config needs present with its
 * shape, none extra. Throws an Error naming the file and the problem; a
 * high-resolution model is refused with a message that it runs on the
 * server only.
 */
export function modelFromBytes(buffer, name) {
  const { tensors, metadata } = parseSafetensors(buffer, name);
  if (metadata[HIRES_KEY] !== undefined) {
    throw new Error(`${name} is a high-resolution (encoder/decoder) model: it runs on the server only, not in the browser`);
  }
  const json = metadata[CONFIG_KEY];
  if (json === undefined) {
    throw new Error(`${name}: no '${CONFIG_KEY}' metadata: not a model written by ca-core`);
  }
  if (metadata[FORMAT_KEY] !== undefined && metadata[FORMAT_KEY] !== FORMAT) {
    throw new Error(`${name}: format '${metadata[FORMAT_KEY]}', this page reads '${FORMAT}'`);
  }
  let config;
  try {
    config = JSON.parse(json);
  } catch (e) {
    throw new Error(`${name}: '${CONFIG_KEY}' is not JSON (${e.message})`);
  }
  checkConfig(config, name);
  const imageSize = Number(metadata[IMAGE_SIZE_KEY] ?? 0);
  if (!Number.isInteger(imageSize) || imageSize < 1) {
    throw new Error(`${name}: '${IMAGE_SIZE_KEY}' = ${JSON.stringify(metadata[IMAGE_SIZE_KEY])}: needs the square image size the model was trained at`);
  }
  const needed = paramShapes(config);
  for (const [tensor, shape] of needed) {
    const t = tensors.get(tensor);
    if (!t) throw new Error(`${name}: tensor '${tensor}' is missing (the config needs shape [${shape.join(", ")}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${name}: tensor '${tensor}' has shape [${t.shape.join(", ")}], the config needs [${shape.join(", ")}]`);
    }
  }
  const names = new Set(needed.map(([n]) => n));
  for (const tensor of tensors.keys()) {
    if (!names.has(tensor)) throw new Error(`${name}: tensor '${tensor}' is not part of a ${config.perception} cell rule`);
  }
  return { name, config, imageSize, tensors };
}

/** Fetches and reads the model file at `url`; errors name the URL. */
export async function loadModel(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return modelFromBytes(await response.arrayBuffer(), url);
}
