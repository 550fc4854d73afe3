import assert from "node:assert/strict";
import { test } from "node:test";
import { parseRgb } from "../src/theme.js";

test("parseRgb reads rgb(), rgba() and color(srgb ...) (marimo's computed colours)", () => {
  assert.deepEqual(parseRgb("rgb(17, 17, 17)"), { r: 17, g: 17, b: 17, a: 1 });
  assert.deepEqual(parseRgb("rgba(0, 0, 0, 0)"), { r: 0, g: 0, b: 0, a: 0 });
  const c = parseRgb("color(srgb 0.0941176 0.109804 0.101961)");
  assert.ok(Math.abs(c.r - 24) < 0.01 && Math.abs(c.g - 28) < 0.01 && c.a === 1);
  assert.equal(parseRgb("transparent"), null);
});
