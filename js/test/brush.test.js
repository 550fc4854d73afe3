import assert from "node:assert/strict";
import { test } from "node:test";
import { classShare, outlineRegion } from "../src/annotations.js";
import { countPainted, deltaText, paintDisc, paintRect, paintStroke, paintedView, unpackMask } from "../src/brush.js";
import { packMask } from "../src/map_key.js";

test("a disc, a stroke and a rectangle paint exactly their pixels, clipped to the image", () => {
  const w = 10;
  const h = 8;
  const disc = paintDisc(new Uint8Array(w * h), w, h, 0, 0, 1, 1);
  assert.deepEqual([disc[0], disc[1], disc[w], disc[w + 1]], [1, 1, 1, 0]); // (1, 1) is sqrt(2) away
  assert.equal(countPainted(disc), 3);
  const rect = paintRect(new Uint8Array(w * h), w, h, 8, 6, 12, 3, 1); // corners in any order, clipped
  assert.equal(countPainted(rect), 2 * 4);
  assert.equal(rect[3 * w + 8], 1);
  assert.equal(rect[7 * w + 9], 0);
  paintRect(rect, w, h, 9, 3, 9, 6, 0); // erasing restores
  assert.equal(countPainted(rect), 4);
  // a fast drag leaves no gap: every pixel on the line between the two points is painted
  const line = paintStroke(new Uint8Array(w * h), w, h, 0, 4, 9, 4, 0.6, 1);
  for (let x = 0; x < w; x++) assert.equal(line[4 * w + x], 1, `x=${x}`);
  assert.equal(countPainted(line), w);
});

test("packed bits round-trip (numpy.packbits order)", () => {
  const mask = new Uint8Array(13);
  mask[0] = mask[7] = mask[8] = mask[12] = 1;
  const bits = packMask(mask);
  assert.deepEqual(Array.from(bits), [0b10000001, 0b10001000]);
  assert.deepEqual(unpackMask(bits, 13), mask);
  assert.deepEqual(unpackMask(new Uint8Array(0), 13), new Uint8Array(13)); // nothing painted
});

test("what the model sees: painted pixels become the fill", () => {
  const rgb = Uint8Array.from([10, 20, 30, 40, 50, 60]);
  const base = Uint8Array.from([1, 2, 3, 4, 5, 6]);
  const mask = Uint8Array.from([0, 1]);
  assert.deepEqual(Array.from(paintedView(rgb, mask, "blur", [124, 116, 104], base)), [10, 20, 30, 4, 5, 6]);
  assert.deepEqual(Array.from(paintedView(rgb, mask, "black", [124, 116, 104], base)), [10, 20, 30, 0, 0, 0]);
  assert.deepEqual(Array.from(paintedView(rgb, mask, "zeros", [124, 116, 104], base)), [10, 20, 30, 124, 116, 104]);
  // before the blurred image arrives, blur shows the mean colour
  assert.deepEqual(Array.from(paintedView(rgb, mask, "blur", [124, 116, 104], null)), [10, 20, 30, 124, 116, 104]);
  assert.deepEqual(Array.from(rgb), [10, 20, 30, 40, 50, 60]); // the image itself is untouched
});

test("the delta reads like the issue asks", () => {
  assert.equal(deltaText({ name: "tiger cat", score: "probability", before: 0.3916, after: 0.0485 }), "p(tiger cat): 0.39 → 0.05");
  assert.equal(deltaText({ name: "label 2", score: "sigmoid", before: 0.5, after: null }), "σ(label 2): 0.50 → …");
  assert.equal(deltaText({ name: "my_score", score: "value", before: 1.25, after: -0.5 }), "my_score: 1.25 → -0.50");
  assert.equal(deltaText({}), "");
});

test("outlines draw a region's edge only; class shares count pixels", () => {
  const w = 5;
  const h = 5;
  const inside = (i) => {
    const x = i % w;
    const y = Math.floor(i / w);
    return x >= 1 && x <= 3 && y >= 1 && y <= 3;
  };
  const rgba = new Uint8ClampedArray(w * h * 4);
  assert.equal(outlineRegion(inside, w, h, rgba, [255, 0, 0]), 8); // a 3x3 square: 8 edge pixels
  assert.equal(rgba[(2 * w + 2) * 4], 0); // its centre stays
  assert.equal(rgba[(1 * w + 1) * 4], 255);
  assert.equal(classShare(Uint8Array.from([0, 2, 2, 1]), 2), 0.5);
});
