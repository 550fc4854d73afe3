// Mean map per class over a representative image of the class (regions outlined); a click filters.
import { h } from "../dom.js";
import { paintThumb } from "./draw.js";

export const classes = {
  traits: ["class_maps", "class_by", "regions", "colormap", "show_regions"],
  render(model, ctx) {
    const by = model.get("class_by");
    const wrap = h("section", { class: "cw-audit-classes", "aria-label": "Class mean maps" });
    const head = h("div", { class: "cw-audit-heading" }, `Mean map per ${by} class, over one typical image of it (click to filter)`);
    const toggle = h(
      "button",
      {
        type: "button",
        class: "cw-audit-link",
        onclick: () => ctx.setMany({ class_by: by === "label" ? "predicted" : "label" }),
      },
      by === "label" ? "by prediction" : "by label",
    );
    head.append(" · ", toggle);
    wrap.append(head);
    const row = h("div", { class: "cw-audit-class-row" });
    const view = {
      showMaps: true,
      colormap: model.get("colormap"),
      opacity: 0.75,
      showBoxes: false,
      regions: model.get("regions") || [],
      showRegions: model.get("show_regions"),
    };
    for (const c of model.get("class_maps") || []) {
      const canvas = h("canvas", { class: "cw-audit-class-canvas", width: 1, height: 1, role: "img", "aria-label": `mean map of ${c.name}` });
      paintThumb(canvas, { thumb: c.thumb, map: c.map, map_h: c.h, map_w: c.w }, view, 88);
      const column = by === "label" ? "label_name" : "predicted_name";
      row.append(
        h(
          "button",
          {
            type: "button",
            class: "cw-audit-class",
            title: `${c.name}: ${c.count} images; the map is their mean, drawn over image #${c.index}`,
            dataset: { cls: c.name },
            onclick: () => ctx.setMany({ filters: [{ column, op: "==", value: c.name }], page: 0 }),
          },
          canvas,
          h("span", { class: "cw-audit-caption" }, `${c.name} (${c.count})`),
        ),
      );
    }
    wrap.append(row);
    return wrap;
  },
};
