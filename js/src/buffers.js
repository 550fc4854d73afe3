// Decoding of the binary traits the kernel sends (pure: no DOM).
//
// anywidget hands bytes traits to the front end as DataView; a saved/embedded widget state may
// carry ArrayBuffer, a typed array, or a base64 string instead. Everything becomes a Uint8Array.

function fromBase64(s) {
  if (typeof atob === "function") {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  return new Uint8Array(Buffer.from(s, "base64"));
}

/** Bytes of a binary trait value as a Uint8Array (empty for null/undefined). */
export function toBytes(value) {
  if (value == null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof DataView) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "string") return fromBase64(value);
  if (Array.isArray(value)) return Uint8Array.from(value);
  if (typeof value === "object" && value.buffer instanceof ArrayBuffer) return toBytes(value.buffer);
  throw new TypeError(`camwidget: cannot read binary data from a ${typeof value}`);
}

/** IEEE half -> float (the audit gallery's embedding scatter travels as float16 pairs). */
export function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function product(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Check that a buffer holds prod(shape) items of dtype ("uint8" or "uint16"); returns the item count.
 * Throws an Error naming the mismatch (the widget shows it instead of drawing garbage).
 */
export function checkSize(bytes, shape, dtype, what = "buffer") {
  const size = { uint8: 1, uint16: 2 }[dtype];
  if (!size) throw new Error(`camwidget: unknown dtype ${dtype} for ${what}`);
  const n = product(shape);
  if (bytes.length !== n * size) {
    throw new Error(
      `camwidget: ${what} has ${bytes.length} bytes, expected ${n * size} for shape ` +
        `[${shape.join(", ")}] of ${dtype}`,
    );
  }
  return n;
}

/**
 * A heatmap as uint8 levels 0..255 (what the colour LUTs index): the kernel sends nothing else, so
 * this checks the size and returns the bytes as a Uint8Array.
 */
export function decodeLevels(value, shape) {
  const bytes = toBytes(value);
  checkSize(bytes, shape, "uint8", "heatmap");
  return bytes;
}

/** Little-endian uint16 buffer -> Uint16Array (copied: the source may be unaligned). */
export function decodeUint16(value, n) {
  const bytes = toBytes(value);
  if (bytes.length !== n * 2) {
    throw new Error(`camwidget: expected ${n * 2} bytes of uint16, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint16(i * 2, true);
  return out;
}

/** RGB (H*W*3) -> RGBA ImageData-ready buffer. */
export function rgbToRgba(rgb, out) {
  const n = rgb.length / 3;
  const rgba = out || new Uint8ClampedArray(n * 4);
  for (let i = 0, j = 0, p = 0; i < n; i++, j += 4, p += 3) {
    rgba[j] = rgb[p];
    rgba[j + 1] = rgb[p + 1];
    rgba[j + 2] = rgb[p + 2];
    rgba[j + 3] = 255;
  }
  return rgba;
}

/**
 * The perturbed image of an insertion/deletion curve at step k.
 * order[i] is the step (1..n) from which pixel i is inserted (insertion) or removed (deletion).
 * Insertion at step k: pixels with order <= k come from the image, the others from `base` (RISE
 * starts insertion from a blurred copy) or, without a base, the substrate colour.
 * Deletion at step k: pixels with order <= k show the substrate colour, the rest the image.
 */
export function perturbedFrame(rgb, order, k, mode, substrate, out, base) {
  const n = order.length;
  const rgba = out || new Uint8ClampedArray(n * 4);
  const [sr, sg, sb] = substrate;
  const insertion = mode === "insertion";
  const useBase = insertion && base && base.length === rgb.length;
  for (let i = 0, j = 0, p = 0; i < n; i++, j += 4, p += 3) {
    const shown = insertion ? order[i] <= k : order[i] > k;
    if (shown) {
      rgba[j] = rgb[p];
      rgba[j + 1] = rgb[p + 1];
      rgba[j + 2] = rgb[p + 2];
    } else if (useBase) {
      rgba[j] = base[p];
      rgba[j + 1] = base[p + 1];
      rgba[j + 2] = base[p + 2];
    } else {
      rgba[j] = sr;
      rgba[j + 1] = sg;
      rgba[j + 2] = sb;
    }
    rgba[j + 3] = 255;
  }
  return rgba;
}
