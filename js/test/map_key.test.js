import assert from "node:assert/strict";
import { test } from "node:test";
import { KEY_FIELDS, decodeKey, encodeKey, maskId, packMask, slotKeys } from "../src/map_key.js";

test("encodeKey writes the fields in order, compactly, and decodeKey reads them back", () => {
  const key = { image: 2, method: "gradcam++", layer: "features.12", target: 281, mask: "" };
  const text = encodeKey(key);
  assert.equal(text, '[2,"gradcam++","features.12",281,""]');
  assert.deepEqual(decodeKey(text), key);
  assert.deepEqual(KEY_FIELDS, ["image", "method", "layer", "target", "mask"]);
  assert.throws(() => decodeKey("[1,2]"), /not an encoded map key/);
});

test("slotKeys: one slot, a second method, a second class, unknown classes", () => {
  const sel = { image_index: 0, method: "hirescam", layer: "l4", class_index: 5, compare: "off", compare_method: "scorecam", compare_class: 7 };
  assert.deepEqual(slotKeys(sel), ['[0,"hirescam","l4",5,""]']);
  assert.deepEqual(slotKeys({ ...sel, compare: "method" }), ['[0,"hirescam","l4",5,""]', '[0,"scorecam","l4",5,""]']);
  assert.deepEqual(slotKeys({ ...sel, compare: "class" }), ['[0,"hirescam","l4",5,""]', '[0,"hirescam","l4",7,""]']);
  assert.deepEqual(slotKeys({ ...sel, class_index: -1, compare: "method" }), [null, null]);
  assert.deepEqual(slotKeys({ ...sel, mask: "blur:0011223344556677" }), ['[0,"hirescam","l4",5,"blur:0011223344556677"]']);
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
