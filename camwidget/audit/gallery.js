// AuditExplorer front end: a gallery of audited images with heatmap overlays, sort/filter controls,
// a per-class mean-map panel and a click that asks the kernel to open the image in CamExplorer.
// Plain DOM and canvas, no dependencies. The kernel does the sorting, filtering and paging; this file
// only draws the current page and sends the user's choices back as trait changes.

const OPS = ["<", "<=", ">", ">=", "==", "!=", "contains", "is missing", "not missing"];

/** Decode a base64 string of uint8 levels into a Uint8Array. */
export function decodeLevels(b64) {
  if (!b64) return new Uint8Array(0);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Jet-like colormap: level 0..255 -> [r, g, b] 0..255. */
export function jet(level) {
  const t = level / 255;
  const c = (x) => Math.round(255 * Math.min(1, Math.max(0, x)));
  return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
}

/** RGBA pixels (h*w*4) of a heatmap; alpha grows with the level so cold areas stay see-through. */
export function heatPixels(levels, opacity) {
  const out = new Uint8ClampedArray(levels.length * 4);
  for (let i = 0; i < levels.length; i++) {
    const [r, g, b] = jet(levels[i]);
    out[4 * i] = r;
    out[4 * i + 1] = g;
    out[4 * i + 2] = b;
    out[4 * i + 3] = Math.round(255 * opacity * (0.25 + 0.75 * (levels[i] / 255)));
  }
  return out;
}

/** Short text for a cell value. */
export function formatValue(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(1) : v.toFixed(3);
  }
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

/** Draw the map (levels h x w) over the canvas, smoothly upscaled. */
function drawHeat(ctx, levels, h, w, opacity, width, height) {
  if (!levels.length || !h || !w) return;
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  small.getContext("2d").putImageData(new ImageData(heatPixels(levels, opacity), w, h), 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, width, height);
}

function thumbCard(item, model, size) {
  const canvas = el("canvas", { class: "cw-audit-canvas" });
  const card = el("div", {
    class: "cw-audit-card" + (item.error ? " cw-audit-error" : item.correct === false ? " cw-audit-wrong" : ""),
    title: item.title || "",
    tabindex: "0",
    role: "button",
  });
  card.style.width = `${size + 4}px`;
  const open = () => model.send({ event: "open", index: item.index });
  card.addEventListener("click", open);
  card.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      open();
    }
  });
  const ctx = canvas.getContext("2d");
  const paint = (img) => {
    const aspect = img ? img.naturalHeight / Math.max(1, img.naturalWidth) : 1;
    canvas.width = size;
    canvas.height = Math.max(1, Math.round(size * aspect));
    if (img) ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    if (model.get("show_maps")) {
      drawHeat(ctx, decodeLevels(item.map), item.map_h, item.map_w, model.get("opacity"), canvas.width, canvas.height);
    }
    if (item.box && model.get("show_boxes")) {
      const [x0, y0, x1, y1] = item.box; // fractions of the image
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x0 * canvas.width, y0 * canvas.height, (x1 - x0) * canvas.width, (y1 - y0) * canvas.height);
    }
  };
  if (item.thumb) {
    const img = new Image();
    img.onload = () => paint(img);
    img.src = item.thumb;
  } else {
    paint(null);
  }
  card.append(canvas);
  card.append(el("div", { class: "cw-audit-caption", text: item.caption || `#${item.index}` }));
  if (item.value !== undefined && item.value !== null) {
    card.append(el("div", { class: "cw-audit-value", text: `${model.get("sort_by")}: ${formatValue(item.value)}` }));
  }
  return card;
}

function classPanel(model) {
  const wrap = el("div", { class: "cw-audit-classes" });
  const by = model.get("class_by");
  wrap.append(el("div", { class: "cw-audit-heading", text: `Mean map per ${by} class (click to filter)` }));
  const row = el("div", { class: "cw-audit-class-row" });
  for (const c of model.get("class_maps")) {
    const canvas = el("canvas", { class: "cw-audit-class-canvas" });
    canvas.width = 72;
    canvas.height = Math.max(1, Math.round((72 * c.h) / Math.max(1, c.w)));
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    drawHeat(ctx, decodeLevels(c.map), c.h, c.w, 1.0, canvas.width, canvas.height);
    const card = el(
      "div",
      {
        class: "cw-audit-class",
        title: `${c.name}: ${c.count} images`,
        onclick: () => {
          const column = by === "label" ? "label_name" : "predicted_name";
          model.set("filters", [{ column, op: "==", value: c.name }]);
          model.set("page", 0);
          model.save_changes();
        },
      },
      [canvas, el("div", { class: "cw-audit-caption", text: `${c.name} (${c.count})` })],
    );
    row.append(card);
  }
  wrap.append(row);
  return wrap;
}

