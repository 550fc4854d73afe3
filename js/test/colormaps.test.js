import assert from "node:assert/strict";
import { test } from "node:test";
import { COLORMAPS, blend, colorize, cssGradient, getLut, lookup } from "../src/colormaps.js";

test("every colormap is a 256-entry RGB table", () => {
  for (const name of COLORMAPS) {
    const lut = getLut(name);
    assert.equal(lut.length, 256 * 3, name);
  }
});

test("viridis endpoints match matplotlib's", () => {
  assert.deepEqual(lookup("viridis", 0), [0x44, 0x01, 0x54]);
  assert.deepEqual(lookup("viridis", 1), [0xfd, 0xe7, 0x25]);
});

test("gray is the identity and jet runs blue -> red", () => {
  assert.deepEqual(lookup("gray", 0.5), [128, 128, 128]);
  const [r0, , b0] = lookup("jet", 0);
  const [r1, , b1] = lookup("jet", 1);
  assert.ok(b0 > 100 && r0 === 0, "jet starts blue");
  assert.ok(r1 > 100 && b1 === 0, "jet ends red");
});

test("inferno is dark at 0 and bright at 1", () => {
  const lum = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
  assert.ok(lum(lookup("inferno", 0)) < 10);
  assert.ok(lum(lookup("inferno", 1)) > 200);
});

test("unknown names and bad values fall back safely", () => {
  assert.deepEqual(getLut("nope"), getLut("viridis"));
  assert.deepEqual(lookup("gray", NaN), [0, 0, 0]);
  assert.deepEqual(lookup("gray", 7), [255, 255, 255]);
});

test("colorize maps levels through the LUT with opaque alpha", () => {
  const out = colorize(new Uint8Array([0, 255]), getLut("gray"));
  assert.deepEqual([...out], [0, 0, 0, 255, 255, 255, 255, 255]);
});

test("blend: opacity 0 keeps the image, 1 shows the colour, 0.5 mixes", () => {
  const rgb = new Uint8Array([200, 100, 50]);
  const lv = new Uint8Array([255]);
  const lut = getLut("gray");
  assert.deepEqual([...blend(rgb, lv, lut, 0)], [200, 100, 50, 255]);
  assert.deepEqual([...blend(rgb, lv, lut, 1)], [255, 255, 255, 255]);
  const mid = blend(rgb, lv, lut, 0.5);
  assert.ok(Math.abs(mid[0] - 227) <= 1 && Math.abs(mid[1] - 177) <= 1 && Math.abs(mid[2] - 152) <= 1);
});

test("cssGradient lists the requested stops", () => {
  const g = cssGradient("gray", 3);
  assert.match(g, /^linear-gradient\(to top, rgb\(0, 0, 0\) 0\.0%, rgb\(128, 128, 128\) 50\.0%, rgb\(255, 255, 255\) 100\.0%\)$/);
});
