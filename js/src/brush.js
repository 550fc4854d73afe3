// The what-if brush: paint over the image (or drag a box, or use the keyboard) to hide pixels from the
// model; the kernel answers with the painted image's predictions and map (traits brush_mask, brush_fill,
// whatif in camwidget/widget/explorer.py).
//
// The mask lives here, one byte per pixel of the model input (H*W); the kernel gets its packed bits
// (packMask in map_key.js), at most every THROTTLE_MS while a stroke goes on and at once when it ends, so
// dragging stays responsive while the kernel computes. What the model sees is drawn here at once
// (paintedView): painted pixels become the fill (blur: the blurred image the kernel publishes as
// image.base, black, or zeros: the dataset's mean colour), as the insertion/deletion curves replace them.
import { h, uid } from "./dom.js";

export const THROTTLE_MS = 120;
export const FILLS = [
  ["blur", "Blur"],
  ["black", "Black"],
  ["zeros", "Mean colour"],
];

// ---- pure: masks and views ------------------------------------------------------------------------

/** Set (v = 1) or clear (v = 0) a disc of radius r (image pixels) centred at (cx, cy). */
export function paintDisc(mask, w, hgt, cx, cy, r, v) {
  const r2 = r * r;
  const y0 = Math.max(0, Math.floor(cy - r));
  const y1 = Math.min(hgt - 1, Math.ceil(cy + r));
  const x0 = Math.max(0, Math.floor(cx - r));
  const x1 = Math.min(w - 1, Math.ceil(cx + r));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r2) mask[y * w + x] = v;
    }
  }
  return mask;
}

/** A stroke from (x0, y0) to (x1, y1): discs every r/2 pixels along it, so fast drags leave no gaps. */
export function paintStroke(mask, w, hgt, x0, y0, x1, y1, r, v) {
  const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(0.5, r / 2)));
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    paintDisc(mask, w, hgt, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, r, v);
  }
  return mask;
}

/** Set or clear the pixels of the rectangle between corners (x0, y0) and (x1, y1), both inside it. */
export function paintRect(mask, w, hgt, x0, y0, x1, y1, v) {
  const xa = Math.max(0, Math.min(x0, x1));
  const xb = Math.min(w - 1, Math.max(x0, x1));
  const ya = Math.max(0, Math.min(y0, y1));
  const yb = Math.min(hgt - 1, Math.max(y0, y1));
  for (let y = ya; y <= yb; y++) mask.fill(v, y * w + xa, y * w + xb + 1);
  return mask;
}

/** Packed bits (numpy.packbits, most significant bit first) -> one 0/1 byte per pixel. */
export function unpackMask(bits, n) {
  const mask = new Uint8Array(n);
  if (!bits || bits.length * 8 < n) return mask;
  for (let i = 0; i < n; i++) mask[i] = (bits[i >> 3] >> (7 - (i & 7))) & 1;
  return mask;
}

/** How many pixels are painted. */
export function countPainted(mask) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  return n;
}

/**
 * What the model sees: RGB (H*W*3) with the painted pixels replaced by the fill: "black", "zeros" (the
 * `substrate` colour, the dataset's mean) or "blur" (`base`, the blurred image; the substrate colour
 * until it arrives).
 */
export function paintedView(rgb, mask, fill, substrate, base, out) {
  const view = out && out.length === rgb.length ? out : new Uint8Array(rgb.length);
  view.set(rgb);
  const useBase = fill === "blur" && base && base.length === rgb.length;
  const colour = fill === "black" ? [0, 0, 0] : substrate || [0, 0, 0];
  for (let i = 0, p = 0; i < mask.length; i++, p += 3) {
    if (!mask[i]) continue;
    if (useBase) {
      view[p] = base[p];
      view[p + 1] = base[p + 1];
      view[p + 2] = base[p + 2];
    } else {
      view[p] = colour[0];
      view[p + 1] = colour[1];
      view[p + 2] = colour[2];
    }
  }
  return view;
}

/** "p(tiger cat): 0.39 → 0.05" for the whatif trait ({name, score, before, after}); "" without a mask. */
export function deltaText(whatif) {
  if (!whatif || whatif.before == null) return "";
  const symbol = { probability: "p", sigmoid: "σ", "share of pixels": "pixels", "detection score": "score" }[whatif.score];
  const what = symbol ? `${symbol}(${whatif.name})` : whatif.name;
  const after = whatif.after == null ? "…" : whatif.after.toFixed(2);
  return `${what}: ${whatif.before.toFixed(2)} → ${after}`;
}

// ---- the DOM part -----------------------------------------------------------------------------------

/**
 * The brush's toolbar and its painting on an image panel.
 * @param {object} opts
 *   onMask(bits: Uint8Array): send the packed mask (throttled here); onFill(name); pack(mask) -> bits;
 *   onChange(): the local mask changed (redraw the image now).
 */
