// What a map is the map of: the front end's twin of camwidget/widget/map_key.py (pure: no DOM).
//
// The kernel publishes each map and curve with its key encoded as a compact JSON array of the key's
// fields in order; the front end encodes the key it wants from the selection traits the same way and
// compares strings. tests/widget/test_map_key.py runs this codec and the Python one on the same values.

/** The fields of a map key, in order (MapKey's dataclass fields). */
export const KEY_FIELDS = ["image", "method", "layer", "target", "mask", "smoothing", "extra_layers"];

/** What a field is when the key leaves it out (MapKey's defaults). */
const DEFAULTS = { mask: () => "", smoothing: () => "none", extra_layers: () => [] };

/**
 * {image, method, layer, target, mask, smoothing, extra_layers} ->
 * '[0,"hirescam","features.12",281,"","none",[]]' (mask, smoothing and extra_layers may be left out).
 */
export function encodeKey(key) {
  return JSON.stringify(KEY_FIELDS.map((f) => (f in DEFAULTS && key[f] == null ? DEFAULTS[f]() : key[f])));
}

/** The inverse of encodeKey (throws on anything else). */
export function decodeKey(text) {
  const values = JSON.parse(text);
  if (!Array.isArray(values) || values.length !== KEY_FIELDS.length) {
    throw new Error(`camwidget: not an encoded map key: ${text}`);
  }
  return Object.fromEntries(KEY_FIELDS.map((f, i) => [f, values[i]]));
}

/**
 * The encoded key each slot shows for a selection (the selection traits: image_index, method, layer,
 * class_index, compare, compare_method, compare_class, smoothing, extra_layers, and `mask`, the what-if
 * mask's id from maskId): slot 0 always, slot 1 when comparing; null while the class is unknown (-1).
 * Mirrors Selection.keys().
 */
export function slotKeys(sel) {
  // each further layer once, and not the chosen layer itself (Selection.keys() does the same)
  const extra = [...new Set(sel.extra_layers || [])].filter((name) => name !== sel.layer);
  const key = (method, target) =>
    target >= 0
      ? encodeKey({
          image: sel.image_index,
          method,
          layer: sel.layer,
          target,
          mask: sel.mask || "",
          smoothing: sel.smoothing || "none",
          extra_layers: extra,
        })
      : null;
  const first = key(sel.method, sel.class_index);
  if (sel.compare === "method") return [first, key(sel.compare_method, sel.class_index)];
  if (sel.compare === "class") return [first, key(sel.method, sel.compare_class)];
  return [first];
}

let CRC_TABLE = null;
function crc32(bytes) {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function adler32(bytes) {
  let a = 1;
  let b = 0;
  for (let i = 0; i < bytes.length; i++) {
    a = (a + bytes[i]) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

const hex8 = (v) => v.toString(16).padStart(8, "0");

/**
 * The name of a what-if mask (mask_id in map_key.py): "<fill>:<crc32><adler32>" of its packed bits
 * (packMask), "" when no pixel is painted.
 */
export function maskId(bits, fill) {
  if (!bits || !bits.some((b) => b !== 0)) return "";
  return `${fill}:${hex8(crc32(bits))}${hex8(adler32(bits))}`;
}

/** A (H*W) 0/1 mask -> its bits, row-major, most significant bit first (numpy.packbits). */
export function packMask(mask) {
  const out = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) out[i >> 3] |= 0x80 >> (i & 7);
  return out;
}