function controls(model) {
  const columns = model.get("columns").map((c) => c.name);
  const bar = el("div", { class: "cw-audit-controls" });

  const sort = el("select", { "aria-label": "sort by" });
  for (const name of columns) sort.append(el("option", { value: name, text: name }));
  sort.value = model.get("sort_by");
  sort.addEventListener("change", () => {
    model.set("sort_by", sort.value);
    model.set("page", 0);
    model.save_changes();
  });
  const dir = el("button", {
    class: "cw-audit-button",
    text: model.get("descending") ? "↓ desc" : "↑ asc",
    title: "sort direction",
    onclick: () => {
      model.set("descending", !model.get("descending"));
      model.save_changes();
    },
  });

  const fcol = el("select", { "aria-label": "filter column" });
  for (const name of columns) fcol.append(el("option", { value: name, text: name }));
  const fop = el("select", { "aria-label": "filter operator" });
  for (const op of OPS) fop.append(el("option", { value: op, text: op }));
  const fval = el("input", { type: "text", placeholder: "value", "aria-label": "filter value", size: "10" });
  const add = el("button", {
    class: "cw-audit-button",
    text: "+ filter",
    onclick: () => {
      const filters = [...model.get("filters"), { column: fcol.value, op: fop.value, value: fval.value }];
      model.set("filters", filters);
      model.set("page", 0);
      model.save_changes();
    },
  });
  fval.addEventListener("keydown", (e) => {
    if (e.key === "Enter") add.click();
  });

  const opacity = el("input", { type: "range", min: "0", max: "1", step: "0.05", "aria-label": "heatmap opacity" });
  opacity.value = String(model.get("opacity"));
  opacity.addEventListener("input", () => {
    model.set("opacity", parseFloat(opacity.value));
    model.save_changes();
  });
  const maps = el("input", { type: "checkbox", "aria-label": "show heatmaps" });
  maps.checked = model.get("show_maps");
  maps.addEventListener("change", () => {
    model.set("show_maps", maps.checked);
    model.save_changes();
  });

  bar.append(
    el("label", { text: "sort " }, [sort]),
    dir,
    el("span", { class: "cw-audit-sep" }),
    el("label", { text: "filter " }, [fcol]),
    fop,
    fval,
    add,
    el("span", { class: "cw-audit-sep" }),
    el("label", { text: "maps " }, [maps]),
    el("label", { text: " opacity " }, [opacity]),
  );
  return bar;
}

function filterChips(model) {
  const chips = el("div", { class: "cw-audit-chips" });
  model.get("filters").forEach((f, i) => {
    const text = f.op === "is missing" || f.op === "not missing" ? `${f.column} ${f.op}` : `${f.column} ${f.op} ${f.value}`;
    chips.append(
      el("span", { class: "cw-audit-chip" }, [
        text,
        el("button", {
          class: "cw-audit-chip-x",
          text: "×",
          title: "remove this filter",
          onclick: () => {
            const filters = model.get("filters").filter((_, j) => j !== i);
            model.set("filters", filters);
            model.set("page", 0);
            model.save_changes();
          },
        }),
      ]),
    );
  });
  return chips;
}

function pager(model) {
  const total = model.get("total");
  const size = Math.max(1, model.get("page_size"));
  const pages = Math.max(1, Math.ceil(total / size));
  const page = model.get("page");
  const go = (p) => {
    model.set("page", Math.min(pages - 1, Math.max(0, p)));
    model.save_changes();
  };
  return el("div", { class: "cw-audit-pager" }, [
    el("button", { class: "cw-audit-button", text: "‹ prev", onclick: () => go(page - 1) }),
    el("span", { text: ` page ${page + 1} / ${pages} · ${total} of ${model.get("n_rows")} images ` }),
    el("button", { class: "cw-audit-button", text: "next ›", onclick: () => go(page + 1) }),
  ]);
}

function shortcutList(model) {
  const list = model.get("shortcuts");
  const box = el("div", { class: "cw-audit-shortcuts" });
  if (!list.length) return box;
  box.append(el("div", { class: "cw-audit-heading", text: "Possible shortcuts (strongest first)" }));
  for (const s of list) {
    box.append(
      el("div", {
        class: "cw-audit-shortcut",
        text: `${s.class_name} → ${s.region}: ${Math.round(100 * s.share)}% of its map energy vs ${Math.round(100 * s.others)}% for other classes (score ${s.score.toFixed(2)})`,
      }),
    );
  }
  return box;
}

function render({ model, el: root }) {
  root.classList.add("cw-audit");
  // Each part is redrawn only on the traits it shows, so dragging the opacity slider or typing a
  // filter value is never interrupted by a redraw of the control itself.
  const parts = {
    header: [() => [el("div", { class: "cw-audit-title", text: model.get("title") }), shortcutList(model)], ["title", "shortcuts"]],
    classes: [() => [classPanel(model)], ["class_maps", "class_by"]],
    controls: [() => [controls(model)], ["columns", "sort_by", "descending"]],
    chips: [() => [filterChips(model)], ["filters"]],
    message: [
      () => (model.get("message") ? [el("div", { class: "cw-audit-message", role: "status", text: model.get("message") })] : []),
      ["message"],
    ],
    grid: [
      () => {
        const grid = el("div", { class: "cw-audit-grid" });
        for (const item of model.get("items")) grid.append(thumbCard(item, model, model.get("thumb_px")));
        return [grid];
      },
      ["items", "opacity", "show_maps", "show_boxes", "thumb_px"],
    ],
    pager: [() => [pager(model)], ["total", "page", "page_size", "n_rows"]],
  };
  const handlers = [];
  root.replaceChildren();
  for (const [build, traits] of Object.values(parts)) {
    const box = el("div");
    root.append(box);
    const draw = () => box.replaceChildren(...build());
    draw();
    for (const name of traits) {
      model.on(`change:${name}`, draw);
      handlers.push([name, draw]);
    }
  }
  return () => {
    for (const [name, draw] of handlers) model.off(`change:${name}`, draw);
  };
}

export default { render };
