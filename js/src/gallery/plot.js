// Small line plots on a canvas (the error-understanding confidence paths). Pure geometry + one painter.

/** Screen points of a curve ys over xs (both in [0, 1]) in a w x h box with `pad` pixels of margin. */
export function curvePoints(xs, ys, w, h, pad = 4) {
  const out = [];
  for (let i = 0; i < ys.length; i++) {
    const x = pad + Math.max(0, Math.min(1, xs[i])) * (w - 2 * pad);
    const y = h - pad - Math.max(0, Math.min(1, ys[i])) * (h - 2 * pad);
    out.push([x, y]);
  }
  return out;
}

/** Index and value of the maximum of ys (first one on ties); [-1, NaN] when empty. */
export function argmax(ys) {
  let best = -1;
  let v = -Infinity;
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] > v) {
      v = ys[i];
      best = i;
    }
  }
  return best < 0 ? [-1, NaN] : [best, v];
}

/** Paint a curve (values in [0, 1] against xs in [0, 1]) with its maximum marked. */
export function paintCurve(canvas, xs, ys, { color = "#1976d2", grid = "rgba(128,128,128,0.35)" } = {}) {
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(3.5, 3.5, w - 7, h - 7);
  ctx.beginPath();
  ctx.moveTo(4, h / 2 + 0.5);
  ctx.lineTo(w - 4, h / 2 + 0.5);
  ctx.stroke();
  const pts = curvePoints(xs, ys, w, h);
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.stroke();
  const [k] = argmax(ys);
  if (k >= 0) {
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.arc(pts[k][0], pts[k][1], 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  canvas.dataset.painted = "1";
}
