// Reading safetensors files in the browser: an 8-byte little-endian header
// length, a JSON header (tensor name -> dtype, shape, byte offsets; and the
// `__metadata__` map of strings), then the tensors' bytes. Only F32 tensors
// are read (every tensor of a ca-core model is f32).

/** Bytes in the header length field. */
const LENGTH_BYTES = 8;

/** Largest header accepted (the safetensors format's own limit). */
const MAX_HEADER_BYTES = 100 * 1000 * 1000;

/**
 * Parses the safetensors bytes `buffer` (an ArrayBuffer) of the file `name`
 * (used in error messages only).
 *
 * Returns `{ tensors, metadata }`: `tensors` a Map from tensor name to
 * `{ shape, data }` (data a Float32Array copied out of the file, so any
 * alignment works), `metadata` the `__metadata__` object (empty if absent).
 *
 * Throws an Error naming the file and what is wrong: a file shorter than its
 * header, a header that is not JSON, a tensor that is not F32, whose byte
 * range lies outside the file or whose byte length disagrees with its shape.
 */
export function parseSafetensors(buffer, name) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < LENGTH_BYTES) {
    throw new Error(`${name}: ${bytes.length} bytes is too short for a safetensors file (truncated?)`);
  }
  const view = new DataView(buffer);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES) {
    throw new Error(`${name}: header length ${headerLength} is over the limit of ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`);
  }
  if (LENGTH_BYTES + headerLength > bytes.length) {
    throw new Error(`${name}: truncated header: it claims ${headerLength} bytes, the file has ${bytes.length - LENGTH_BYTES} after the length field`);
  }
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(LENGTH_BYTES, LENGTH_BYTES + headerLength)));
  } catch (e) {
    throw new Error(`${name}: the header is not JSON (${e.message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error(`${name}: the header is not a JSON object`);
  }
  const dataStart = LENGTH_BYTES + headerLength;
  const dataLength = bytes.length - dataStart;
  const metadata = header.__metadata__ ?? {};
  const tensors = new Map();
  for (const [tensor, info] of Object.entries(header)) {
    if (tensor === "__metadata__") continue;
    const { dtype, shape, data_offsets: offsets } = info ?? {};
    if (dtype !== "F32") {
      throw new Error(`${name}: tensor '${tensor}' is ${dtype}, only F32 is read`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`${name}: tensor '${tensor}' has no valid shape (${JSON.stringify(shape)})`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isInteger)) {
      throw new Error(`${name}: tensor '${tensor}' has no valid data_offsets (${JSON.stringify(offsets)})`);
    }
    const [begin, end] = offsets;
    if (begin < 0 || end < begin || end > dataLength) {
      throw new Error(`${name}: tensor '${tensor}' lies at bytes ${begin}..${end}, outside the ${dataLength} data bytes of the file (truncated?)`);
    }
    const elements = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== 4 * elements) {
      throw new Error(`${name}: tensor '${tensor}' has ${end - begin} bytes, its shape [${shape.join(", ")}] needs ${4 * elements}`);
    }
    const data = new Float32Array(elements);
    const source = new DataView(buffer, dataStart + begin, end - begin);
    for (let i = 0; i < elements; i++) data[i] = source.getFloat32(4 * i, true);
    tensors.set(tensor, { shape, data });
  }
  return { tensors, metadata };
}
