// Painting a thumbnail: the audited image, its heatmap, object boxes and named regions, on a canvas.
import { toBytes } from "../buffers.js";
import { getLut } from "../colormaps.js";
import { boxRect } from "./format.js";

/** Distinct outline colours for the named regions (cycled). */
export const REGION_COLORS = ["#00e5ff", "#ff4081", "#ffd600", "#76ff03", "#e040fb", "#ff9100"];

/**
 * RGBA (h*w*4) of a heatmap: the colormap's colour, alpha rising with the level so that cold areas
 * stay see-through: alpha = opacity * (0.25 + 0.75 * level / 255).
 */
export function heatRgba(levels, lut, opacity, out) {
  const n = levels.length;
  const rgba = out || new Uint8ClampedArray(n * 4);
  const a = Math.max(0, Math.min(1, Number(opacity) || 0));
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const k = levels[i] * 3;
    rgba[j] = lut[k];
    rgba[j + 1] = lut[k + 1];
    rgba[j + 2] = lut[k + 2];
    rgba[j + 3] = Math.round(255 * a * (0.25 + (0.75 * levels[i]) / 255));
  }
  return rgba;
}

const decoded = new WeakMap();

/** Decode JPEG bytes (a bytes trait: DataView, ArrayBuffer, ...) into something drawImage takes. */
export function decodeImage(value) {
  const bytes = toBytes(value);
  if (!bytes.length) return Promise.resolve(null);
  const key = bytes.buffer;
  const cached = decoded.get(key);
  if (cached && cached.offset === bytes.byteOffset) return cached.promise;
  const blob = new Blob([bytes], { type: "image/jpeg" });
  const promise =
    typeof createImageBitmap === "function"
      ? createImageBitmap(blob).catch(() => null)
      : new Promise((resolve) => {
          const url = URL.createObjectURL(blob);
          const img = new Image();
          img.onload = () => {
            URL.revokeObjectURL(url);
            resolve(img);
          };
          img.onerror = () => {
            URL.revokeObjectURL(url);
            resolve(null);
          };
          img.src = url;
        });
  decoded.set(key, { offset: bytes.byteOffset, promise });
  return promise;
}

/** Draw levels (h x w uint8) over the canvas, smoothly upscaled. */
function drawHeat(ctx, levels, h, w, colormap, opacity, width, height) {
  if (!levels.length || !h || !w || levels.length !== h * w) return;
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  small.getContext("2d").putImageData(new ImageData(heatRgba(levels, getLut(colormap), opacity), w, h), 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, width, height);
}

function outline(ctx, box, color, width, height, dashed) {
  const [x, y, w, h] = boxRect(box, width, height);
  ctx.save();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.6)";
  ctx.setLineDash([]);
  ctx.strokeRect(x + 0.5, y + 0.5, Math.max(1, w - 1), Math.max(1, h - 1));
  ctx.strokeStyle = color;
  if (dashed) ctx.setLineDash([3, 2]);
  ctx.strokeRect(x + 0.5, y + 0.5, Math.max(1, w - 1), Math.max(1, h - 1));
  ctx.restore();
}

/**
 * Paint a thumbnail canvas `size` pixels wide.
 * spec: { thumb (JPEG bytes), map (uint8 levels), map_h, map_w, box (fractions) } and
 * view: { showMaps, colormap, opacity, showBoxes, regions: [{name, box}], showRegions, background }.
 * Returns a promise that resolves when painted (the canvas is marked data-painted="1").
 */
export async function paintThumb(canvas, spec, view, size) {
  const image = await decodeImage(spec.thumb);
  const aspect = image ? image.height / Math.max(1, image.width) : (spec.map_h || 1) / Math.max(1, spec.map_w || 1);
  canvas.width = size;
  canvas.height = Math.max(1, Math.round(size * aspect));
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.fillStyle = view.background || "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (image) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  }
  if (view.showMaps) {
    const levels = toBytes(spec.map);
    drawHeat(ctx, levels, spec.map_h, spec.map_w, view.colormap, view.opacity, canvas.width, canvas.height);
  }
  if (view.showRegions && !spec.error) {
    (view.regions || []).forEach((r, i) => outline(ctx, r.box, REGION_COLORS[i % REGION_COLORS.length], canvas.width, canvas.height, true));
  }
  if (spec.box && view.showBoxes) outline(ctx, spec.box, "#ffffff", canvas.width, canvas.height, false);
  canvas.dataset.painted = "1";
}
