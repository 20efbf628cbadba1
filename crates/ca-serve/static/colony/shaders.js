// The fragment shaders of one colony step (bodies after FRAGMENT_HEADER).
// Every pass writes one layer (4 channels) of a texture array; cells are
// texels, row y of the grid at texel row y.

/**
 * A 1x1 or 3x3 layer over the layers of `uA` then `uB` (zero padding at the
 * grid's edge): output layer `uOut` (4 channels) = bias + sum over taps and
 * input layers of a 4x4 block of weights times the input texel, then ReLU
 * when `uRelu` is 1. Weights in `uW`: row `uOut`, texel
 * `((g * taps + k) * 4 + j)` holds the weights from lane `j` of input layer
 * `g` at tap `k` to the 4 outputs; the bias follows the last block.
 */
export const DENSE = `
uniform sampler2DArray uA;
uniform sampler2DArray uB;
uniform sampler2D uW;
uniform int uNA;
uniform int uNB;
uniform int uTaps;
uniform int uOut;
uniform int uRelu;
uniform ivec2 uSize;
vec4 block(int base, vec4 x) {
  return mat4(texelFetch(uW, ivec2(base, uOut), 0), texelFetch(uW, ivec2(base + 1, uOut), 0),
              texelFetch(uW, ivec2(base + 2, uOut), 0), texelFetch(uW, ivec2(base + 3, uOut), 0)) * x;
}
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec4 acc = texelFetch(uW, ivec2((uNA + uNB) * uTaps * 4, uOut), 0);
  for (int k = 0; k < uTaps; k++) {
    ivec2 q = uTaps == 9 ? p + ivec2(k % 3 - 1, k / 3 - 1) : p;
    if (q.x < 0 || q.y < 0 || q.x >= uSize.x || q.y >= uSize.y) continue;
    for (int g = 0; g < uNA; g++) acc += block((g * uTaps + k) * 4, texelFetch(uA, ivec3(q, g), 0));
    for (int g = 0; g < uNB; g++) acc += block(((uNA + g) * uTaps + k) * 4, texelFetch(uB, ivec3(q, g), 0));
  }
  o = uRelu == 1 ? max(acc, 0.0) : acc;
}`;

/**
 * The depthwise 3x3 layer over the layers of `uA` then `uB` (zero
 * padding): output layer `uOut` = bias + sum over taps of the per-channel
 * tap weights times the input. Weights in `uW`: row `uOut`, texel `k` the
 * tap `k` weights of the layer's 4 channels, texel 9 the biases.
 */
export const DEPTHWISE = `
uniform sampler2DArray uA;
uniform sampler2DArray uB;
uniform sampler2D uW;
uniform int uNA;
uniform int uOut;
uniform ivec2 uSize;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec4 acc = texelFetch(uW, ivec2(9, uOut), 0);
  for (int k = 0; k < 9; k++) {
    ivec2 q = p + ivec2(k % 3 - 1, k / 3 - 1);
    if (q.x < 0 || q.y < 0 || q.x >= uSize.x || q.y >= uSize.y) continue;
    vec4 x = uOut < uNA ? texelFetch(uA, ivec3(q, uOut), 0) : texelFetch(uB, ivec3(q, uOut - uNA), 0);
    acc += texelFetch(uW, ivec2(k, uOut), 0) * x;
  }
  o = acc;
}`;

/**
 * The candidate of state layer `uOut`: the update U(h) = W_U h + b (dense
 * weights in `uW`, as for DENSE with one tap), plus the state when
 * `uResidual` is 1; with `uReset` 1 mixed with the noise by the reset gate
 * r = sigmoid(W_R h + b_R) (weights in `uR`, row 0, lane 0): r z + (1 - r) c.
 */