export function whatIfBrush({ onMask, onFill, pack, onChange }) {
  let mode = "off";
  let fill = "blur";
  let radius = 14;
  let size = [0, 0]; // [H, W]
  let mask = new Uint8Array(0);
  let timer = null;
  let dirty = false;
  let box = null; // the keyboard's (and box tool's) rectangle: [x0, y0, x1, y1]
  let drag = null;
  let frameEl = null;

  const name = uid("cw-brush");
  const modes = [
    ["off", "Off", "No brush: hover the panels to read values"],
    ["paint", "Paint", "Paint over pixels to hide them from the model"],
    ["box", "Box", "Drag a box (or use the arrow keys on the image) to hide it"],
    ["erase", "Erase", "Erase painted pixels to show them to the model again"],
  ];
  const radios = modes.map(([value, label, title]) => {
    const id = uid("cw-brush-mode");
    const input = h("input", { type: "radio", name, id, value, onchange: () => setMode(value) });
    return [input, h("label", { for: id, title }, label)];
  });
  const sizeId = uid("cw-brush-size");
  const sizeInput = h("input", {
    id: sizeId,
    type: "range",
    min: "2",
    max: "60",
    step: "1",
    value: String(radius),
    class: "cw-range",
    "aria-label": "Brush radius in image pixels",
    oninput: () => {
      radius = Number(sizeInput.value);
      sizeOut.textContent = `${radius}px`;
    },
  });
  const sizeOut = h("output", { for: sizeId, class: "cw-value" }, `${radius}px`);
  const fillId = uid("cw-brush-fill");
  const fillSelect = h(
    "select",
    { id: fillId, class: "cw-select", "data-control": "brush_fill", onchange: () => onFill(fillSelect.value) },
    FILLS.map(([v, l]) => h("option", { value: v }, l)),
  );
  const clearBtn = h("button", { type: "button", class: "cw-btn", "data-control": "brush_clear", onclick: () => clear() }, "Clear");
  const delta = h("span", { class: "cw-whatif-delta", role: "status", "aria-live": "polite" });
  const hint = h("span", { class: "cw-hint cw-brush-hint" });
  const el = h(
    "div",
    { class: "cw-whatif", role: "group", "aria-label": "What-if brush" },
    h("span", { class: "cw-label" }, "What if"),
    h("div", { class: "cw-segmented", role: "radiogroup", "aria-label": "Brush tool" }, radios),
    h("div", { class: "cw-field cw-field-range cw-brush-size" }, h("label", { for: sizeId }, "Size"), sizeInput, sizeOut),
    h("div", { class: "cw-field" }, h("label", { for: fillId }, "Fill"), fillSelect),
    clearBtn,
    delta,
    hint,
  );
  const cursor = h("div", { class: "cw-brush-box", hidden: true, "aria-hidden": "true" });

  function setMode(value) {
    mode = value;
    for (const [input] of radios) input.checked = input.value === mode;
    el.dataset.mode = mode;
    if (frameEl) {
      frameEl.classList.toggle("cw-painting", mode !== "off");
      frameEl.tabIndex = mode === "off" ? -1 : 0;
      frameEl.setAttribute(
        "aria-label",
        mode === "off"
          ? "Image"
          : "What-if brush on the image: arrow keys move the box, Shift+arrow keys resize it, Enter hides it, Delete shows it again, Escape clears",
      );
    }
    if (mode === "box" && !box && size[0]) {
      const [hh, ww] = size;
      box = [Math.round(ww * 0.35), Math.round(hh * 0.35), Math.round(ww * 0.65), Math.round(hh * 0.65)];
    }
    hint.textContent = mode === "off" ? "" : mode === "box" ? "drag a box, or focus the image: arrows move, Shift+arrows resize, Enter hides, Delete restores" : "drag over the image";
    drawCursor();
  }

  function drawCursor() {
    const show = mode === "box" && box && size[0];
    cursor.hidden = !show;
    if (!show) return;
    const [hh, ww] = size;
    const [x0, y0, x1, y1] = box;
    cursor.style.left = `${(Math.min(x0, x1) / ww) * 100}%`;
    cursor.style.top = `${(Math.min(y0, y1) / hh) * 100}%`;
    cursor.style.width = `${((Math.abs(x1 - x0) + 1) / ww) * 100}%`;
    cursor.style.height = `${((Math.abs(y1 - y0) + 1) / hh) * 100}%`;
  }

  function changed(now) {
    dirty = true;
    onChange();
    if (now) flush();
    else if (!timer) timer = setTimeout(flush, THROTTLE_MS);
  }

  function flush() {
    if (timer) clearTimeout(timer);
    timer = null;
    if (!dirty) return;
    dirty = false;
    onMask(pack(mask));
  }

  function clear() {
    mask.fill(0);
    changed(true);
  }

  function toPixel(ev) {
    const rect = frameEl.getBoundingClientRect();
    const [hh, ww] = size;
    return [
      Math.max(0, Math.min(ww - 1, ((ev.clientX - rect.left) / rect.width) * ww)),
      Math.max(0, Math.min(hh - 1, ((ev.clientY - rect.top) / rect.height) * hh)),
    ];
  }

  function onDown(ev) {
    if (mode === "off" || !size[0] || ev.button > 0) return;
    ev.preventDefault();
    if (frameEl.setPointerCapture) frameEl.setPointerCapture(ev.pointerId);
    const [x, y] = toPixel(ev);
    drag = { x, y };
    const [hh, ww] = size;
    if (mode === "box") {
      box = [Math.round(x), Math.round(y), Math.round(x), Math.round(y)];
      drawCursor();
    } else {
      paintDisc(mask, ww, hh, x, y, radius, mode === "erase" ? 0 : 1);
      changed(false);
    }
  }

  function onMove(ev) {
    if (!drag) return;
    const [x, y] = toPixel(ev);
    const [hh, ww] = size;
    if (mode === "box") {
      box = [box[0], box[1], Math.round(x), Math.round(y)];
      drawCursor();
    } else {
      paintStroke(mask, ww, hh, drag.x, drag.y, x, y, radius, mode === "erase" ? 0 : 1);
      drag = { x, y };
      changed(false);
    }
  }

  function onUp() {
    if (!drag) return;
    drag = null;
    if (mode === "box" && box) {
      const [hh, ww] = size;
      paintRect(mask, ww, hh, ...box, 1);
      changed(true);
    } else flush();
  }

  function onKey(ev) {
    if (mode === "off" || !size[0]) return;
    const [hh, ww] = size;
    if (!box) box = [Math.round(ww * 0.35), Math.round(hh * 0.35), Math.round(ww * 0.65), Math.round(hh * 0.65)];
    const step = Math.max(1, Math.round(Math.min(ww, hh) / 28));
    const move = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[ev.key];
    let [x0, y0, x1, y1] = [Math.min(box[0], box[2]), Math.min(box[1], box[3]), Math.max(box[0], box[2]), Math.max(box[1], box[3])];
    if (move) {
      if (ev.shiftKey) {
        x1 = Math.max(x0, Math.min(ww - 1, x1 + move[0]));
        y1 = Math.max(y0, Math.min(hh - 1, y1 + move[1]));
      } else {
        const dx = Math.max(-x0, Math.min(ww - 1 - x1, move[0]));
        const dy = Math.max(-y0, Math.min(hh - 1 - y1, move[1]));
        x0 += dx;
        x1 += dx;
        y0 += dy;
        y1 += dy;
      }
      box = [x0, y0, x1, y1];
      if (mode !== "box") setMode("box");
      drawCursor();
    } else if (ev.key === "Enter" || ev.key === " ") {
      paintRect(mask, ww, hh, x0, y0, x1, y1, 1);
      changed(true);
    } else if (ev.key === "Delete" || ev.key === "Backspace") {
      paintRect(mask, ww, hh, x0, y0, x1, y1, 0);
      changed(true);
    } else if (ev.key === "Escape") {
      clear();
    } else return;
    ev.preventDefault();
  }

  setMode("off");
  return {
    el,
    cursor,
    delta,
    get mask() {
      return mask;
    },
    get active() {
      return mask.length > 0 && mask.some((v) => v);
    },
    get fill() {
      return fill;
    },
    /** Paint on this panel: `frame` takes the pointer and the keys, `cursor` is drawn inside it. */
    attach(frame) {
      frameEl = frame;
      frame.append(cursor);
      frame.addEventListener("pointerdown", onDown);
      frame.addEventListener("pointermove", onMove);
      frame.addEventListener("pointerup", onUp);
      frame.addEventListener("pointercancel", onUp);
      frame.addEventListener("keydown", onKey);
      setMode(mode);
    },
    /** The image's size [H, W]: a new size starts a new, empty mask. */
    setSize(hh, ww) {
      if (size[0] === hh && size[1] === ww) return;
      size = [hh, ww];
      mask = new Uint8Array(hh * ww);
      box = null;
      drawCursor();
    },
    /** The kernel's mask (packed bits) and fill: adopted unless a stroke is in progress. */
    sync(bits, fillName) {
      fill = fillName || "blur";
      fillSelect.value = fill;
      if (drag || dirty) return;
      const next = unpackMask(bits, mask.length);
      let same = true;
      for (let i = 0; i < mask.length && same; i++) same = mask[i] === next[i];
      if (!same) {
        mask = next;
        onChange();
      }
    },
    setDelta(text, whatif) {
      delta.textContent = text;
      delta.hidden = !text;
      delta.dataset.before = whatif && whatif.before != null ? String(whatif.before) : "";
      delta.dataset.after = whatif && whatif.after != null ? String(whatif.after) : "";
    },
    setMode,
  };
}
