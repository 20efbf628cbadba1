// Small WebGL2 helpers for the colony: float texture arrays (4 channels a
// texel, one layer per 4 channels), programs that draw one full-screen
// triangle into one layer of a texture array, and read-back.

/** A WebGL2 context on a fresh canvas, with float render targets; throws
 * with the reason when the browser has no WebGL2 or no
 * EXT_color_buffer_float. */
export function createContext(canvas = document.createElement("canvas")) {
  const gl = canvas.getContext("webgl2", { antialias: false, depth: false, preserveDrawingBuffer: false });
  if (!gl) throw new Error("this browser has no WebGL2");
  if (!gl.getExtension("EXT_color_buffer_float")) {
    throw new Error("this browser's WebGL2 cannot render to float textures (no EXT_color_buffer_float)");
  }
  return gl;
}

/** Whether this browser offers WebGL2 with float render targets. */
export function webgl2Available() {
  try {
    const gl = createContext();
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return true;
  } catch {
    return false;
  }
}

const VERTEX = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

/** The header of every fragment shader. */
export const FRAGMENT_HEADER = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
precision highp sampler2DArray;
out vec4 o;
`;

/** A GPU with its programs, a cache of framebuffers and helpers. */
export class Gpu {
  /** Wraps the WebGL2 context `gl` (from {@link createContext}). */
  constructor(gl) {
    this.gl = gl;
    this.vao = gl.createVertexArray();
    this.framebuffers = new Map();
    this.dummy = this.array(1, 1, 1);
    this.vertex = this.shader(gl.VERTEX_SHADER, VERTEX);
  }

  shader(type, source) {
    const gl = this.gl;
    const s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) {
      throw new Error(`a colony shader does not compile: ${gl.getShaderInfoLog(s)}`);
    }
    return s;
  }

  /** A program from a fragment shader body (after {@link FRAGMENT_HEADER}). */
  program(body) {
    const gl = this.gl;
    const p = gl.createProgram();
    gl.attachShader(p, this.vertex);
    gl.attachShader(p, this.shader(gl.FRAGMENT_SHADER, FRAGMENT_HEADER + body));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) {
      throw new Error(`a colony program does not link: ${gl.getProgramInfoLog(p)}`);
    }
    return { handle: p, locations: new Map() };
  }

  /** An RGBA32F texture array `width x height x layers`, filled with
   * `data` (layer-major, row-major, 4 floats a texel) or zeros. */
  array(width, height, layers, data = null) {
    const gl = this.gl;
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, t);
    gl.texImage3D(gl.TEXTURE_2D_ARRAY, 0, gl.RGBA32F, width, height, layers, 0, gl.RGBA, gl.FLOAT,
      data ?? new Float32Array(4 * width * height * layers));
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.NEAREST], [gl.TEXTURE_MAG_FILTER, gl.NEAREST],
      [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) {
      gl.texParameteri(gl.TEXTURE_2D_ARRAY, k, v);
    }
    return { texture: t, width, height, layers };
  }

  /** Replaces the whole content of texture array `a` with `data`. */
  upload(a, data) {
    const gl = this.gl;
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, a.texture);
    gl.texSubImage3D(gl.TEXTURE_2D_ARRAY, 0, 0, 0, 0, a.width, a.height, a.layers, gl.RGBA, gl.FLOAT, data);
  }

  /** An RGBA32F 2D texture `width x height` of `data` (weights). */
  texture2d(width, height, data) {
    const gl = this.gl;
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, width, height, 0, gl.RGBA, gl.FLOAT, data);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    return { texture: t, width, height, is2d: true };
  }

  framebuffer(a, layer) {
    const key = a.texture;
    let perLayer = this.framebuffers.get(key);
    if (!perLayer) {
      perLayer = [];
      this.framebuffers.set(key, perLayer);
    }
    if (!perLayer[layer]) {
      const gl = this.gl;
      const fb = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
      gl.framebufferTextureLayer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, a.texture, 0, layer);
      const status = gl.checkFramebufferStatus(gl.FRAMEBUFFER);
      if (status !== gl.FRAMEBUFFER_COMPLETE) {
        throw new Error(`cannot render into a float texture (framebuffer status 0x${status.toString(16)})`);
      }
      perLayer[layer] = fb;
    }
    return perLayer[layer];
  }

  location(program, name) {
    if (!program.locations.has(name)) {
      program.locations.set(name, this.gl.getUniformLocation(program.handle, name));
    }
    return program.locations.get(name);
  }

  /**
   * Draws `program` into layer `layer` of texture array `target`, with
   * `uniforms` (name -> `{ i }` int or ivec2, `{ f }` float, `{ u }` uint)
   * and `textures` (name -> a texture from {@link Gpu#array} or
   * {@link Gpu#texture2d}; `null` binds an empty array).
   */
  draw(program, target, layer, uniforms, textures) {
    const gl = this.gl;
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.framebuffer(target, layer));
    gl.viewport(0, 0, target.width, target.height);
    gl.useProgram(program.handle);
    for (const [name, value] of Object.entries(uniforms)) {
      const at = this.location(program, name);
      if ("i" in value) {
        if (Array.isArray(value.i)) gl.uniform2i(at, value.i[0], value.i[1]);
        else gl.uniform1i(at, value.i);
      } else if ("u" in value) {
        gl.uniform1ui(at, value.u >>> 0);
      } else {
        gl.uniform1f(at, value.f);
      }
    }
    let unit = 0;
    for (const [name, t] of Object.entries(textures)) {
      const texture = t ?? this.dummy;
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(texture.is2d ? gl.TEXTURE_2D : gl.TEXTURE_2D_ARRAY, texture.texture);
      gl.uniform1i(this.location(program, name), unit);
      unit += 1;
    }
    gl.bindVertexArray(this.vao);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    // Unbind the samplers, so that the next draw may render into any of
    // these textures without a feedback loop.
    for (let u = 0; u < unit; u++) {
      gl.activeTexture(gl.TEXTURE0 + u);
      gl.bindTexture(gl.TEXTURE_2D_ARRAY, null);
      gl.bindTexture(gl.TEXTURE_2D, null);
    }
  }

  /** The content of texture array `a`: layer-major, row-major, 4 floats a texel. */
  read(a) {
    const gl = this.gl;
    const plane = 4 * a.width * a.height;
    const out = new Float32Array(plane * a.layers);
    for (let l = 0; l < a.layers; l++) {
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.framebuffer(a, l));
      gl.readPixels(0, 0, a.width, a.height, gl.RGBA, gl.FLOAT, out.subarray(l * plane, (l + 1) * plane));
    }
    return out;
  }
}

/** `channels` planes of `plane` values (CHW) packed into ceil(channels / 4)
 * layers of 4 lanes (channel `c` in layer `c >> 2`, lane `c & 3`; missing
 * lanes 0). */
export function packChannels(chw, channels, plane) {
  const layers = Math.ceil(channels / 4);
  const out = new Float32Array(4 * plane * layers);
  for (let c = 0; c < channels; c++) {
    const base = (c >> 2) * 4 * plane + (c & 3);
    for (let i = 0; i < plane; i++) out[base + 4 * i] = chw[c * plane + i];
  }
  return out;
}

/** The inverse of {@link packChannels}: the first `channels` planes, CHW. */
export function unpackChannels(packed, channels, plane) {
  const out = new Float32Array(channels * plane);
  for (let c = 0; c < channels; c++) {
    const base = (c >> 2) * 4 * plane + (c & 3);
    for (let i = 0; i < plane; i++) out[c * plane + i] = packed[base + 4 * i];
  }
  return out;
}
