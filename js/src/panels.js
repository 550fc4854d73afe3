// Image / heatmap / overlay panels with a synchronised crosshair, and the colorbar.
import { cssGradient } from "./colormaps.js";
import { h } from "./dom.js";

function panel(kind, title) {
  const canvas = h("canvas", { class: "cw-canvas", width: 1, height: 1, role: "img", "aria-label": title });
  const cross = h("div", { class: "cw-cross", hidden: true, "aria-hidden": "true" }, h("i", { class: "cw-cross-h" }), h("i", { class: "cw-cross-v" }));
  const badge = h("span", { class: "cw-badge", hidden: true }, "computing…");
  const caption = h("figcaption", { class: "cw-caption" }, title);
  const frame = h("div", { class: "cw-frame" }, canvas, cross, badge);
  const el = h("figure", { class: `cw-panel cw-panel-${kind}`, dataset: { panel: kind } }, frame, caption);
  return { el, canvas, cross, badge, caption, frame, kind };
}

/** Draw an RGBA buffer into a canvas sized to the data (CSS scales it). */
export function putPixels(canvas, rgba, width, height) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.putImageData(new ImageData(rgba, width, height), 0, 0);
}

export function clearCanvas(canvas) {
  const ctx = canvas.getContext("2d");
  if (ctx) ctx.clearRect(0, 0, canvas.width, canvas.height);
}

/**
 * The panel row. `onHover(x, y)` gets image pixel coordinates (or null when the pointer leaves).
 */
export function panelGrid(onHover) {
  const panels = {
    image: panel("image", "Image"),
    heatmap: panel("heatmap", "Heatmap"),
    overlay: panel("overlay", "Overlay"),
    compare: panel("compare", "Overlay B"),
  };
  const ticks = [1, 0.75, 0.5, 0.25, 0].map((t) => {
    const tick = h("span", {}, t.toFixed(2));
    tick.style.setProperty("--t", String(t));
    return tick;
  });
  const bar = h("div", { class: "cw-colorbar-bar" });
  const colorbar = h(
    "div",
    { class: "cw-colorbar", role: "img", "aria-label": "Colorbar: relevance from 0 (low) to 1 (high)" },
    h("span", { class: "cw-colorbar-title" }, "relevance"),
    h("div", { class: "cw-colorbar-body" }, bar, h("div", { class: "cw-colorbar-ticks" }, ticks)),
  );
  const readout = h("div", { class: "cw-readout", "aria-live": "off" }, "\u00a0");
  const row = h("div", { class: "cw-panels" }, panels.image.el, panels.heatmap.el, panels.overlay.el, panels.compare.el, colorbar);
  const el = h("div", { class: "cw-view" }, row, readout);

  let size = [1, 1];
  for (const p of Object.values(panels)) {
    p.frame.addEventListener("pointermove", (ev) => {
      const rect = p.canvas.getBoundingClientRect();
      if (!rect.width || !rect.height) return;
      const x = Math.floor(((ev.clientX - rect.left) / rect.width) * size[1]);
      const y = Math.floor(((ev.clientY - rect.top) / rect.height) * size[0]);
      if (x < 0 || y < 0 || x >= size[1] || y >= size[0]) return onHover(null);
      onHover(x, y);
    });
    p.frame.addEventListener("pointerleave", () => onHover(null));
  }

  return {
    el,
    panels,
    readout,
    setSize(height, width) {
      size = [height, width];
      for (const p of Object.values(panels)) p.frame.style.aspectRatio = `${width} / ${height}`;
    },
    /** The colorbar's gradient, vertical and horizontal (the layout picks one by the widget's width). */
    setColormap(name) {
      bar.style.setProperty("--cw-gradient-up", cssGradient(name, 24, "to top"));
      bar.style.setProperty("--cw-gradient-right", cssGradient(name, 24, "to right"));
    },
    /** Crosshair at pixel (x, y) on every visible panel; null hides it. */
    setCross(x, y) {
      for (const p of Object.values(panels)) {
        if (x == null) {
          p.cross.hidden = true;
          continue;
        }
        p.cross.hidden = false;
        p.cross.style.setProperty("--cw-x", `${((x + 0.5) / size[1]) * 100}%`);
        p.cross.style.setProperty("--cw-y", `${((y + 0.5) / size[0]) * 100}%`);
      }
    },
    setMode(compare) {
      panels.heatmap.el.hidden = compare;
      panels.compare.el.hidden = !compare;
    },
  };
}
