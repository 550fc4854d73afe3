// What a map is the map of: the front end's twin of camwidget/widget/map_key.py (pure: no DOM).
//
// The kernel publishes each map and curve with its key encoded as a compact JSON array of the key's
// fields in order; the front end encodes the key it wants from the selection traits the same way and
// compares strings. tests/widget/test_map_key.py runs this codec and the Python one on the same values.

/** The fields of a map key, in order (MapKey's dataclass fields). */
export const KEY_FIELDS = ["image", "method", "layer", "target"];

/** {image, method, layer, target} -> '[0,"hirescam","features.12",281]'. */
export function encodeKey(key) {
  return JSON.stringify(KEY_FIELDS.map((f) => key[f]));
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
 * class_index, compare, compare_method, compare_class): slot 0 always, slot 1 when comparing; null
 * while the class is unknown (-1). Mirrors Selection.keys().
 */
export function slotKeys(sel) {
  const key = (method, target) =>
    target >= 0 ? encodeKey({ image: sel.image_index, method, layer: sel.layer, target }) : null;
  const first = key(sel.method, sel.class_index);
  if (sel.compare === "method") return [first, sel.class_index >= 0 ? key(sel.compare_method, sel.class_index) : null];
  if (sel.compare === "class") return [first, key(sel.method, sel.compare_class)];
  return [first];
}
