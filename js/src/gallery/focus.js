// The image opened last, side by side: the map of the predicted class and, for a mistake, the map of the
// true class, each with its error-understanding confidence path (the true class's probability as the
// pixels the map ranks first are kept), when the audit recorded them.
import { toBytes } from "../buffers.js";
import { h } from "../dom.js";
import { paintThumb } from "./draw.js";
import { percent } from "./format.js";
import { argmax, paintCurve } from "./plot.js";

function floats(value) {
  const bytes = toBytes(value);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

function panel(model, f, which, levels, path, color) {
  const view = { showMaps: true, colormap: model.get("colormap"), opacity: model.get("opacity"), showBoxes: false, regions: model.get("regions") || [], showRegions: model.get("show_regions") };
  const canvas = h("canvas", { class: "cw-audit-focus-canvas", width: 1, height: 1, role: "img", dataset: { map: which } });
  const cls = which === "true" ? f.label_name : f.predicted_name;
  canvas.setAttribute("aria-label", `map of the ${which} class ${cls}`);
  paintThumb(canvas, { thumb: f.thumb, map: levels, map_h: f.h, map_w: f.w }, view, 144);
  const fig = h("figure", { class: "cw-audit-focus-map" }, canvas, h("figcaption", {}, `map of the ${which === "true" ? "true" : "predicted"} class: ${cls}`));
  if (path.length && f.kept && f.kept.length === path.length) {
    const plot = h("canvas", { class: "cw-audit-path", width: 144, height: 54, role: "img", dataset: { path: which } });
    plot.setAttribute("aria-label", `probability of ${f.label_name} as the pixels this map ranks first are kept`);
    paintCurve(plot, f.kept, Array.from(path), { color });
    const [k, v] = argmax(path);
    fig.append(plot, h("figcaption", { class: "cw-audit-muted" }, `p(${f.label_name}) peaks at ${v.toFixed(2)} with ${percent(f.kept[k])} of the pixels`));
  }
  return fig;
}

export const focus = {
  traits: ["focus", "colormap", "opacity", "regions", "show_regions"],
  render(model) {
    const f = model.get("focus") || {};
    const box = h("section", { class: "cw-audit-focus", "aria-label": "The opened image" });
    if (f.index === undefined || f.index === null) return box;
    const wrong = f.label_name !== null && f.label_name !== f.predicted_name;
    box.append(
      h(
        "div",
        { class: "cw-audit-heading" },
        `#${f.index}: label ${f.label_name ?? "unknown"} → predicted ${f.predicted_name} (${percent(f.probability)})` +
          (wrong ? ": the map of each class, and how much of the true class each one finds" : ""),
      ),
    );
    const row = h("div", { class: "cw-audit-focus-row" });
    row.append(panel(model, f, "predicted", f.predicted_map, floats(f.predicted_path), "#e65100"));
    if (toBytes(f.true_map).length) row.append(panel(model, f, "true", f.true_map, floats(f.true_path), "#1976d2"));
    box.append(row);
    return box;
  },
};
