import assert from "node:assert/strict";
import { test } from "node:test";
import { StaticModel } from "../src/static_model.js";

const A = '[0,"hirescam","l4",5,"","none",[]]';
const B = '[0,"hirescam","l4",7,"","none",[]]';
const saved = () => ({
  state: {
    image_index: 0, method: "hirescam", layer: "l4", class_index: 5, compare: "off", compare_method: "scorecam", compare_class: 7,
    methods: [{ name: "hirescam", label: "HiResCAM" }, { name: "scorecam", label: "Score-CAM" }],
    class_names: ["a", "b", "c", "d", "e", "five", "f", "seven"],
    maps: [{ key: A }], curves: [{ key: A }], status: "ready", message: "",
  },
  images: [{ image: { index: 0 }, top_classes: [{ index: 5 }, { index: 7 }] }, { image: { index: 1 }, top_classes: [{ index: 7 }] }],
  maps: { [A]: { key: A, seconds: 0.02, precision: "fp32" }, [B]: { key: B, seconds: 1.5, precision: "bf16" } },
  curves: { [A]: { key: A, fractions: [0, 1] } },
});

test("a saved map is shown when selected, with its timing and precision", () => {
  const model = new StaticModel(saved());
  const seen = [];
  model.on("change:maps", () => seen.push(model.get("maps")[0].key));
  model.set("class_index", 7);
  assert.deepEqual(seen, [B]);
  assert.equal(model.get("message"), "HiResCAM in 1.5 s · bf16");
  assert.deepEqual(model.get("curves"), [{}]);
  assert.equal(model.get("curves_status"), "Not in this export.");
});

test("a map that was not saved is named; the last one stays on screen", () => {
  const model = new StaticModel(saved());
  model.set("method", "scorecam");
  assert.equal(model.get("message"), "Not in this export: Score-CAM · l4 · five");
  assert.equal(model.get("maps")[0].key, A);
  model.set("compare", "class");
  model.set("method", "hirescam");
  assert.deepEqual(model.get("maps").map((m) => m.key), [A, B]);
});

test("another image brings its image, predictions and top class; messages to the kernel are kept", () => {
  const model = new StaticModel(saved());
  model.set("image_index", 1);
  assert.equal(model.get("image").index, 1);
  assert.equal(model.get("class_index"), 7);
  model.send({ action: "cancel" });
  assert.deepEqual(model.sent, [{ action: "cancel" }]);
});
