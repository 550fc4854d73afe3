// 256-entry colour lookup tables and the pixel loops that use them (pure: no DOM).
import { INFERNO_HEX, VIRIDIS_HEX } from "./colormap_data.js";

export const COLORMAPS = ["viridis", "jet", "inferno", "gray"];
export const DEFAULT_COLORMAP = "viridis";

function fromHex(hex) {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < lut.length; i++) lut[i] = parseInt(hex.substr(i * 2, 2), 16);
  return lut;
}

function clamp01(x) {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

// The classic MATLAB "jet": piecewise-linear ramps of blue -> cyan -> yellow -> red.
function jetLut() {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    const r = clamp01(Math.min(4 * t - 1.5, -4 * t + 4.5));
    const g = clamp01(Math.min(4 * t - 0.5, -4 * t + 3.5));
    const b = clamp01(Math.min(4 * t + 0.5, -4 * t + 2.5));
    lut[i * 3] = Math.round(r * 255);
    lut[i * 3 + 1] = Math.round(g * 255);
    lut[i * 3 + 2] = Math.round(b * 255);
  }
  return lut;
}

function grayLut() {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut[i * 3] = lut[i * 3 + 1] = lut[i * 3 + 2] = i;
  return lut;
}

const cache = new Map();

/** The 256x3 Uint8Array LUT of a colormap; unknown names fall back to viridis. */
export function getLut(name) {
  const key = COLORMAPS.includes(name) ? name : DEFAULT_COLORMAP;
  let lut = cache.get(key);
  if (!lut) {
    if (key === "viridis") lut = fromHex(VIRIDIS_HEX);
    else if (key === "inferno") lut = fromHex(INFERNO_HEX);
    else if (key === "jet") lut = jetLut();
    else lut = grayLut();
    cache.set(key, lut);
  }
  return lut;
}

/** Colour of value v in [0, 1] as [r, g, b]. */
export function lookup(name, v) {
  const lut = getLut(name);
  const i = Math.round(clamp01(Number.isFinite(v) ? v : 0) * 255);
  return [lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2]];
}

/** CSS linear-gradient (bottom -> top) for a colorbar. */
export function cssGradient(name, stops = 16, direction = "to top") {
  const parts = [];
  for (let i = 0; i < stops; i++) {
    const t = i / (stops - 1);
    const [r, g, b] = lookup(name, t);
    parts.push(`rgb(${r}, ${g}, ${b}) ${(t * 100).toFixed(1)}%`);
  }
  return `linear-gradient(${direction}, ${parts.join(", ")})`;
}

/**
 * Colourise a heatmap of uint8 levels (0..255) into an RGBA buffer.
 * @param {Uint8Array} levels  H*W values
 * @param {Uint8Array} lut     256*3 table
 * @param {Uint8ClampedArray} [out] H*W*4 output (allocated when absent)
 */
export function colorize(levels, lut, out) {
  const n = levels.length;
  const rgba = out || new Uint8ClampedArray(n * 4);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const k = levels[i] * 3;
    rgba[j] = lut[k];
    rgba[j + 1] = lut[k + 1];
    rgba[j + 2] = lut[k + 2];
    rgba[j + 3] = 255;
  }
  return rgba;
}

/**
 * Alpha-blend a colourised heatmap over an RGB image: out = (1 - a) * image + a * colour.
 * @param {Uint8Array} rgb     H*W*3 image
 * @param {Uint8Array} levels  H*W heatmap levels (0..255)
 * @param {Uint8Array} lut     256*3 table
 * @param {number} alpha       opacity in [0, 1]
 */
export function blend(rgb, levels, lut, alpha, out) {
  const n = levels.length;
  const rgba = out || new Uint8ClampedArray(n * 4);
  const a = Math.round(clamp01(alpha) * 256);
  const b = 256 - a;
  for (let i = 0, j = 0, p = 0; i < n; i++, j += 4, p += 3) {
    const k = levels[i] * 3;
    rgba[j] = (rgb[p] * b + lut[k] * a) >> 8;
    rgba[j + 1] = (rgb[p + 1] * b + lut[k + 1] * a) >> 8;
    rgba[j + 2] = (rgb[p + 2] * b + lut[k + 2] * a) >> 8;
    rgba[j + 3] = 255;
  }
  return rgba;
}
