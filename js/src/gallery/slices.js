// The slices where the model fails: one row each, the mean map over a member, accuracy against the rest
// of the class, what the members share. A click shows the slice's images.
import { h } from "../dom.js";
import { paintThumb } from "./draw.js";
import { percent } from "./format.js";

function bar(value, kind) {
  const inner = h("span", {});
  inner.style.width = `${Math.round(100 * Math.max(0, Math.min(1, value || 0)))}%`;
  return h("span", { class: `cw-audit-bar cw-audit-bar-${kind}` }, inner);
}

export const slices = {
  traits: ["slice_list", "colormap"],
  render(model, ctx) {
    const list = model.get("slice_list") || [];
    const box = h("section", { class: "cw-audit-slices", "aria-label": "Slices" });
    if (!list.length) {
      box.append(h("div", { class: "cw-audit-muted" }, "No slice: no coherent group of a class's images does worse than the rest of its class."));
      return box;
    }
    box.append(h("div", { class: "cw-audit-heading" }, "Slices where the model fails, worst first (found without group labels; click one for its images)"));
    const view = { showMaps: true, colormap: model.get("colormap"), opacity: 0.75, showBoxes: false, regions: [], showRegions: false };
    for (const s of list) {
      const canvas = h("canvas", { class: "cw-audit-slice-canvas", width: 1, height: 1, role: "img", "aria-label": `mean map of slice ${s.id}` });
      paintThumb(canvas, { thumb: s.thumb, map: s.map, map_h: s.h, map_w: s.w }, view, 56);
      box.append(
        h(
          "button",
          {
            type: "button",
            class: "cw-audit-slice",
            dataset: { slice: String(s.id) },
            title: `the mean map of its ${s.size} images, over #${s.index}`,
            onclick: () => ctx.setMany({ filters: [{ column: "slice", op: "==", value: String(s.id) }], sort_by: "probability", descending: true, page: 0 }),
          },
          canvas,
          h(
            "span",
            { class: "cw-audit-slice-text" },
            h("b", {}, `#${s.id} ${s.label_name} · ${s.size} images`),
            h("span", { class: "cw-audit-slice-acc" }, "accuracy ", bar(s.accuracy, "slice"), ` ${percent(s.accuracy)} vs `, bar(s.baseline, "base"), ` ${percent(s.baseline)} for the rest of the class`),
            h("span", { class: "cw-audit-muted" }, s.description),
          ),
        ),
      );
    }
    return box;
  },
};
