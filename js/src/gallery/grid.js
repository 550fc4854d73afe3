// One page of thumbnails: image + heatmap + outlines, caption "#i label → prediction", the sorted value.
import { h } from "../dom.js";
import { paintThumb } from "./draw.js";

function card(item, model, ctx, size, view) {
  const classes = ["cw-audit-card"];
  if (item.error) classes.push("cw-audit-error");
  else if (item.correct === false) classes.push("cw-audit-wrong");
  if (model.get("selected") === item.index) classes.push("cw-audit-selected");
  const canvas = h("canvas", { class: "cw-audit-canvas", width: size, height: size, role: "img", "aria-label": item.caption || `image ${item.index}` });
  // two models compared: the second model's map beside the first's, over the same image
  const second = item.map_b
    ? h("canvas", { class: "cw-audit-canvas cw-audit-canvas-b", width: size, height: size, role: "img", "aria-label": `second model's map of image ${item.index}` })
    : null;
  const open = () => ctx.send({ event: "open", index: item.index });
  const el = h(
    "div",
    {
      class: classes.join(" "),
      title: item.title || "",
      tabindex: "0",
      role: "button",
      dataset: { index: String(item.index) },
      onclick: open,
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          open();
        }
      },
    },
    second ? h("div", { class: "cw-audit-pair-maps" }, canvas, second) : canvas,
    h("div", { class: "cw-audit-caption" }, item.caption || `#${item.index}`),
    item.value_text ? h("div", { class: "cw-audit-value" }, item.value_text) : null,
  );
  el.style.width = `${(second ? 2 * size + 4 : size) + 6}px`;
  paintThumb(canvas, item, view, size);
  if (second) paintThumb(second, { ...item, map: item.map_b, map_h: item.map_b_h, map_w: item.map_b_w }, view, size);
  return el;
}

export const grid = {
  traits: ["items", "opacity", "show_maps", "show_boxes", "show_regions", "thumb_px", "colormap", "regions", "selected"],
  render(model, ctx) {
    const size = model.get("thumb_px") || 96;
    const view = {
      showMaps: model.get("show_maps"),
      colormap: model.get("colormap"),
      opacity: model.get("opacity"),
      showBoxes: model.get("show_boxes"),
      regions: model.get("regions") || [],
      showRegions: model.get("show_regions"),
    };
    const box = h("section", { class: "cw-audit-grid", "aria-label": "Audited images" });
    for (const item of model.get("items") || []) box.append(card(item, model, ctx, size, view));
    if (!(model.get("items") || []).length) box.append(h("div", { class: "cw-audit-muted" }, "No image matches the filters."));
    return box;
  },
};

export const pager = {
  traits: ["total", "page", "page_size", "n_rows"],
  render(model, ctx) {
    const total = model.get("total");
    const size = Math.max(1, model.get("page_size"));
    const pages = Math.max(1, Math.ceil(total / size));
    const page = model.get("page");
    const go = (p) => ctx.setMany({ page: Math.min(pages - 1, Math.max(0, p)) });
    return h(
      "nav",
      { class: "cw-audit-pager", "aria-label": "pages" },
      h("button", { type: "button", class: "cw-audit-button", disabled: page <= 0, dataset: { control: "prev" }, onclick: () => go(page - 1) }, "‹ prev"),
      h("span", {}, ` page ${page + 1} / ${pages} · ${total} of ${model.get("n_rows")} images `),
      h("button", { type: "button", class: "cw-audit-button", disabled: page >= pages - 1, dataset: { control: "next" }, onclick: () => go(page + 1) }, "next ›"),
    );
  },
};
