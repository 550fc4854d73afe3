// The embedding scatter's numbers (pure: no DOM): decoding the compact point traits, a grid index for
// the nearest point under the pointer, point-in-polygon for the lasso, and the class palette.
import { halfToFloat, toBytes } from "../buffers.js";

/** n*2 little-endian float16 -> Float32Array of n (x, y) pairs (NaN kept). */
export function decodeXY(value, n) {
  const bytes = toBytes(value);
  if (bytes.length !== n * 4) throw new Error(`camwidget: scatter has ${bytes.length} bytes, expected ${n * 4}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(2 * n);
  for (let i = 0; i < 2 * n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
  return out;
}

/** n little-endian uint16 -> Uint16Array. */
export function decodeU16(value, n) {
  const bytes = toBytes(value);
  if (bytes.length !== n * 2) throw new Error(`camwidget: expected ${n * 2} bytes of uint16, got ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

/** Bit i of a packed little-order bitmask (numpy packbits(bitorder="little")); true when no mask. */
export function bit(mask, i) {
  if (!mask || !mask.length) return true;
  return ((mask[i >> 3] >> (i & 7)) & 1) === 1;
}

/** A uniform grid over [0, 1]^2 of point indices, for nearest-point queries. */
export function buildGrid(xy, n, cells = 64) {
  const buckets = Array.from({ length: cells * cells }, () => []);
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i];
    const y = xy[2 * i + 1];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const cx = Math.min(cells - 1, Math.max(0, Math.floor(x * cells)));
    const cy = Math.min(cells - 1, Math.max(0, Math.floor(y * cells)));
    buckets[cy * cells + cx].push(i);
  }
  return { cells, buckets };
}

/**
 * The index of the point nearest (x, y) within `radius` (all in data units, [0, 1]), or -1.
 * sx, sy: how many screen pixels one data unit spans on each axis (distances are compared on screen).
 */
export function nearest(grid, xy, x, y, radius, sx = 1, sy = 1) {
  const { cells, buckets } = grid;
  const rx = Math.ceil(radius * cells) + 1;
  const cx = Math.floor(x * cells);
  const cy = Math.floor(y * cells);
  let best = -1;
  let bestD = Infinity;
  for (let j = Math.max(0, cy - rx); j <= Math.min(cells - 1, cy + rx); j++) {
    for (let i = Math.max(0, cx - rx); i <= Math.min(cells - 1, cx + rx); i++) {
      for (const k of buckets[j * cells + i]) {
        const dx = (xy[2 * k] - x) * sx;
        const dy = (xy[2 * k + 1] - y) * sy;
        const d = dx * dx + dy * dy;
        if (d < bestD) {
          bestD = d;
          best = k;
        }
      }
    }
  }
  const r = radius * Math.max(sx, sy);
  return bestD <= r * r ? best : -1;
}

/** Even-odd rule: is (x, y) inside the polygon [[x, y], ...]? */
export function pointInPolygon(x, y, polygon) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Absolute area of a polygon (shoelace). */
export function polygonArea(polygon) {
  let a = 0;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    a += (polygon[j][0] + polygon[i][0]) * (polygon[j][1] - polygon[i][1]);
  }
  return Math.abs(a) / 2;
}

/** 12 distinguishable class colours (Tableau-like), cycled. */
export const CLASS_COLORS = [
  "#4e79a7", "#59a14f", "#9c755f", "#b07aa1", "#76b7b2", "#edc948",
  "#af7aa1", "#ff9da7", "#86bcb6", "#8cd17d", "#499894", "#d4a6c8",
];
export const WRONG_COLOR = "#e15759";
export const RIGHT_COLOR = "#4e79a7";

export function classColor(k) {
  return CLASS_COLORS[k % CLASS_COLORS.length];
}
