import assert from "node:assert/strict";
import { test } from "node:test";
import { cellColor, cellQuery } from "../src/gallery/confusion.js";
import { argmax, curvePoints } from "../src/gallery/plot.js";
import { bit, buildGrid, classColor, CLASS_COLORS, decodeU16, decodeXY, nearest, pointInPolygon, polygonArea } from "../src/gallery/scatter_math.js";

// float16 bit patterns: 0.25 = 0x3400, 0.5 = 0x3800, 0.75 = 0x3a00, 1 = 0x3c00, NaN = 0x7e00
function halves(values) {
  const view = new DataView(new ArrayBuffer(2 * values.length));
  values.forEach((v, i) => view.setUint16(2 * i, v, true));
  return view;
}

test("decodeXY reads little-endian float16 pairs, NaN kept; a wrong length is an error", () => {
  const xy = decodeXY(halves([0x3400, 0x3800, 0x3a00, 0x3c00, 0x7e00, 0x3400]), 3);
  assert.deepEqual(Array.from(xy.slice(0, 4)), [0.25, 0.5, 0.75, 1]);
  assert.ok(Number.isNaN(xy[4]));
  assert.throws(() => decodeXY(halves([0x3400]), 3), /scatter has 2 bytes, expected 12/);
  assert.deepEqual(Array.from(decodeU16(halves([7, 65535]), 2)), [7, 65535]);
});

test("bit reads numpy's packbits(bitorder='little'); no mask keeps everything", () => {
  const mask = new Uint8Array([0b00000101, 0b10000000]);
  assert.deepEqual([0, 1, 2, 3, 15].map((i) => bit(mask, i)), [true, false, true, false, true]);
  assert.equal(bit(new Uint8Array(0), 3), true);
});

test("nearest finds the closest point within the radius, on screen distances, or none", () => {
  const xy = new Float32Array([0.1, 0.1, 0.5, 0.5, 0.52, 0.5, NaN, NaN, 0.9, 0.2]);
  const grid = buildGrid(xy, 5, 16);
  assert.equal(nearest(grid, xy, 0.49, 0.5, 0.05), 1);
  assert.equal(nearest(grid, xy, 0.515, 0.5, 0.05), 2);
  assert.equal(nearest(grid, xy, 0.3, 0.3, 0.05), -1);
  assert.equal(nearest(grid, xy, 0.9, 0.25, 0.02, 500, 100), 4); // 0.05 of y is only 5 px tall
  assert.equal(nearest(grid, xy, 0.9, 0.25, 0.02, 100, 500), -1);
});

test("pointInPolygon (even-odd) and polygonArea", () => {
  const notch = [[0, 0], [1, 0], [1, 1], [0.5, 0.5], [0, 1]];
  assert.deepEqual([[0.5, 0.3], [0.5, 0.8], [0.1, 0.5], [0.9, 0.95]].map(([x, y]) => pointInPolygon(x, y, notch)), [true, false, true, false]);
  assert.equal(polygonArea([[0, 0], [2, 0], [2, 3], [0, 3]]), 6);
  assert.equal(polygonArea(notch), 0.75);
});

test("class colours cycle", () => {
  assert.equal(classColor(0), CLASS_COLORS[0]);
  assert.equal(classColor(CLASS_COLORS.length + 2), CLASS_COLORS[2]);
});

test("confusion cells: a click shows the pair's images, most confident first; colours by share", () => {
  assert.deepEqual(cellQuery("cat", "dog"), {
    filters: [
      { column: "label_name", op: "==", value: "cat" },
      { column: "predicted_name", op: "==", value: "dog" },
    ],
    sort_by: "probability",
    descending: true,
    page: 0,
  });
  assert.equal(cellColor(5, 10, true), "rgba(25, 118, 210, 0.50)");
  assert.equal(cellColor(3, 10, false), "rgba(230, 81, 0, 0.60)");
  assert.equal(cellColor(9, 10, false), "rgba(230, 81, 0, 1.00)");
  assert.equal(cellColor(0, 0, false), "rgba(230, 81, 0, 0.00)");
});

test("confidence paths: points in the box, the maximum found", () => {
  const pts = curvePoints([0, 0.5, 1], [0, 1, 0.5], 108, 58, 4);
  assert.deepEqual(pts, [[4, 54], [54, 4], [104, 29]]);
  assert.deepEqual(argmax([0.1, 0.7, 0.7, 0.2]), [1, 0.7]);
  assert.deepEqual(argmax([]), [-1, NaN]);
});
