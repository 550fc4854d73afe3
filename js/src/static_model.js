// The kernel's stand-in in a page written by camwidget.export_html: anywidget's model interface (get, set,
// on, off, save_changes, send) over the saved traits, answering a change of selection from the maps and
// curves saved with them (pure: no DOM).
import { decodeKey, slotKeys } from "./map_key.js";

const SELECTION = new Set(["image_index", "method", "layer", "class_index", "compare", "compare_method", "compare_class", "smoothing", "extra_layers"]);

function seconds(s) {
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

export class StaticModel {
  /**
   * @param {object} saved { state: traits, images: [{ image, top_classes }], maps: { key: map },
   *   curves: { key: curves } } as written by camwidget.export_html (bytes as base64 strings).
   */
  constructor(saved) {
    this.saved = saved;
    this.state = { ...saved.state };
    this.handlers = new Map();
    this.sent = [];
  }

  get(key) {
    return this.state[key];
  }

  set(key, value) {
    if (this.state[key] === value) return;
    this.state[key] = value;
    this.emit(key);
    if (SELECTION.has(key)) this.follow(key);
  }

  save_changes() {}

  /** Messages for the kernel (cancel, retry, view open/closed): there is none; they are kept. */
  send(message) {
    this.sent.push(message);
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(fn);
  }

  off(event, fn) {
    const list = this.handlers.get(event) || [];
    this.handlers.set(event, fn ? list.filter((f) => f !== fn) : []);
  }

  emit(key) {
    for (const fn of this.handlers.get(`change:${key}`) || []) fn(this, this.state[key]);
  }

  update(values) {
    const changed = Object.keys(values).filter((k) => this.state[k] !== values[k]);
    for (const k of changed) this.state[k] = values[k];
    for (const k of changed) this.emit(k);
  }

  /** What the kernel would publish after a change of selection, from what was saved. */
  follow(changed) {
    const { images = [], maps = {}, curves = {} } = this.saved;
    if (changed === "image_index") {
      const saved = images[this.state.image_index];
      if (saved) {
        const top = saved.top_classes || [];
        this.update({ image: saved.image, top_classes: top, annotations: saved.annotations || {}, class_index: top.length ? top[0].index : -1 });
      }
    }
    const keys = slotKeys(this.state);
    const missing = keys.filter((k) => k && !maps[k]);
    const labels = Object.fromEntries((this.state.methods || []).map((m) => [m.name, m.label || m.name]));
    const names = this.state.class_names || [];
    let message = "";
    if (missing.length) {
      const what = missing.map((k) => {
        const key = decodeKey(k);
        const layers = [key.layer, ...(key.extra_layers || [])].join(" + ");
        const smoothed = key.smoothing && key.smoothing !== "none" ? ` · ${key.smoothing}-smoothed` : "";
        return `${labels[key.method] || key.method} · ${layers}${smoothed} · ${names[key.target] ?? key.target}`;
      });
      message = `Not in this export: ${what.join(" and ")}`;
    } else if (keys[0] && maps[keys[0]]) {
      const first = maps[keys[0]];
      message = `${labels[decodeKey(keys[0]).method]} in ${seconds(first.seconds || 0)} · ${first.precision || "fp32"}`;
    }
    const old = this.state.maps || [];
    this.update({
      maps: keys.map((k, i) => (k && maps[k]) || old[i] || {}),
      curves: keys.map((k) => (k && curves[k]) || {}),
      status: "ready",
      progress: 1,
      error: "",
      message,
      curves_status: keys[0] && curves[keys[0]] ? "" : "Not in this export.",
    });
  }
}
