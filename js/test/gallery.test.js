import assert from "node:assert/strict";
import { test } from "node:test";
import { getLut } from "../src/colormaps.js";
import { heatRgba, REGION_COLORS } from "../src/gallery/draw.js";
import { boxRect, filterText, formatValue, percent } from "../src/gallery/format.js";

test("formatValue rounds numbers, says yes/no, and shows missing values as a dash", () => {
  assert.equal(formatValue(0.123456), "0.12");
  assert.equal(formatValue(42), "42");
  assert.equal(formatValue(0.0001234), "1.2e-4");
  assert.equal(formatValue(true), "yes");
  assert.equal(formatValue(null), "–");
  assert.equal(formatValue(Number.NaN), "–");
  assert.equal(formatValue("h_stripes"), "h_stripes");
});

test("filter chips and percentages read as text", () => {
  assert.equal(filterText({ column: "probability", op: ">", value: "0.9" }), "probability > 0.9");
  assert.equal(filterText({ column: "error", op: "not missing", value: "" }), "error not missing");
  assert.equal(percent(0.224), "22%");
  assert.equal(percent(undefined), "–");
});

test("boxRect maps image fractions onto a canvas", () => {
  assert.deepEqual(boxRect([0, 0, 0.25, 0.25], 96, 96), [0, 0, 24, 24]);
  assert.deepEqual(boxRect([0.5, 0.25, 1, 0.75], 200, 100), [100, 25, 100, 50]);
});

test("heatRgba: the colormap's colour, alpha rising from a quarter of the opacity to all of it", () => {
  const lut = getLut("jet");
  const rgba = heatRgba(new Uint8Array([0, 255]), lut, 0.8);
  assert.deepEqual([...rgba.slice(0, 3)], [lut[0], lut[1], lut[2]]);
  assert.deepEqual([...rgba.slice(4, 7)], [lut[765], lut[766], lut[767]]);
  assert.equal(rgba[3], Math.round(255 * 0.8 * 0.25));
  assert.equal(rgba[7], Math.round(255 * 0.8));
  assert.equal(heatRgba(new Uint8Array([255]), lut, 7)[3], 255); // opacity clamped to 1
});

test("regions get distinct outline colours", () => {
  assert.equal(new Set(REGION_COLORS).size, REGION_COLORS.length);
});
