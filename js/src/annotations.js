// What is drawn over the image: a segmentation's predicted pixels of the chosen class (outlined), a
// detector's boxes (buttons that explain their detection), the what-if brush's painted region (outlined).
// Traits: annotations ({pixels} or {boxes}) and class_index (camwidget/widget/explorer.py).
import { clear, h } from "./dom.js";

/**
 * Colour the edge pixels of a region into an RGBA buffer: pixels inside (`inside(i)`) with a 4-neighbour
 * outside or on the border of the image. Returns how many pixels were drawn. (Pure: no DOM.)
 */
export function outlineRegion(inside, w, hgt, rgba, colour) {
  let drawn = 0;
  for (let y = 0; y < hgt; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!inside(i)) continue;
      const edge =
        x === 0 || y === 0 || x === w - 1 || y === hgt - 1 || !inside(i - 1) || !inside(i + 1) || !inside(i - w) || !inside(i + w);
      if (!edge) continue;
      const j = i * 4;
      rgba[j] = colour[0];
      rgba[j + 1] = colour[1];
      rgba[j + 2] = colour[2];
      rgba[j + 3] = 255;
      drawn++;
    }
  }
  return drawn;
}

/** The share of pixels of class `c` in a segmentation's per-pixel classes. (Pure.) */
export function classShare(pixels, c) {
  let n = 0;
  for (let i = 0; i < pixels.length; i++) if (pixels[i] === c) n++;
  return pixels.length ? n / pixels.length : 0;
}

/**
 * A detector's boxes over an image panel: one button per box (positioned in % of the image), the chosen
 * one pressed. `onPick(index)` explains a box.
 */
export function detectionBoxes(onPick) {
  const layer = h("div", { class: "cw-boxes", role: "group", "aria-label": "Detections: choose one to explain it" });
  let key = "";
  return {
    el: layer,
    update(boxes, size, selected) {
      const [hh, ww] = size;
      const next = JSON.stringify([boxes || [], hh, ww]);
      if (next !== key) {
        key = next;
        clear(layer);
        for (const b of boxes || []) {
          const [x0, y0, x1, y1] = b.box;
          const btn = h(
            "button",
            {
              type: "button",
              class: "cw-box",
              dataset: { index: String(b.index) },
              "aria-label": `Explain ${b.name}, score ${b.score.toFixed(2)}`,
              title: `${b.name} · ${b.score.toFixed(2)}`,
              onclick: (ev) => {
                ev.stopPropagation();
                onPick(b.index);
              },
            },
            h("span", { class: "cw-box-label" }, `${b.name} ${b.score.toFixed(2)}`),
          );
          btn.style.left = `${(x0 / ww) * 100}%`;
          btn.style.top = `${(y0 / hh) * 100}%`;
          btn.style.width = `${((x1 - x0) / ww) * 100}%`;
          btn.style.height = `${((y1 - y0) / hh) * 100}%`;
          layer.append(btn);
        }
      }
      for (const btn of layer.children) btn.setAttribute("aria-pressed", String(Number(btn.dataset.index) === selected));
      layer.hidden = !(boxes && boxes.length);
    },
  };
}
