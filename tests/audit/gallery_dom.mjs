// Runs camwidget/audit/gallery.js against a tiny fake DOM and a fake anywidget model (no browser,
// no dependencies): render() must draw every part, and clicks must reach the model.
// Usage: node gallery_dom.mjs /path/to/gallery.js  (prints "ok" and exits 0 on success)
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";

class Node {
  constructor(tag) {
    this.tagName = tag;
    this.children = [];
    this.attrs = {};
    this.listeners = {};
    this.style = {};
    this.className = "";
    this.textContent = "";
    this.classList = { add: (c) => (this.className += ` ${c}`) };
  }
  append(...kids) {
    for (const k of kids) if (k !== "") this.children.push(typeof k === "string" ? { text: k } : k);
  }
  replaceChildren(...kids) {
    this.children = [];
    this.append(...kids);
  }
  setAttribute(k, v) {
    this.attrs[k] = v;
  }
  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }
  fire(type, event = {}) {
    for (const fn of this.listeners[type] || []) fn({ preventDefault() {}, ...event });
  }
  getContext() {
    const ops = (this.ops ||= []);
    const record = (name) => (...args) => ops.push([name, args]);
    return {
      drawImage: record("drawImage"),
      putImageData: record("putImageData"),
      strokeRect: record("strokeRect"),
      fillRect: record("fillRect"),
    };
  }
}

globalThis.document = { createElement: (tag) => new Node(tag) };
globalThis.ImageData = class {
  constructor(data, w, h) {
    assert.equal(data.length, w * h * 4);
    Object.assign(this, { data, width: w, height: h });
  }
};
globalThis.Image = class {
  set src(v) {
    this.naturalWidth = 32;
    this.naturalHeight = 32;
    this.onload?.();
  }
};

function walk(node, out = []) {
  out.push(node);
  for (const c of node.children || []) walk(c, out);
  return out;
}

const path = process.argv[2];
const mod = await import(pathToFileURL(path).href);
const { decodeLevels, jet, heatPixels, formatValue } = mod;

// pure helpers
assert.deepEqual([...decodeLevels(Buffer.from([0, 128, 255]).toString("base64"))], [0, 128, 255]);
assert.deepEqual(jet(0), [0, 0, 128]);
assert.deepEqual(jet(255), [128, 0, 0]);
assert.equal(heatPixels(new Uint8Array([0, 255]), 1)[7], 255);
assert.equal(formatValue(null), "–");
assert.equal(formatValue(0.12345), "0.123");
assert.equal(formatValue(true), "yes");

// a fake anywidget model
const state = {
  title: "Audit: 2 images",
  columns: [{ name: "index" }, { name: "probability" }],
  sort_by: "index",
  descending: false,
  filters: [{ column: "probability", op: "<", value: "0.5" }],
  page: 0,
  page_size: 48,
  total: 2,
  n_rows: 2,
  items: [
    { index: 0, thumb: "data:image/jpeg;base64,AAAA", map: Buffer.from([0, 255, 0, 255]).toString("base64"), map_h: 2, map_w: 2, box: [0, 0, 0.5, 0.5], caption: "#0 a 90%" },
    { index: 7, thumb: null, map: "", map_h: 0, map_w: 0, error: "OSError: broken", caption: "#7 unreadable" },
  ],
  class_by: "predicted",
  class_maps: [{ name: "a", count: 1, h: 2, w: 2, map: Buffer.from([0, 1, 2, 3]).toString("base64") }],
  shortcuts: [{ class_name: "a", region: "top_left", share: 0.6, others: 0.05, score: 0.55 }],
  opacity: 0.5,
  show_maps: true,
  show_boxes: true,
  thumb_px: 96,
  message: "",
};
const handlers = {};
const sent = [];
let saves = 0;
const model = {
  get: (k) => state[k],
  set: (k, v) => {
    state[k] = v;
  },
  save_changes: () => {
    saves += 1;
  },
  send: (msg) => sent.push(msg),
  on: (ev, fn) => (handlers[ev] ||= []).push(fn),
  off: (ev, fn) => (handlers[ev] = (handlers[ev] || []).filter((f) => f !== fn)),
};
const root = new Node("div");
const cleanup = mod.default.render({ model, el: root });
const nodes = walk(root);
const byClass = (c) => nodes.filter((n) => (n.className || "").split(" ").includes(c));

assert.equal(byClass("cw-audit-card").length, 2);
assert.equal(byClass("cw-audit-class").length, 1);
assert.equal(byClass("cw-audit-chip").length, 1);
assert.equal(byClass("cw-audit-shortcut").length, 1);
assert.ok(byClass("cw-audit-error").length === 1, "the unreadable image is marked");
const firstCanvas = byClass("cw-audit-canvas")[0];
assert.ok(firstCanvas.ops.some(([op]) => op === "strokeRect"), "object box drawn");
assert.ok(firstCanvas.ops.filter(([op]) => op === "drawImage").length >= 2, "image and heatmap drawn");

// clicking a card asks the kernel to open it
byClass("cw-audit-card")[1].fire("click");
assert.deepEqual(sent, [{ event: "open", index: 7 }]);
// the sort direction button toggles `descending`
const dir = nodes.find((n) => n.tagName === "button" && n.textContent.includes("asc"));
dir.fire("click");
assert.equal(state.descending, true);
// removing the filter chip clears the filter
byClass("cw-audit-chip-x")[0].fire("click");
assert.deepEqual(state.filters, []);
// clicking a class mean map filters on that class
byClass("cw-audit-class")[0].fire("click");
assert.deepEqual(state.filters, [{ column: "predicted_name", op: "==", value: "a" }]);
assert.ok(saves >= 3);
// a trait change redraws only its part
state.items = [state.items[0]];
for (const fn of handlers["change:items"]) fn();
assert.equal(walk(root).filter((n) => (n.className || "").includes("cw-audit-card")).length, 1);
cleanup();
assert.equal(handlers["change:items"].length, 0);
console.log("ok");
