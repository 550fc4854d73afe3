// Insertion/deletion curves as SVG, with hover/drag/keyboard scrubbing through the steps.
import { h, clear } from "./dom.js";
import { areaPath, linePath, linearScale, nearestIndex, scoreDomain, ticks } from "./scales.js";

const M = { top: 12, right: 12, bottom: 34, left: 42 };

function fmt(v, digits = 3) {
  return Number.isFinite(v) ? v.toFixed(digits) : "–";
}

/**
 * The curve plot. `onScrub(index | null)` fires while the user hovers, drags or steps with the keys.
 * series: [{ id: "a" | "b", label, data: { fractions, insertion, deletion, insertion_auc, deletion_auc } }]
 */
export function curvePlot(onScrub) {
  let W = 360;
  let H = 190;
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "cw-curves-svg", role: "img", "aria-label": "Insertion and deletion curves" });
  const legend = h("div", { class: "cw-legend" });
  const status = h("p", { class: "cw-curves-status" });
  const plot = h("div", { class: "cw-curves-plot", tabindex: "0", "aria-label": "Insertion and deletion curves: use the arrow keys to step through the perturbed images" }, svg);
  const el = h("div", { class: "cw-curves-chart" }, legend, plot, status);

  let current = [];
  let yLabel = "class probability";
  let xs = [];
  let index = -1;
  let sx = linearScale([0, 1], [M.left, W - M.right]);
  let sy = linearScale([0, 1], [H - M.bottom, M.top]);
  let hoverLayer = null;

  function draw() {
    clear(svg);
    clear(legend);
    const all = current.filter((s) => s.data && s.data.fractions && s.data.fractions.length);
    if (!all.length) {
      xs = [];
      return;
    }
    xs = all[0].data.fractions;
    const [y0, y1] = scoreDomain(...all.flatMap((s) => [s.data.insertion, s.data.deletion]));
    sx = linearScale([0, 1], [M.left, W - M.right]);
    sy = linearScale([y0, y1], [H - M.bottom, M.top]);
    const grid = h("svg:g", { class: "cw-grid" });
    for (const t of ticks(0, 1, 4)) {
      grid.append(h("svg:line", { x1: sx(t), x2: sx(t), y1: sy(y0), y2: sy(y1) }));
      grid.append(h("svg:text", { x: sx(t), y: H - M.bottom + 14, "text-anchor": "middle" }, `${Math.round(t * 100)}%`));
    }
    // fewer decimals for larger scores (a logit, a class score summed over its pixels), so ticks fit the margin
    const big = Math.max(Math.abs(y0), Math.abs(y1));
    const digits = big >= 100 ? 0 : big >= 10 ? 1 : 2;
    for (const t of ticks(y0, y1, 4)) {
      grid.append(h("svg:line", { x1: sx(0), x2: sx(1), y1: sy(t), y2: sy(t) }));
      grid.append(h("svg:text", { x: M.left - 6, y: sy(t) + 3, "text-anchor": "end" }, t.toFixed(digits)));
    }
    grid.append(h("svg:text", { class: "cw-axis-title", x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle" }, "fraction of pixels inserted / deleted (most relevant first)"));
    grid.append(h("svg:text", { class: "cw-axis-title", x: 10, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", transform: `rotate(-90 10 ${(M.top + H - M.bottom) / 2})` }, yLabel));
    svg.append(grid);
    for (const s of all) {
      const d = s.data;
      const g = h("svg:g", { class: `cw-series cw-series-${s.id}` });
      g.append(h("svg:path", { class: "cw-area cw-ins", d: areaPath(d.fractions, d.insertion, sx, sy, y0) }));
      g.append(h("svg:path", { class: "cw-line cw-ins", d: linePath(d.fractions, d.insertion, sx, sy) }));
      g.append(h("svg:path", { class: "cw-line cw-del", d: linePath(d.fractions, d.deletion, sx, sy) }));
      svg.append(g);
      legend.append(
        h(
          "div",
          { class: `cw-legend-row cw-series-${s.id}` },
          all.length > 1 ? h("strong", {}, `${s.id.toUpperCase()} `) : null,
          h("span", { class: "cw-key cw-ins" }),
          "Insertion AUC ",
          h("b", { class: "cw-auc", dataset: { curve: `${s.id}-insertion` } }, fmt(d.insertion_auc)),
          h("span", { class: "cw-arrow", title: "higher is better" }, " ↑"),
          h("span", { class: "cw-key cw-del" }),
          "Deletion AUC ",
          h("b", { class: "cw-auc", dataset: { curve: `${s.id}-deletion` } }, fmt(d.deletion_auc)),
          h("span", { class: "cw-arrow", title: "lower is better" }, " ↓"),
        ),
      );
    }
    hoverLayer = h("svg:g", { class: "cw-hover" });
    svg.append(hoverLayer);
    if (index >= xs.length) index = xs.length - 1;
    drawHover();
  }

  function drawHover() {
    if (!hoverLayer) return;
    clear(hoverLayer);
    if (index < 0 || !xs.length) return;
    const x = sx(xs[index]);
    hoverLayer.append(h("svg:line", { class: "cw-hover-line", x1: x, x2: x, y1: sy.range[0], y2: sy.range[1] }));
    for (const s of current) {
      if (!s.data || !s.data.insertion) continue;
      for (const [kind, ys] of [["ins", s.data.insertion], ["del", s.data.deletion]]) {
        if (Number.isFinite(ys[index])) {
          hoverLayer.append(h("svg:circle", { class: `cw-dot cw-${kind} cw-series-${s.id}`, cx: x, cy: sy(ys[index]), r: 3.5 }));
        }
      }
    }
  }

  function scrubTo(i) {
    if (i === index) return;
    index = i;
    drawHover();
    onScrub(i < 0 ? null : i);
  }

  function fromPointer(ev) {
    const rect = svg.getBoundingClientRect();
    if (!rect.width || !xs.length) return -1;
    const vx = ((ev.clientX - rect.left) / rect.width) * W;
    const f = Math.max(0, Math.min(1, sx.invert(vx)));
    return nearestIndex(xs, f);
  }

  let dragging = false;
  plot.addEventListener("pointerdown", (ev) => {
    dragging = true;
    if (plot.setPointerCapture) plot.setPointerCapture(ev.pointerId);
    scrubTo(fromPointer(ev));
  });
  plot.addEventListener("pointermove", (ev) => scrubTo(fromPointer(ev)));
  plot.addEventListener("pointerup", () => {
    dragging = false;
  });
  plot.addEventListener("pointerleave", () => {
    if (!dragging) scrubTo(-1);
  });
  plot.addEventListener("keydown", (ev) => {
    if (!xs.length) return;
    let i = index;
    if (ev.key === "ArrowRight") i = Math.min(xs.length - 1, i + 1);
    else if (ev.key === "ArrowLeft") i = Math.max(0, i < 0 ? 0 : i - 1);
    else if (ev.key === "Home") i = 0;
    else if (ev.key === "End") i = xs.length - 1;
    else if (ev.key === "Escape") i = -1;
    else return;
    ev.preventDefault();
    scrubTo(i);
  });

  // Keep SVG units = CSS pixels so text stays at its font size whatever the width.
  function fit() {
    const width = Math.round(plot.clientWidth || 0);
    if (width < 120 || width === W) return false;
    W = width;
    H = Math.round(Math.min(250, Math.max(170, W * 0.5)));
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    return true;
  }
  if (typeof ResizeObserver === "function") {
    const ro = new ResizeObserver(() => {
      if (fit()) draw();
    });
    ro.observe(plot);
  }

  return {
    el,
    svg,
    /** `label`: what the curves score (the y axis), default "class probability". */
    update(series, statusText, label) {
      current = series;
      yLabel = label || "class probability";
      status.textContent = statusText || "";
      status.hidden = !statusText;
      fit();
      draw();
    },
    get index() {
      return index;
    },
    get fractions() {
      return xs;
    },
  };
}
