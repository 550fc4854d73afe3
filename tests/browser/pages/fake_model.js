// A stand-in for anywidget's model (get/set/on/off/save_changes/send) with synthetic CamExplorer
// state, so the front-end module can be rendered in a plain page without a kernel.

export class FakeModel {
  constructor(state) {
    this.state = { ...state };
    this.handlers = new Map();
    this.saves = 0;
    this.sent = [];
    this.log = [];
  }
  get(key) {
    return this.state[key];
  }
  set(key, value) {
    const old = this.state[key];
    this.state[key] = value;
    this.log.push([key, value]);
    if (old !== value) this.emit(`change:${key}`, value);
  }
  /** What the kernel does: set several traits, then fire their change events. */
  update(values) {
    for (const [k, v] of Object.entries(values)) this.state[k] = v;
    for (const k of Object.keys(values)) this.emit(`change:${k}`, values[k]);
  }
  emit(event, value) {
    for (const fn of this.handlers.get(event) || []) fn(this, value);
  }
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(fn);
  }
  off(event, fn) {
    const list = this.handlers.get(event) || [];
    this.handlers.set(event, fn ? list.filter((f) => f !== fn) : []);
  }
  save_changes() {
    this.saves += 1;
  }
  send(msg) {
    this.sent.push(msg);
  }
  /** What the kernel does with widget.send(content, buffers): a custom message to the front end. */
  custom(msg, buffers = []) {
    for (const fn of this.handlers.get("msg:custom") || []) fn(msg, buffers);
  }
}

function blob(h, w, cx, cy, sigma) {
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const d = ((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma * sigma);
      out[y * w + x] = Math.round(255 * Math.exp(-d));
    }
  }
  return out;
}

function image(h, w) {
  const rgb = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inCircle = (x - w * 0.62) ** 2 + (y - h * 0.45) ** 2 < (h * 0.22) ** 2;
      rgb[i] = inCircle ? 220 : 90 + (x * 80) / w;
      rgb[i + 1] = inCircle ? 140 : 120 + (y * 60) / h;
      rgb[i + 2] = inCircle ? 60 : 170;
    }
  }
  return rgb;
}

function stepOrder(levels, nSteps) {
  const idx = Array.from(levels.keys()).sort((a, b) => levels[b] - levels[a] || a - b);
  const per = Math.ceil(levels.length / nSteps);
  const order = new Uint16Array(levels.length);
  idx.forEach((p, r) => (order[p] = Math.min(nSteps, Math.floor(r / per) + 1)));
  return new DataView(order.buffer);
}

function curves(n, a, b) {
  const fractions = [];
  const insertion = [];
  const deletion = [];
  for (let i = 0; i <= n; i++) {
    const f = i / n;
    fractions.push(f);
    insertion.push(0.05 + 0.9 * (1 - Math.exp(-f * a)));
    deletion.push(0.92 * Math.exp(-f * b) + 0.03);
  }
  const auc = (ys) => ys.slice(1).reduce((s, y, i) => s + (y + ys[i]) / 2 / n, 0);
  return { fractions, insertion, deletion, insertion_auc: auc(insertion), deletion_auc: auc(deletion), n_steps: n };
}

const names = ["tench", "goldfish", "great white shark", "tiger shark", "tabby cat", "tiger cat", "Persian cat", "Egyptian cat", "lynx", "catamaran"];

export function fakeState(h = 96, w = 128) {
  const a = blob(h, w, w * 0.62, h * 0.45, h * 0.18);
  const b = blob(h, w, w * 0.3, h * 0.7, h * 0.25);
  const view = (arr) => new DataView(arr.buffer, arr.byteOffset, arr.byteLength);
  const thumbs = new Uint8Array(3 * 32 * 32 * 3).map((_, i) => (i * 7) % 255);
  return {
    image_index: 0,
    method: "hirescam",
    layer: "layer4",
    class_index: 4,
    opacity: 0.5,
    colormap: "viridis",
    compare: "off",
    compare_method: "scorecam",
    compare_class: 5,
    methods: [
      { name: "hirescam", label: "HiResCAM", fast: true },
      { name: "gradcam", label: "Grad-CAM", fast: true },
      { name: "scorecam", label: "Score-CAM", fast: false },
    ],
    layers: [
      { name: "layer3", shape: [256, 14, 14], aliases: [] },
      { name: "layer4", shape: [512, 7, 7], aliases: ["layer4.1"] },
    ],
    top_classes: [
      { index: 4, name: "tabby cat", prob: 0.62 },
      { index: 5, name: "tiger cat", prob: 0.21 },
      { index: 7, name: "Egyptian cat", prob: 0.09 },
    ],
    class_names: names,
    thumbnails: { count: 3, size: 32, rgb: view(thumbs) },
    about: { model: "FakeNet", device: "cpu" },
    image: { index: 0, shape: [h, w], rgb: view(image(h, w)), base: null, substrate: [124, 116, 104] },
    maps: [
      { key: '[0,"hirescam","layer4",4,"","none",[]]', levels: view(a), class_name: "tabby cat", class_prob: 0.62, seconds: 0.012, precision: "fp32" },
      { key: '[0,"hirescam","layer4",5,"","none",[]]', levels: view(b), class_name: "tiger cat", class_prob: 0.21, seconds: 0.011, precision: "fp32" },
    ],
    curves: [
      { key: '[0,"hirescam","layer4",4,"","none",[]]', order: stepOrder(a, 32), ...curves(32, 6, 9) },
      { key: '[0,"hirescam","layer4",5,"","none",[]]', order: stepOrder(b, 32), ...curves(32, 3, 4) },
    ],
    curves_status: "",
    status: "ready",
    progress: 1,
    message: "HiResCAM in 12 ms · fp32",
    error: "",
  };
}
