// Curve scaling and geometry for the insertion/deletion plot (pure: no DOM).

/** Linear map from [d0, d1] to [r0, r1]; a degenerate domain maps to the middle of the range. */
export function linearScale([d0, d1], [r0, r1]) {
  const span = d1 - d0;
  const f = (x) => (span === 0 ? (r0 + r1) / 2 : r0 + ((x - d0) / span) * (r1 - r0));
  f.invert = (y) => (r1 === r0 ? d0 : d0 + ((y - r0) / (r1 - r0)) * span);
  f.domain = [d0, d1];
  f.range = [r0, r1];
  return f;
}

/** y-domain for scores: [0, 1] widened to fit the data, with a small margin above. */
export function scoreDomain(...series) {
  let lo = 0;
  let hi = 1;
  for (const s of series) {
    for (const v of s || []) {
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return [lo, hi];
}

/** SVG path "M x,y L x,y ..." through the points, skipping non-finite values. */
export function linePath(xs, ys, sx, sy) {
  const parts = [];
  let pen = "M";
  for (let i = 0; i < xs.length && i < ys.length; i++) {
    if (!Number.isFinite(xs[i]) || !Number.isFinite(ys[i])) {
      pen = "M";
      continue;
    }
    parts.push(`${pen}${sx(xs[i]).toFixed(2)},${sy(ys[i]).toFixed(2)}`);
    pen = "L";
  }
  return parts.join(" ");
}

/** Closed area path under the curve down to the baseline y0 (for the shaded AUC). */
export function areaPath(xs, ys, sx, sy, y0 = 0) {
  const n = Math.min(xs.length, ys.length);
  if (n === 0) return "";
  const line = linePath(xs, ys, sx, sy);
  return `${line} L${sx(xs[n - 1]).toFixed(2)},${sy(y0).toFixed(2)} L${sx(xs[0]).toFixed(2)},${sy(y0).toFixed(2)} Z`;
}

/** Index of the x closest to the given value (xs sorted ascending). */
export function nearestIndex(xs, x) {
  if (!xs || xs.length === 0) return -1;
  let lo = 0;
  let hi = xs.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid;
    else hi = mid;
  }
  return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
}

/** Trapezoidal area under y(x). */
export function trapezoid(xs, ys) {
  let s = 0;
  for (let i = 1; i < xs.length; i++) s += ((ys[i] + ys[i - 1]) / 2) * (xs[i] - xs[i - 1]);
  return s;
}

/** "Nice" tick values covering [d0, d1] (about `count` of them). */
export function ticks(d0, d1, count = 5) {
  if (!(d1 > d0)) return [d0];
  const raw = (d1 - d0) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = [1, 2, 2.5, 5, 10].find((m) => m >= norm - 1e-9) * mag;
  const first = Math.ceil(d0 / step - 1e-9) * step;
  const out = [];
  for (let v = first; v <= d1 + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}
