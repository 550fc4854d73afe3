import assert from "node:assert/strict";
import { test } from "node:test";
import { KEY_FIELDS, decodeKey, encodeKey, maskId, packMask, slotKeys } from "../src/map_key.js";

test("encodeKey writes the fields in order, compactly, and decodeKey reads them back", () => {
  const key = { image: 2, method: "gradcam++", layer: "features.12", target: 281, mask: "", smoothing: "none", extra_layers: [] };
  const text = encodeKey(key);
  assert.equal(text, '[2,"gradcam++","features.12",281,"","none",[]]');
  assert.deepEqual(decodeKey(text), key);
  assert.deepEqual(KEY_FIELDS, ["image", "method", "layer", "target", "mask", "smoothing", "extra_layers"]);
  // mask, smoothing and extra_layers default as MapKey's fields do
  assert.equal(encodeKey({ image: 2, method: "gradcam++", layer: "features.12", target: 281 }), text);
  const fused = { ...key, smoothing: "aug", extra_layers: ["features.9", "features.7"] };
  assert.equal(encodeKey(fused), '[2,"gradcam++","features.12",281,"","aug",["features.9","features.7"]]');
  assert.deepEqual(decodeKey(encodeKey(fused)), fused);
  assert.throws(() => decodeKey("[1,2]"), /not an encoded map key/);
});

test("slotKeys: one slot, a second method, a second class, unknown classes", () => {
  const sel = { image_index: 0, method: "hirescam", layer: "l4", class_index: 5, compare: "off", compare_method: "scorecam", compare_class: 7 };
  const tail = ',"none",[]]';
  assert.deepEqual(slotKeys(sel), [`[0,"hirescam","l4",5,""${tail}`]);
  assert.deepEqual(slotKeys({ ...sel, compare: "method" }), [`[0,"hirescam","l4",5,""${tail}`, `[0,"scorecam","l4",5,""${tail}`]);
  assert.deepEqual(slotKeys({ ...sel, compare: "class" }), [`[0,"hirescam","l4",5,""${tail}`, `[0,"hirescam","l4",7,""${tail}`]);
  assert.deepEqual(slotKeys({ ...sel, class_index: -1, compare: "method" }), [null, null]);
  assert.deepEqual(slotKeys({ ...sel, mask: "blur:0011223344556677" }), [`[0,"hirescam","l4",5,"blur:0011223344556677"${tail}`]);
});

test("slotKeys: smoothing and further layers reach both slots; each further layer once, never the chosen one", () => {
  const sel = { image_index: 0, method: "hirescam", layer: "l4", class_index: 5, compare: "method", compare_method: "gradcam", compare_class: 7 };
  const both = slotKeys({ ...sel, smoothing: "eigen", extra_layers: ["l3", "l4", "l3", "l2"] });
  assert.deepEqual(both, ['[0,"hirescam","l4",5,"","eigen",["l3","l2"]]', '[0,"gradcam","l4",5,"","eigen",["l3","l2"]]']);
  assert.notEqual(slotKeys({ ...sel, smoothing: "aug" })[0], slotKeys(sel)[0]);
});

test("packMask packs most significant bit first, maskId names painted masks only", () => {
  const mask = new Uint8Array(10);
  mask[0] = mask[9] = 1;
  assert.deepEqual(Array.from(packMask(mask)), [0x80, 0x40]);
  assert.equal(maskId(packMask(new Uint8Array(10)), "blur"), "");
  const id = maskId(packMask(mask), "blur");
  assert.match(id, /^blur:[0-9a-f]{16}$/);
  assert.notEqual(maskId(packMask(mask), "black"), id);
});
