// Text of the gallery (pure: no DOM).

/** Short text for a table value: rounded numbers, yes/no, "–" for missing. */
export function formatValue(v) {
  if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) return "–";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(1) : v.toFixed(2);
  }
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

/** A filter as a chip's text: "probability > 0.9", "error is missing". */
export function filterText(f) {
  return f.op === "is missing" || f.op === "not missing" ? `${f.column} ${f.op}` : `${f.column} ${f.op} ${f.value}`;
}

/** "12%" of a fraction. */
export function percent(v) {
  return Number.isFinite(v) ? `${Math.round(100 * v)}%` : "–";
}

/** Fractions (x0, y0, x1, y1) of the image -> pixel rectangle [x, y, w, h] on a canvas of that size. */
export function boxRect(box, width, height) {
  const [x0, y0, x1, y1] = box;
  return [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height];
}
