import assert from "node:assert/strict";
import { test } from "node:test";
import { searchClasses, stepIndex } from "../src/search.js";

const names = ["tench", "goldfish", "tabby cat", "tiger cat", "cat's eye", "Egyptian cat", "catamaran"];

test("search ranks exact > prefix > word start > substring, case-insensitively", () => {
  assert.deepEqual(searchClasses(names, "CAT"), [4, 6, 2, 3, 5]);
  assert.deepEqual(searchClasses(names, "gold"), [1]);
  assert.deepEqual(searchClasses(names, "  "), []);
  assert.deepEqual(searchClasses(names, "zebra"), []);
  assert.equal(searchClasses(names, "cat", 2).length, 2);
});

test("a number finds the class index", () => {
  assert.deepEqual(searchClasses(names, "#2"), [2]);
  assert.deepEqual(searchClasses(names, "99"), []);
});

test("stepIndex moves with arrows, clamps, and knows Home/End", () => {
  assert.equal(stepIndex("ArrowDown", 0, 3), 1);
  assert.equal(stepIndex("ArrowDown", 2, 3), 2);
  assert.equal(stepIndex("ArrowUp", 0, 3), 0);
  assert.equal(stepIndex("ArrowUp", -1, 3), 0);
  assert.equal(stepIndex("End", 0, 3), 2);
  assert.equal(stepIndex("Home", 2, 3), 0);
  assert.equal(stepIndex("x", 1, 3), 1);
  assert.equal(stepIndex("ArrowDown", 0, 0), -1);
});