export const CANDIDATE = `
uniform sampler2DArray uH;
uniform sampler2DArray uState;
uniform sampler2DArray uNoise;
uniform sampler2D uW;
uniform sampler2D uR;
uniform int uNH;
uniform int uOut;
uniform int uResidual;
uniform int uReset;
vec4 block(sampler2D w, int row, int base, vec4 x) {
  return mat4(texelFetch(w, ivec2(base, row), 0), texelFetch(w, ivec2(base + 1, row), 0),
              texelFetch(w, ivec2(base + 2, row), 0), texelFetch(w, ivec2(base + 3, row), 0)) * x;
}
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec4 u = texelFetch(uW, ivec2(uNH * 4, uOut), 0);
  float gate = uReset == 1 ? texelFetch(uR, ivec2(uNH * 4, 0), 0).x : 0.0;
  for (int g = 0; g < uNH; g++) {
    vec4 h = texelFetch(uH, ivec3(p, g), 0);
    u += block(uW, uOut, g * 4, h);
    if (uReset == 1) gate += block(uR, 0, g * 4, h).x;
  }
  vec4 c = uResidual == 1 ? texelFetch(uState, ivec3(p, uOut), 0) + u : u;
  if (uReset == 1) {
    float r = 1.0 / (1.0 + exp(-gate));
    c = r * texelFetch(uNoise, ivec3(p, uOut), 0) + (1.0 - r) * c;
  }
  o = c;
}`;

/**
 * One pass of the norm's sums, over blocks of `uBlock x uBlock` cells of a
 * `uInSize` grid. `uMode` 0: the sum of layer `uLayer` of `uIn` (a coarser
 * level of the pyramid). The first level reads the candidate `uIn` and the
 * mask `uMask` (a cell fires where it is nonzero): layer `uNS` sums the
 * firing cells (lane 0); below it, `uMode` 1 sums the firing cells'
 * candidates, `uMode` 2 their squared deviations from the mean of `uStats`
 * (the final sums of mode 1: sum / max(count, 1)).
 */
export const REDUCE = `
uniform sampler2DArray uIn;
uniform sampler2DArray uMask;
uniform sampler2DArray uStats;
uniform int uMode;
uniform int uLayer;
uniform int uNS;
uniform int uBlock;
uniform ivec2 uInSize;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy) * uBlock;
  vec4 mean = vec4(0.0);
  if (uMode == 2 && uLayer < uNS) {
    float count = max(texelFetch(uStats, ivec3(0, 0, uNS), 0).x, 1.0);
    mean = texelFetch(uStats, ivec3(0, 0, uLayer), 0) / count;
  }
  vec4 acc = vec4(0.0);
  for (int dy = 0; dy < uBlock; dy++) {
    for (int dx = 0; dx < uBlock; dx++) {
      ivec2 q = p + ivec2(dx, dy);
      if (q.x >= uInSize.x || q.y >= uInSize.y) continue;
      if (uMode == 0) {
        acc += texelFetch(uIn, ivec3(q, uLayer), 0);
        continue;
      }
      float fire = texelFetch(uMask, ivec3(q, 0), 0).x != 0.0 ? 1.0 : 0.0;
      if (uLayer == uNS) {
        acc.x += fire;
      } else {
        vec4 c = texelFetch(uIn, ivec3(q, uLayer), 0);
        if (uMode == 2) c = (c - mean) * (c - mean);
        acc += fire * c;
      }
    }
  }
  o = acc;
}`;

/**
 * The new state of layer `uLayer`: s + m (n - s), with n the candidate
 * normalised by the firing cells' statistics (`uMean`, `uVar`: final sums,
 * lane 0 of layer `uNS` the count) when `uNorm` is 1, the candidate itself
 * when 0; eps 1e-5 and the biased variance, as ca-core's normalize_firing.
 */
export const NORMALIZE = `
uniform sampler2DArray uState;
uniform sampler2DArray uCand;
uniform sampler2DArray uMask;
uniform sampler2DArray uMean;
uniform sampler2DArray uVar;
uniform int uNorm;
uniform int uLayer;
uniform int uNS;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec4 s = texelFetch(uState, ivec3(p, uLayer), 0);
  vec4 c = texelFetch(uCand, ivec3(p, uLayer), 0);
  float m = texelFetch(uMask, ivec3(p, 0), 0).x;
  if (uNorm == 1) {
    float count = max(texelFetch(uMean, ivec3(0, 0, uNS), 0).x, 1.0);
    vec4 mean = texelFetch(uMean, ivec3(0, 0, uLayer), 0) / count;
    vec4 var = texelFetch(uVar, ivec3(0, 0, uLayer), 0) / count;
    c = (c - mean) * (1.0 / sqrt(var + 1e-5));
  }
  o = s + m * (c - s);
}`;

