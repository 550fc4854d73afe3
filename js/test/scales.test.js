import assert from "node:assert/strict";
import { test } from "node:test";
import { areaPath, linePath, linearScale, nearestIndex, scoreDomain, ticks, trapezoid } from "../src/scales.js";

test("linearScale maps and inverts, including flipped ranges", () => {
  const s = linearScale([0, 1], [40, 340]);
  assert.equal(s(0), 40);
  assert.equal(s(0.5), 190);
  assert.equal(s.invert(340), 1);
  const y = linearScale([0, 1], [150, 10]);
  assert.equal(y(1), 10);
  assert.equal(y.invert(80), 0.5);
  assert.equal(linearScale([2, 2], [0, 10])(2), 5);
});

test("scoreDomain is [0, 1] unless the data leave it", () => {
  assert.deepEqual(scoreDomain([0.1, 0.9]), [0, 1]);
  assert.deepEqual(scoreDomain([0.1, 1.5], [-0.2, NaN]), [-0.2, 1.5]);
  assert.deepEqual(scoreDomain(undefined), [0, 1]);
});

test("linePath/areaPath draw through finite points only", () => {
  const id = linearScale([0, 1], [0, 1]);
  assert.equal(linePath([0, 0.5, 1], [0, 1, 0], id, id), "M0.00,0.00 L0.50,1.00 L1.00,0.00");
  assert.equal(linePath([0, 0.5, 1], [0, NaN, 1], id, id), "M0.00,0.00 M1.00,1.00");
  assert.match(areaPath([0, 1], [1, 1], id, id, 0), /Z$/);
  assert.equal(areaPath([], [], id, id), "");
});

test("nearestIndex finds the closest sample", () => {
  const xs = [0, 0.25, 0.5, 0.75, 1];
  assert.equal(nearestIndex(xs, 0.3), 1);
  assert.equal(nearestIndex(xs, 0.4), 2);
  assert.equal(nearestIndex(xs, -5), 0);
  assert.equal(nearestIndex(xs, 5), 4);
  assert.equal(nearestIndex([], 0.5), -1);
});

test("trapezoid integrates", () => {
  assert.equal(trapezoid([0, 1], [1, 1]), 1);
  assert.equal(trapezoid([0, 0.5, 1], [0, 1, 0]), 0.5);
});

test("ticks are round numbers covering the domain", () => {
  assert.deepEqual(ticks(0, 1, 4), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(ticks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(ticks(0, 1.3, 4), [0, 0.5, 1]);
  assert.deepEqual(ticks(0, 1, 2), [0, 0.5, 1]);
  assert.deepEqual(ticks(1, 1), [1]);
});
