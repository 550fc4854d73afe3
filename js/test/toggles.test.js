import assert from "node:assert/strict";
import { test } from "node:test";
import { extraLayerChoice, smoothingOptions } from "../src/controls.js";

const METHODS = [
  { name: "hirescam", eigen: true, layers: true },
  { name: "eigencam", eigen: false, layers: true },
  { name: "fullgrad", eigen: false, layers: false },
];
const values = (options) => options.map((o) => o.value);

test("smoothingOptions: eigen only where every shown method takes it, aug not for pixel-tied choices", () => {
  assert.deepEqual(values(smoothingOptions(METHODS, ["hirescam"], { kind: "classes" })), ["none", "aug", "eigen"]);
  assert.deepEqual(values(smoothingOptions(METHODS, ["eigencam"], { kind: "classes" })), ["none", "aug"]);
  assert.deepEqual(values(smoothingOptions(METHODS, ["hirescam", "fullgrad"], {})), ["none", "aug"]);
  assert.deepEqual(values(smoothingOptions(METHODS, ["hirescam"], { kind: "segmentation" })), ["none", "eigen"]);
  assert.deepEqual(values(smoothingOptions(METHODS, ["hirescam"], { kind: "detections" })), ["none", "eigen"]);
});

test("extraLayerChoice: the catalog's layers less the chosen one; several further layers as one option", () => {
  const layers = [{ name: "l2", shape: [8, 4, 4] }, { name: "l3", shape: [16, 2, 2] }, { name: "l4", shape: [32, 1, 2] }];
  const none = extraLayerChoice(layers, "l4", []);
  assert.deepEqual(values(none.options), ["", "l2", "l3"]);
  assert.equal(none.value, "");
  assert.equal(none.options[1].label, "l2  ·  8×4×4");
  assert.equal(extraLayerChoice(layers, "l4", ["l3"]).value, "l3");
  assert.equal(extraLayerChoice(layers, "l4", ["l4"]).value, ""); // the chosen layer is not fused with itself
  const several = extraLayerChoice(layers, "l4", ["l2", "l3", "l2"]);
  assert.equal(several.value, "*");
  assert.deepEqual(several.options.at(-1), { value: "*", label: "l2 + l3" });
});
