// The embedding scatter: one point per audited image (its penultimate embedding on a plane), coloured
// by true class or by correctness, the points outside the current filters faded. Hover a point: its
// thumbnail, asked from the kernel then (never all at once). Drag: a lasso; the kernel selects the
// points inside and filters the gallery to them. Click a point: open the image.
import { toBytes } from "../buffers.js";
import { h } from "../dom.js";
import { decodeImage } from "./draw.js";
import { percent } from "./format.js";
import { RIGHT_COLOR, WRONG_COLOR, bit, buildGrid, classColor, decodeU16, decodeXY, nearest, polygonArea } from "./scatter_math.js";

const WIDTH = 520;
const HEIGHT = 340;
const PAD = 10;
const decodedCache = new WeakMap();

function decoded(model) {
  const n = model.get("scatter_n") || 0;
  const xyValue = model.get("scatter_xy");
  const key = typeof xyValue === "object" && xyValue ? xyValue : null;
  const cached = key && decodedCache.get(key);
  if (cached && cached.n === n && cached.classValue === model.get("scatter_class")) return cached;
  const xy = decodeXY(xyValue, n);
  const out = {
    n,
    xy,
    classValue: model.get("scatter_class"),
    classes: decodeU16(model.get("scatter_class"), n),
    flags: toBytes(model.get("scatter_flags")),
    grid: buildGrid(xy, n),
  };
  if (key) decodedCache.set(key, out);
  return out;
}

const toScreen = (x, y) => [PAD + x * (WIDTH - 2 * PAD), HEIGHT - PAD - y * (HEIGHT - 2 * PAD)];
const toData = (px, py) => [(px - PAD) / (WIDTH - 2 * PAD), (HEIGHT - PAD - py) / (HEIGHT - 2 * PAD)];

function paint(canvas, data, shown, colorBy) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(WIDTH * dpr);
  canvas.height = Math.round(HEIGHT * dpr);
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, WIDTH, HEIGHT);
  const filtered = shown.length > 0 && shown.some((b) => b !== 255);
  const { n, xy, classes, flags } = data;
  // two passes: faded (outside the filters) first, then the points the filters keep, misclassified last
  for (const pass of [0, 1, 2]) {
    for (let i = 0; i < n; i++) {
      const x = xy[2 * i];
      const y = xy[2 * i + 1];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      const kept = !filtered || bit(shown, i);
      const wrong = (flags[i] & 1) === 1;
      const which = !kept ? 0 : wrong ? 2 : 1;
      if (which !== pass) continue;
      const [px, py] = toScreen(x, y);
      ctx.globalAlpha = kept ? 0.85 : 0.12;
      ctx.fillStyle = colorBy === "correct" ? (wrong ? WRONG_COLOR : RIGHT_COLOR) : classes[i] === 65535 ? "#888" : classColor(classes[i]);
      if (wrong && kept) {
        ctx.fillRect(px - 2, py - 2, 4, 4);
        ctx.strokeStyle = "#000";
        ctx.globalAlpha = 0.6;
        ctx.lineWidth = 0.8;
        ctx.strokeRect(px - 2, py - 2, 4, 4);
      } else {
        ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
      }
    }
  }
  ctx.globalAlpha = 1;
  canvas.dataset.painted = "1";
  canvas.dataset.points = String(n);
}

