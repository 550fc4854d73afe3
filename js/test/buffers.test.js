import assert from "node:assert/strict";
import { test } from "node:test";
import { checkSize, decodeLevels, decodeUint16, halfToFloat, perturbedFrame, rgbToRgba, toBytes } from "../src/buffers.js";

test("toBytes accepts DataView (with offset), ArrayBuffer, typed arrays, base64 and null", () => {
  const backing = new Uint8Array([9, 1, 2, 3, 9]);
  assert.deepEqual([...toBytes(new DataView(backing.buffer, 1, 3))], [1, 2, 3]);
  assert.deepEqual([...toBytes(new Uint8Array([4, 5]).buffer)], [4, 5]);
  assert.deepEqual([...toBytes(new Uint16Array([1]))], [1, 0]);
  assert.deepEqual([...toBytes("AQID")], [1, 2, 3]);
  assert.equal(toBytes(null).length, 0);
  assert.throws(() => toBytes(42), /cannot read binary data/);
});

test("halfToFloat decodes IEEE half precision (the gallery's scatter coordinates)", () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0x3800), 0.5);
  assert.equal(halfToFloat(0x0000), 0);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
});

test("decodeLevels returns uint8 levels as they are, after checking the size", () => {
  const u8 = new Uint8Array([0, 128, 255, 7]);
  assert.equal(decodeLevels(u8, [2, 2]), u8);
  assert.deepEqual([...decodeLevels(new DataView(u8.buffer, 1, 2), [1, 2])], [128, 255]);
});

test("size mismatches are reported with the expected shape", () => {
  assert.throws(() => decodeLevels(new Uint8Array(5), [2, 2]), /5 bytes, expected 4 for shape \[2, 2\] of uint8/);
  assert.throws(() => checkSize(new Uint8Array(4), [2], "float32"), /unknown dtype/);
  assert.throws(() => decodeUint16(new Uint8Array(3), 2), /expected 4 bytes/);
});

test("decodeUint16 reads little-endian values from unaligned views", () => {
  const raw = new Uint8Array([0, 1, 0, 0x34, 0x12]);
  assert.deepEqual([...decodeUint16(new DataView(raw.buffer, 1, 4), 2)], [1, 0x1234]);
});

test("rgbToRgba adds an opaque alpha channel", () => {
  assert.deepEqual([...rgbToRgba(new Uint8Array([1, 2, 3, 4, 5, 6]))], [1, 2, 3, 255, 4, 5, 6, 255]);
});

test("perturbedFrame inserts/deletes pixels in rank order", () => {
  const rgb = new Uint8Array([10, 10, 10, 20, 20, 20, 30, 30, 30]);
  const order = new Uint16Array([2, 1, 3]);
  const sub = [0, 0, 0];
  const px = (rgba) => [rgba[0], rgba[4], rgba[8]];
  assert.deepEqual(px(perturbedFrame(rgb, order, 0, "insertion", sub)), [0, 0, 0]);
  assert.deepEqual(px(perturbedFrame(rgb, order, 1, "insertion", sub)), [0, 20, 0]);
  assert.deepEqual(px(perturbedFrame(rgb, order, 3, "insertion", sub)), [10, 20, 30]);
  assert.deepEqual(px(perturbedFrame(rgb, order, 0, "deletion", sub)), [10, 20, 30]);
  assert.deepEqual(px(perturbedFrame(rgb, order, 2, "deletion", sub)), [0, 0, 30]);
  // insertion starts from a base image (RISE: blurred) when one is given
  const base = new Uint8Array([1, 1, 1, 2, 2, 2, 3, 3, 3]);
  assert.deepEqual(px(perturbedFrame(rgb, order, 1, "insertion", sub, undefined, base)), [1, 20, 3]);
  assert.deepEqual(px(perturbedFrame(rgb, order, 1, "deletion", sub, undefined, base)), [10, 0, 30]);
});
