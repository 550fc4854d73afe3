// Sort, filter (with removable chips) and view options (maps, regions, boxes, opacity, colormap).
import { COLORMAPS } from "../colormaps.js";
import { h } from "../dom.js";
import { filterText } from "./format.js";

export const OPS = ["<", "<=", ">", ">=", "==", "!=", "contains", "is missing", "not missing"];

function check(label, value, onChange, control) {
  const input = h("input", { type: "checkbox", dataset: { control }, onchange: () => onChange(input.checked) });
  input.checked = !!value;
  return h("label", { class: "cw-audit-check" }, input, ` ${label}`);
}

export const controls = {
  traits: ["columns", "sort_by", "descending", "filters", "show_maps", "show_regions", "show_boxes", "opacity", "colormap", "regions"],
  render(model, ctx) {
    const columns = (model.get("columns") || []).map((c) => c.name);
    const sort = h("select", { "aria-label": "sort by", dataset: { control: "sort" }, onchange: () => ctx.setMany({ sort_by: sort.value, page: 0 }) });
    for (const name of columns) sort.append(h("option", { value: name }, name));
    sort.value = model.get("sort_by");
    const dir = h(
      "button",
      { type: "button", class: "cw-audit-button", dataset: { control: "direction" }, title: "sort direction", onclick: () => ctx.setMany({ descending: !model.get("descending") }) },
      model.get("descending") ? "↓ desc" : "↑ asc",
    );
    const fcol = h("select", { "aria-label": "filter column", dataset: { control: "filter-column" } });
    for (const name of columns) fcol.append(h("option", { value: name }, name));
    const fop = h("select", { "aria-label": "filter operator", dataset: { control: "filter-op" } });
    for (const op of OPS) fop.append(h("option", { value: op }, op));
    const fval = h("input", { type: "text", placeholder: "value", size: "10", "aria-label": "filter value", dataset: { control: "filter-value" } });
    const add = h(
      "button",
      {
        type: "button",
        class: "cw-audit-button",
        dataset: { control: "filter-add" },
        onclick: () => ctx.setMany({ filters: [...(model.get("filters") || []), { column: fcol.value, op: fop.value, value: fval.value }], page: 0 }),
      },
      "+ filter",
    );
    fval.addEventListener("keydown", (e) => {
      if (e.key === "Enter") add.click();
    });
    const opacity = h("input", {
      type: "range",
      min: "0",
      max: "1",
      step: "0.05",
      "aria-label": "heatmap opacity",
      dataset: { control: "opacity" },
      oninput: () => ctx.setMany({ opacity: parseFloat(opacity.value) }),
    });
    opacity.value = String(model.get("opacity"));
    const cmap = h("select", { "aria-label": "colormap", dataset: { control: "colormap" }, onchange: () => ctx.setMany({ colormap: cmap.value }) });
    for (const name of COLORMAPS) cmap.append(h("option", { value: name }, name));
    cmap.value = model.get("colormap");
    const bar = h(
      "div",
      { class: "cw-audit-controls" },
      h("label", {}, "sort ", sort),
      dir,
      h("span", { class: "cw-audit-sep" }),
      h("label", {}, "filter ", fcol),
      fop,
      fval,
      add,
      h("span", { class: "cw-audit-sep" }),
      check("maps", model.get("show_maps"), (v) => ctx.setMany({ show_maps: v }), "maps"),
      (model.get("regions") || []).length ? check("regions", model.get("show_regions"), (v) => ctx.setMany({ show_regions: v }), "regions") : null,
      check("boxes", model.get("show_boxes"), (v) => ctx.setMany({ show_boxes: v }), "boxes"),
      h("label", {}, " opacity ", opacity),
      cmap,
    );
    const chips = h("div", { class: "cw-audit-chips" });
    (model.get("filters") || []).forEach((f, i) => {
      chips.append(
        h(
          "span",
          { class: "cw-audit-chip" },
          filterText(f),
          h(
            "button",
            {
              type: "button",
              class: "cw-audit-chip-x",
              title: "remove this filter",
              "aria-label": `remove filter ${filterText(f)}`,
              onclick: () => ctx.setMany({ filters: model.get("filters").filter((_, j) => j !== i), page: 0 }),
            },
            "×",
          ),
        ),
      );
    });
    return h("section", { class: "cw-audit-toolbar", "aria-label": "Sort and filter" }, bar, chips);
  },
};