/** PCG's output permutation of a 32-bit word (a counter-based hash), and a
 * hash word as a uniform in (0, 1) from its top 24 bits. */
const HASH = `
uint pcg(uint x) {
  uint state = x * 747796405u + 2891336453u;
  uint word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
float unit(uint h) { return (float(h >> 8u) + 0.5) / 16777216.0; }
`;

/**
 * The browser's random draws, a counter-based hash of (seed, stream, cell,
 * lane) (PCG's output permutation, chained): with `uMask` 1 the update mask
 * (1 where a uniform in (0, 1) is below `uP`), else layer `uLayer` of
 * standard normals by Box-Muller (lanes past `uChannels` 0).
 */
export const DRAW = `
uniform uint uSeed;
uniform uint uStream;
uniform int uMask;
uniform int uLayer;
uniform int uChannels;
uniform float uP;
uniform ivec2 uSize;
${HASH}
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  uint cell = pcg(pcg(uSeed ^ pcg(uStream)) ^ uint(p.y * uSize.x + p.x));
  if (uMask == 1) {
    o = vec4(unit(pcg(cell ^ 0x9E3779B9u)) < uP ? 1.0 : 0.0, 0.0, 0.0, 0.0);
    return;
  }
  vec4 z = vec4(0.0);
  for (int j = 0; j < 4; j++) {
    int c = uLayer * 4 + j;
    if (c >= uChannels) break;
    uint h = pcg(cell ^ uint(2 * c + 1));
    float u1 = unit(h);
    float u2 = unit(pcg(h ^ 0x85EBCA6Bu));
    z[j] = sqrt(-2.0 * log(u1)) * cos(6.28318530718 * u2);
  }
  o = z;
}`;

/** Layer `uLayer` of `uIn` read every `uFactor`-th cell (the coarse state of
 * a full-shape state made of blocks). */
export const SUBSAMPLE = `
uniform sampler2DArray uIn;
uniform int uLayer;
uniform int uFactor;
void main() { o = texelFetch(uIn, ivec3(ivec2(gl_FragCoord.xy) * uFactor, uLayer), 0); }`;

/** Layer `uLayer` of the coarse `uIn` upsampled by `uFactor` (nearest). */
export const UPSAMPLE = `
uniform sampler2DArray uIn;
uniform int uLayer;
uniform int uFactor;
void main() { o = texelFetch(uIn, ivec3(ivec2(gl_FragCoord.xy) / uFactor, uLayer), 0); }`;

/** Layer `uLayer` of the state, with the cells of the disc (`uCentre`,
 * radius `uRadius`, in cells) replaced by fresh normals from the hash of
 * `uSeed` (as the server's damage: the disc restarts from noise). */
export const DAMAGE = `
uniform sampler2DArray uIn;
uniform int uLayer;
uniform int uChannels;
uniform uint uSeed;
uniform float uCx;
uniform float uCy;
uniform float uRadius;
uniform ivec2 uSize;
${HASH}
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec4 s = texelFetch(uIn, ivec3(p, uLayer), 0);
  vec2 d = vec2(p) + 0.5 - vec2(uCx, uCy);
  if (dot(d, d) > uRadius * uRadius) { o = s; return; }
  uint cell = pcg(pcg(uSeed) ^ uint(p.y * uSize.x + p.x));
  for (int j = 0; j < 4; j++) {
    int c = uLayer * 4 + j;
    if (c >= uChannels) { s[j] = 0.0; continue; }
    uint h = pcg(cell ^ uint(2 * c + 1));
    s[j] = sqrt(-2.0 * log(unit(h))) * cos(6.28318530718 * unit(pcg(h ^ 0x85EBCA6Bu)));
  }
  o = s;
}`;