export const embedding = {
  traits: ["scatter_n", "scatter_xy", "scatter_class", "scatter_flags", "scatter_classes", "scatter_shown", "scatter_color", "lasso"],
  render(model, ctx) {
    const wrap = h("section", { class: "cw-audit-embedding", "aria-label": "Embedding map" });
    const n = model.get("scatter_n") || 0;
    if (!n) return wrap;
    const data = decoded(model);
    const colorBy = model.get("scatter_color") === "correct" ? "correct" : "class";
    const shown = toBytes(model.get("scatter_shown"));
    const head = h(
      "div",
      { class: "cw-audit-heading" },
      `Embedding map: ${n} images by their penultimate embedding (hover: thumbnail; drag a lasso to select; click: open) · colour by `,
      h(
        "button",
        { type: "button", class: "cw-audit-link", dataset: { control: "scatter-color" }, onclick: () => ctx.setMany({ scatter_color: colorBy === "class" ? "correct" : "class" }) },
        colorBy === "class" ? "correct / wrong" : "class",
      ),
    );
    const canvas = h("canvas", { class: "cw-audit-scatter", role: "img", "aria-label": `embedding map of ${n} images` });
    canvas.style.width = `${WIDTH}px`;
    canvas.style.height = `${HEIGHT}px`;
    const overlay = h("canvas", { class: "cw-audit-scatter-overlay", width: WIDTH, height: HEIGHT, "aria-hidden": "true" });
    const tip = h("div", { class: "cw-audit-tip", hidden: true, role: "tooltip" });
    const tipCanvas = h("canvas", { class: "cw-audit-tip-canvas", width: 64, height: 64 });
    const tipText = h("div", { class: "cw-audit-caption" });
    tip.append(tipCanvas, tipText);
    const stage = h("div", { class: "cw-audit-scatter-stage" }, canvas, overlay, tip);
    stage.style.width = `${WIDTH}px`;
    stage.style.height = `${HEIGHT}px`;
    paint(canvas, data, shown, colorBy);

    // hover: the nearest point's thumbnail, asked for once and kept
    const thumbs = new Map();
    let hovered = -1;
    let timer = null;
    const showTip = (i) => {
      const got = thumbs.get(i);
      tipText.textContent = got ? got.caption : `#… loading`;
      tipText.className = `cw-audit-caption${got && got.correct === false ? " cw-audit-wrong-text" : ""}`;
      if (got && got.image) {
        const c = tipCanvas.getContext("2d");
        if (c) {
          c.clearRect(0, 0, 64, 64);
          c.drawImage(got.image, 0, 0, 64, 64);
        }
        tip.dataset.index = String(got.index);
      }
    };
    ctx.listen((msg, buffers) => {
      if (!msg || msg.event !== "thumb") return;
      const entry = { caption: msg.caption, index: msg.index, correct: msg.correct, image: null };
      thumbs.set(msg.position, entry);
      decodeImage(buffers && buffers.length ? buffers[0] : new Uint8Array(0)).then((image) => {
        entry.image = image;
        if (hovered === msg.position) showTip(msg.position);
      });
      if (hovered === msg.position) showTip(msg.position);
    });
    const pointer = (ev) => {
      const r = overlay.getBoundingClientRect();
      return [ev.clientX - r.left, ev.clientY - r.top];
    };
    const sx = WIDTH - 2 * PAD;
    const sy = HEIGHT - 2 * PAD;
    const pick = (px, py) => {
      const [x, y] = toData(px, py);
      return nearest(data.grid, data.xy, x, y, 8 / sx, sx, sy);
    };

    // lasso
    let path = null;
    const o = overlay.getContext("2d");
    const drawPath = () => {
      if (!o) return;
      o.clearRect(0, 0, WIDTH, HEIGHT);
      if (!path || path.length < 2) return;
      o.strokeStyle = "#ff9100";
      o.fillStyle = "rgba(255,145,0,0.12)";
      o.lineWidth = 1.5;
      o.setLineDash([4, 3]);
      o.beginPath();
      path.forEach(([x, y], i) => (i ? o.lineTo(x, y) : o.moveTo(x, y)));
      o.closePath();
      o.fill();
      o.stroke();
    };
    overlay.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      path = [pointer(ev)];
      if (overlay.setPointerCapture) overlay.setPointerCapture(ev.pointerId);
      tip.hidden = true;
    });
    overlay.addEventListener("pointermove", (ev) => {
      const [px, py] = pointer(ev);
      if (path) {
        const [lx, ly] = path[path.length - 1];
        if (Math.hypot(px - lx, py - ly) >= 3) {
          path.push([px, py]);
          drawPath();
        }
        return;
      }
      const i = pick(px, py);
      if (i !== hovered) {
        hovered = i;
        clearTimeout(timer);
        if (i < 0) {
          tip.hidden = true;
          return;
        }
        tip.hidden = false;
        tip.style.left = `${Math.min(WIDTH - 90, px + 12)}px`;
        tip.style.top = `${Math.min(HEIGHT - 96, py + 12)}px`;
        showTip(i);
        if (!thumbs.has(i)) timer = setTimeout(() => hovered === i && ctx.send({ event: "hover", position: i }), 60);
      }
    });
    overlay.addEventListener("pointerleave", () => {
      if (!path) {
        hovered = -1;
        tip.hidden = true;
      }
    });
    overlay.addEventListener("pointerup", (ev) => {
      const done = path;
      path = null;
      drawPath();
      if (!done) return;
      if (done.length >= 3 && polygonArea(done) > 64) {
        ctx.send({ event: "lasso", polygon: done.map(([px, py]) => toData(px, py)) });
        return;
      }
      const [px, py] = pointer(ev);
      const i = pick(px, py);
      if (i >= 0) ctx.send({ event: "open", position: i });
    });

    // legend and the lasso's selection
    const legend = h("div", { class: "cw-audit-legend" });
    if (colorBy === "class") {
      (model.get("scatter_classes") || []).slice(0, 12).forEach((name, k) => {
        legend.append(h("span", { class: "cw-audit-key" }, h("span", { class: "cw-audit-dot", style: { background: classColor(k) } }), name));
      });
      legend.append(h("span", { class: "cw-audit-key" }, h("span", { class: "cw-audit-dot cw-audit-dot-wrong" }), "misclassified (outlined)"));
    } else {
      legend.append(h("span", { class: "cw-audit-key" }, h("span", { class: "cw-audit-dot", style: { background: RIGHT_COLOR } }), "correct"));
      legend.append(h("span", { class: "cw-audit-key" }, h("span", { class: "cw-audit-dot", style: { background: WRONG_COLOR } }), "misclassified"));
    }
    const lasso = model.get("lasso") || {};
    const info = lasso.count
      ? h(
          "div",
          { class: "cw-audit-lasso", dataset: { count: String(lasso.count) } },
          `Lasso: ${lasso.count} images, ${percent(lasso.accuracy)} correct (the rest: ${percent(lasso.rest_accuracy)}); ` +
            (lasso.classes || []).map(([name, c]) => `${name} ${c}`).join(", "),
        )
      : null;
    wrap.append(head, stage, legend);
    if (info) wrap.append(info);
    return wrap;
  },
};
