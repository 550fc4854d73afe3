// CamExplorer front end: plain DOM + canvas, rendered by anywidget (or by renderStatic in an exported page).
//
// Traits it reads (see camwidget/widget/explorer.py): the selection, opacity/colormap/frame, methods,
// layers, class_names, choices, labels, thumbnails, about, image, top_classes, annotations, whatif,
// understanding, maps and curves (one entry per slot, each with its encoded map key), and the status
// line. Each part of the view is a function of those traits; a later panel is one more part and its
// `on(...)` wiring here. Parts: the what-if brush (brush.js), what is drawn over the image
// (annotations.js), the true-class toggle (truth.js), the frame scrubber (controls.js).
import { blend, colorize, getLut } from "./colormaps.js";
import { decodeLevels, decodeUint16, perturbedFrame, rgbToRgba, toBytes } from "./buffers.js";
import { detectionBoxes, outlineRegion } from "./annotations.js";
import { deltaText, paintedView, whatIfBrush } from "./brush.js";
import { classPicker, colormapSelect, compareSwitch, extraLayerChoice, frameScrubber, imageStrip, labelledSelect, layerOptions, methodOptions, opacitySlider, smoothingOptions } from "./controls.js";
import { curvePlot } from "./curves.js";
import { h, setOptions } from "./dom.js";
import { decodeKey, maskId, packMask, slotKeys } from "./map_key.js";
import { clearCanvas, panelGrid, putPixels } from "./panels.js";
import { StaticModel } from "./static_model.js";
import { watchTheme } from "./theme.js";
import { trueClassBox } from "./truth.js";

const SELECTION = ["image_index", "method", "layer", "class_index", "compare", "compare_method", "compare_class", "smoothing", "extra_layers"];
const OUTLINE = [255, 214, 0]; // the chosen segmentation class's pixels
const PAINTED = [255, 64, 160]; // the edge of the brush's painted region

function render({ model, el }) {
  const get = (k) => model.get(k);
  const set = (k, v) => {
    model.set(k, v);
    model.save_changes();
  };
  const disposers = [];
  const on = (names, fn) => {
    for (const name of names.split(" ")) {
      model.on(`change:${name}`, fn);
      disposers.push(() => model.off(`change:${name}`, fn));
    }
  };

  // ---- layout --------------------------------------------------------------------------------
  const progressBar = h("div", { class: "cw-progress", role: "progressbar", "aria-label": "Computation progress", "aria-valuemin": "0", "aria-valuemax": "100" }, h("span"));
  const statusText = h("span", { class: "cw-status-text", role: "status", "aria-live": "polite" });
  const cancelBtn = h("button", { type: "button", class: "cw-btn", onclick: () => model.send({ action: "cancel" }) }, "Cancel");
  const retryBtn = h("button", { type: "button", class: "cw-btn cw-btn-primary", onclick: () => model.send({ action: "retry" }) }, "Compute");
  const status = h("div", { class: "cw-status" }, progressBar, statusText, cancelBtn, retryBtn);
  const meta = h("span", { class: "cw-meta" });
  const header = h("header", { class: "cw-header" }, h("span", { class: "cw-title" }, "CAM Explorer"), meta, status);

  const strip = imageStrip((i) => set("image_index", i));
  const method = labelledSelect("Method", (v) => set("method", v), { "data-control": "method" });
  const methodB = labelledSelect("Method B", (v) => set("compare_method", v), { "data-control": "compare_method" });
  const layer = labelledSelect("Layer", (v) => set("layer", v), { "data-control": "layer" });
  // one more layer fused with the chosen one ("*": several, set from Python, kept as they are)
  const extraLayer = labelledSelect("+ Layer", (v) => v !== "*" && set("extra_layers", v ? [v] : []), { "data-control": "extra_layers" });
  const smoothing = labelledSelect("Smoothing", (v) => set("smoothing", v), { "data-control": "smoothing" });
  const classB = labelledSelect("Class B", (v) => set("compare_class", Number(v)), { "data-control": "compare_class" });
  const cmap = colormapSelect((v) => set("colormap", v));
  cmap.select.dataset.control = "colormap";
  const opacity = opacitySlider((v) => set("opacity", v));
  opacity.input.dataset.control = "opacity";
  const compare = compareSwitch((v) => set("compare", v));
  const toolbar = h("div", { class: "cw-toolbar" }, method.wrap, methodB.wrap, layer.wrap, extraLayer.wrap, smoothing.wrap, cmap.wrap, opacity.wrap, compare.wrap, classB.wrap);

  const grid = panelGrid(onHover);
  const picker = classPicker((i) => set("class_index", i));
  const truth = trueClassBox((on) => set("true_class", on));
  const errorBox = h("div", { class: "cw-error", role: "alert", hidden: true });
  const warningBox = h("div", { class: "cw-warning", role: "status", hidden: true });
  const scrubber = frameScrubber((f) => {
    set("frame", f);
    repaintFrame();
  });
  const outlineId = `cw-outline-${Math.random().toString(36).slice(2, 8)}`;
  const outlineBox = h("input", { type: "checkbox", id: outlineId, checked: true, "data-control": "outline", onchange: () => paintImage() });
  const outlineField = h("div", { class: "cw-field cw-check", hidden: true }, outlineBox, h("label", { for: outlineId }, "Outline predicted pixels"));
  const brush = whatIfBrush({
    onMask: (bits) => set("brush_mask", new DataView(bits.buffer, bits.byteOffset, bits.byteLength)),
    onFill: (fill) => set("brush_fill", fill),
    pack: packMask,
    onChange: () => {
      paintImage();
      paintMaps();
      renderCaptions();
      if (brush.active !== wasActive) renderCurves(); // the curves' note: they are the unpainted image's
    },
  });
  const boxes = detectionBoxes((i) => set("class_index", i));
  const tools = h("div", { class: "cw-tools" }, scrubber.wrap, outlineField, brush.el);
  const main = h(
    "div",
    { class: "cw-main" },
    h("div", { class: "cw-center" }, grid.el, tools, warningBox, errorBox),
    h("aside", { class: "cw-side" }, picker.el, truth.el),
  );
  grid.panels.image.frame.append(boxes.el);
  brush.attach(grid.panels.image.frame);

  const frameIns = h("canvas", { class: "cw-canvas", width: 1, height: 1, role: "img", "aria-label": "Insertion: image with the most relevant pixels inserted" });
  const frameDel = h("canvas", { class: "cw-canvas", width: 1, height: 1, role: "img", "aria-label": "Deletion: image with the most relevant pixels deleted" });
  const capIns = h("figcaption", { class: "cw-caption" }, "Insertion");
  const capDel = h("figcaption", { class: "cw-caption" }, "Deletion");
  const frames = h(
    "div",
    { class: "cw-frames" },
    h("figure", { class: "cw-panel cw-panel-frame" }, h("div", { class: "cw-frame" }, frameIns), capIns),
    h("figure", { class: "cw-panel cw-panel-frame" }, h("div", { class: "cw-frame" }, frameDel), capDel),
  );
  const chart = curvePlot(onScrub);
  const curvesBox = h("section", { class: "cw-curves", "aria-label": "Faithfulness curves" }, h("div", { class: "cw-section-title" }, "Insertion / deletion"), h("div", { class: "cw-curves-body" }, chart.el, frames));

  const root = h("div", { class: "cw-root", tabindex: "-1" }, header, strip.el, toolbar, main, curvesBox);
  el.classList.add("camwidget");
  el.append(root);
  disposers.push(watchTheme(root));

  // ---- decoded data --------------------------------------------------------------------------
  // rgb, base, levels, orders hold every frame of a clip (frames > 1); the view slices the current one
  const data = { rgb: null, base: null, shape: [0, 0], frames: 1, levels: [], orders: [], scrub: null, pixels: null };
  const buf = {};
  const rgbaBuf = (name, n) => {
    if (!buf[name] || buf[name].length !== n * 4) buf[name] = new Uint8ClampedArray(n * 4);
    return buf[name];
  };
  let localError = "";

  const slots = () => get("maps") || [];
  const curveSlots = () => get("curves") || [];
  const comparing = () => get("compare") !== "off";

  function emit(kind) {
    const key = (slots()[0] || {}).key;
    const detail = { kind, t: performance.now(), key: key || null, map: key ? decodeKey(key) : null };
    root.dispatchEvent(new CustomEvent("camwidget:paint", { bubbles: true, detail }));
  }

  function guard(fn) {
    try {
      fn();
      return true;
    } catch (err) {
      localError = String(err && err.message ? err.message : err);
      renderStatus();
      return false;
    }
  }

  function decodeImage() {
    const image = get("image") || {};
    const shape = image.shape || [0, 0];
    const frames = image.frames || 1;
    const rgb = toBytes(image.rgb);
    if (rgb.length && rgb.length !== frames * shape[0] * shape[1] * 3) {
      throw new Error(`camwidget: image has ${rgb.length} bytes, expected ${frames > 1 ? `${frames}×` : ""}${shape[0]}×${shape[1]}×3`);
    }
    const base = toBytes(image.base);
    data.rgb = rgb.length ? rgb : null;
    data.base = base.length === rgb.length && base.length ? base : null;
    data.shape = shape;
    data.frames = frames;
    grid.setSize(shape[0] || 1, shape[1] || 1);
    brush.setSize(shape[0], shape[1]);
  }

  function decodeMaps() {
    const shape = data.frames > 1 ? [data.frames, ...data.shape] : data.shape;
    data.levels = slots().map((m) => (m && m.levels != null && toBytes(m.levels).length ? decodeLevels(m.levels, shape) : null));
  }

  function decodeOrders() {
    const n = data.frames * data.shape[0] * data.shape[1];
    data.orders = curveSlots().map((c) => (c && c.order != null && toBytes(c.order).length ? decodeUint16(c.order, n) : null));
  }

  function decodeAnnotations() {
    const a = get("annotations") || {};
    const pixels = toBytes(a.pixels);
    data.pixels = pixels.length === data.shape[0] * data.shape[1] ? pixels : null;
    outlineField.hidden = !data.pixels;
  }

  // ---- the current frame, as the model sees it -------------------------------------------------
  function frameIndex() {
    return data.frames > 1 ? Math.max(0, Math.min(data.frames - 1, Number(get("frame")) || 0)) : 0;
  }
  /** The current frame's slice of an array holding `per` items per pixel for every frame. */
  function slice(arr, per = 1) {
    if (!arr || data.frames <= 1) return arr;
    const n = data.shape[0] * data.shape[1] * per;
    const f = frameIndex();
    return arr.subarray(f * n, (f + 1) * n);
  }
  /** The current frame's pixels, painted where the brush hides them (what the model sees). */
  function viewRgb() {
    const rgb = slice(data.rgb, 3);
    if (!rgb || !brush.active) return rgb;
    const image = get("image") || {};
    const view = buf.view && buf.view.length === rgb.length ? buf.view : (buf.view = new Uint8Array(rgb.length));
    return paintedView(rgb, brush.mask, brush.fill, image.substrate, slice(data.base, 3), view);
  }

  // ---- painting ------------------------------------------------------------------------------
  function paintImage() {
    const [hh, ww] = data.shape;
    const rgb = viewRgb();
    if (!rgb) return clearCanvas(grid.panels.image.canvas);
    const rgba = rgbToRgba(rgb, rgbaBuf("image", hh * ww));
    const c = get("class_index");
    if (data.pixels && outlineBox.checked && c >= 0) outlineRegion((i) => data.pixels[i] === c, ww, hh, rgba, OUTLINE);
    if (brush.active) outlineRegion((i) => brush.mask[i] === 1, ww, hh, rgba, PAINTED);
    putPixels(grid.panels.image.canvas, rgba, ww, hh);
  }

  function repaintFrame() {
    scrubber.set(frameIndex(), data.frames);
    paintImage();
    paintMaps();
    paintFrames();
  }

  function paintMaps() {
    const { panels } = grid;
    const [hh, ww] = data.shape;
    const n = hh * ww;
    const lut = getLut(get("colormap"));
    const alpha = Number(get("opacity"));
    const both = comparing();
    const rgb = viewRgb();
    const overlay = (levels, name) => (rgb ? blend(rgb, levels, lut, alpha, rgbaBuf(name, n)) : colorize(levels, lut, rgbaBuf(name, n)));
    grid.setMode(both);
    grid.setColormap(get("colormap"));
    const [a, b] = data.levels.map((l) => slice(l));
    if (a && a.length === n) {
      if (!both) putPixels(panels.heatmap.canvas, colorize(a, lut, rgbaBuf("heat", n)), ww, hh);
      putPixels(panels.overlay.canvas, overlay(a, "over"), ww, hh);
    } else {
      clearCanvas(panels.heatmap.canvas);
      clearCanvas(panels.overlay.canvas);
    }
    if (both && b && b.length === n) putPixels(panels.compare.canvas, overlay(b, "cmp"), ww, hh);
    else if (both) clearCanvas(panels.compare.canvas);
    emit("maps");
  }

  function methodLabel(name) {
    const m = (get("methods") || []).find((x) => x.name === name);
    return m ? m.label || m.name : name || "";
  }
  function className(i) {
    return (get("class_names") || [])[i] ?? `class ${i}`;
  }
  function selection() {
    const sel = {};
    for (const k of SELECTION) sel[k] = get(k);
    sel.mask = brush.active ? maskId(packMask(brush.mask), brush.fill) : "";
    return sel;
  }

  function renderCaptions() {
    const { panels } = grid;
    const sel = selection();
    const wanted = slotKeys(sel);
    const shown = slots();
    const describe = (m) => {
      if (!m || !m.key) return "no map yet";
      const key = decodeKey(m.key);
      const fused = (key.extra_layers || []).map((name) => ` + ${name}`).join("");
      const smoothed = key.smoothing && key.smoothing !== "none" ? ` · ${key.smoothing}-smoothed` : "";
      return `${methodLabel(key.method)}${fused}${smoothed} · ${m.class_name ?? className(key.target)}`;
    };
    const stale = [0, 1].map((i) => i < wanted.length && (!shown[i] || shown[i].key !== wanted[i]));
    const frameText = data.frames > 1 ? ` · frame ${frameIndex() + 1} of ${data.frames}` : "";
    panels.image.caption.textContent = `Image ${sel.image_index + 1}${frameText}${sel.mask ? " · painted" : ""}`;
    panels.heatmap.caption.textContent = `Heatmap · ${describe(shown[0])}`;
    panels.overlay.caption.textContent = comparing() ? `A · ${describe(shown[0])}` : `Overlay · ${describe(shown[0])}`;
    panels.compare.caption.textContent = `B · ${describe(shown[1])}`;
    // a long caption (fused layers, smoothing) is cut with an ellipsis: hovering shows all of it
    for (const p of [panels.image, panels.heatmap, panels.overlay, panels.compare]) p.caption.title = p.caption.textContent;
    const st = get("status");
    for (const [p, isStale] of [[panels.heatmap, stale[0]], [panels.overlay, stale[0]], [panels.compare, stale[1]]]) {
      p.el.classList.toggle("cw-stale", isStale);
      p.badge.hidden = !isStale;
      p.badge.textContent = st === "running" ? "computing…" : st === "cancelled" ? "cancelled" : "waiting…";
    }
    root.dataset.stale = String(stale[0] || stale[1]);
    // why a shown map carries no information (all zero, numerical noise), as the engine diagnosed it
    const notes = shown.slice(0, comparing() ? 2 : 1).flatMap((m, i) => ((m && m.warnings) || []).map((w) => (comparing() ? `${"AB"[i]}: ${w}` : w)));
    warningBox.hidden = !notes.length;
    warningBox.textContent = notes.join("\n");
  }

  function renderControls() {
    const sel = selection();
    const choices = get("choices") || {};
    picker.setKind(choices);
    compare.setKind(choices);
    setOptions(method.select, methodOptions(get("methods")), sel.method);
    setOptions(methodB.select, methodOptions(get("methods")), sel.compare_method);
    setOptions(layer.select, layerOptions(get("layers")), sel.layer);
    const shown = sel.compare === "method" ? [sel.method, sel.compare_method] : [sel.method];
    const methodInfo = new Map((get("methods") || []).map((m) => [m.name, m]));
    const extra = extraLayerChoice(get("layers"), sel.layer, sel.extra_layers);
    setOptions(extraLayer.select, extra.options, extra.value);
    // methods that read every layer themselves (FullGrad) take no further layer
    extraLayer.wrap.hidden = shown.some((name) => (methodInfo.get(name) || {}).layers === false);
    setOptions(smoothing.select, smoothingOptions(get("methods"), shown, choices), sel.smoothing || "none");
    const topk = get("top_classes") || [];
    const first = slots()[0] || {};
    const selProb = first.key && decodeKey(first.key).target === sel.class_index ? first.class_prob : undefined;
    const whatif = get("whatif") || {};
    const selBefore = whatif.mask && whatif.index === sel.class_index ? whatif.before : undefined; // under the brush
    picker.update(get("class_names") || [], topk, sel.class_index, selProb, selBefore);
    const bOptions = topk.map((t) => ({ value: String(t.index), label: `${t.name} (${(t.prob * 100).toFixed(1)}%)` }));
    if (sel.compare_class >= 0 && !topk.some((t) => t.index === sel.compare_class)) {
      bOptions.push({ value: String(sel.compare_class), label: className(sel.compare_class) });
    }
    setOptions(classB.select, bOptions, sel.compare_class);
    methodB.wrap.hidden = sel.compare !== "method";
    classB.wrap.hidden = sel.compare !== "class";
    compare.set(sel.compare);
    cmap.set(get("colormap"));
    opacity.set(get("opacity"));
    const thumbs = get("thumbnails") || {};
    const hadFocus = strip.el.contains(document.activeElement);
    strip.update(toBytes(thumbs.rgb), thumbs.size || 0, thumbs.count || 0, sel.image_index);
    if (hadFocus) strip.focusCurrent();
    const about = get("about") || {};
    meta.textContent = [about.model, about.device].filter(Boolean).join(" · ");
    scrubber.set(frameIndex(), data.frames);
    const a = get("annotations") || {};
    boxes.update(a.image === sel.image_index ? a.boxes : [], data.shape, sel.class_index);
    renderTruth();
  }

  function renderTruth() {
    const index = get("image_index");
    const label = (get("labels") || [])[index] ?? -1;
    const top = get("top_classes") || [];
    const whatif = get("whatif") || {};
    // the prediction is the unpainted image's: under the brush the list shows the painted image's order
    const predicted = whatif.mask ? -1 : top.length ? top[0].index : -1;
    truth.update(label, predicted, get("class_names") || [], get("true_class"), get("understanding"));
  }

  function renderWhatIf() {
    const whatif = get("whatif") || {};
    brush.setDelta(brush.active ? deltaText(whatif) : "", whatif);
  }

  function renderStatus() {
    const st = get("status");
    const p = Number(get("progress"));
    const running = st === "running";
    status.dataset.state = st;
    progressBar.hidden = !running;
    progressBar.classList.toggle("cw-indeterminate", running && !(p >= 0));
    progressBar.firstChild.style.width = p >= 0 ? `${Math.round(p * 100)}%` : "30%";
    if (p >= 0) progressBar.setAttribute("aria-valuenow", String(Math.round(p * 100)));
    else progressBar.removeAttribute("aria-valuenow");
    statusText.textContent = get("message") || (running ? "Computing…" : "");
    cancelBtn.hidden = !running;
    retryBtn.hidden = !(st === "cancelled" || st === "error");
    retryBtn.textContent = st === "error" ? "Retry" : "Compute";
    const err = localError || get("error");
    errorBox.hidden = !err;
    errorBox.textContent = err ? `⚠ ${err}` : "";
    root.dataset.status = st;
  }

  let wasActive = false;
  function renderCurves() {
    wasActive = brush.active;
    const [a, b] = curveSlots();
    const series = [];
    if (a && a.fractions) series.push({ id: "a", data: a });
    if (comparing() && b && b.fractions) series.push({ id: "b", data: b });
    const painted = brush.active && a && a.fractions ? "Curves of the unpainted image (the brush changes the map, not these)." : "";
    chart.update(series, get("curves_status") || painted, (a && a.score) || (get("choices") || {}).curve_label);
    root.dataset.curves = a && a.fractions ? "ready" : "none";
    paintFrames();
    emit("curves");
  }

  function paintFrames() {
    const curves = curveSlots()[0] || {};
    const [hh, ww] = data.shape;
    const xs = curves.fractions || [];
    const order = slice(data.orders[0]);
    const rgb = slice(data.rgb, 3);
    frames.hidden = !(order && rgb && xs.length);
    if (frames.hidden) return;
    let i = data.scrub;
    if (i == null || i >= xs.length) i = Math.min(xs.length - 1, Math.round((xs.length - 1) * 0.2));
    const image = get("image") || {};
    const substrate = image.substrate || [0, 0, 0];
    const n = hh * ww;
    putPixels(frameIns, perturbedFrame(rgb, order, i, "insertion", substrate, rgbaBuf("fins", n), slice(data.base, 3)), ww, hh);
    putPixels(frameDel, perturbedFrame(rgb, order, i, "deletion", substrate, rgbaBuf("fdel", n)), ww, hh);
    const share = `${Math.round(xs[i] * 100)}%`;
    const ins = curves.insertion ? curves.insertion[i] : NaN;
    const del = curves.deletion ? curves.deletion[i] : NaN;
    const what = (get("choices") || {}).kind === "classes" || !(get("choices") || {}).kind ? "p" : "score";
    capIns.textContent = `Insertion · ${share} shown · ${what}=${Number.isFinite(ins) ? ins.toFixed(3) : "–"}`;
    capDel.textContent = `Deletion · ${share} removed · ${what}=${Number.isFinite(del) ? del.toFixed(3) : "–"}`;
    frames.dataset.step = String(i);
  }

  function onScrub(i) {
    data.scrub = i;
    paintFrames();
  }

  function onHover(x, y) {
    grid.setCross(x, y);
    if (x == null) {
      grid.readout.textContent = "\u00a0";
      return;
    }
    const i = y * data.shape[1] + x;
    const [a, b] = data.levels.map((l) => slice(l));
    const parts = [`x ${x}, y ${y}`];
    if (a) parts.push(`relevance${comparing() ? " A" : ""} ${(a[i] / 255).toFixed(2)}`);
    if (comparing() && b) parts.push(`B ${(b[i] / 255).toFixed(2)}`);
    grid.readout.textContent = parts.join(" · ");
  }

  // ---- wiring --------------------------------------------------------------------------------
  guard(() => {
    decodeImage();
    brush.sync(toBytes(get("brush_mask")), get("brush_fill"));
    decodeMaps();
    decodeOrders();
    decodeAnnotations();
    localError = "";
    renderControls();
    renderStatus();
    renderWhatIf();
    paintImage();
    paintMaps();
    renderCaptions();
    renderCurves();
  });

  on("image", () =>
    guard(() => {
      decodeImage();
      decodeMaps();
      decodeOrders();
      decodeAnnotations();
      renderControls();
      paintImage();
      paintMaps();
      paintFrames();
    }),
  );
  on("annotations", () =>
    guard(() => {
      decodeAnnotations();
      renderControls();
      paintImage();
    }),
  );
  on("brush_mask brush_fill", () =>
    guard(() => {
      brush.sync(toBytes(get("brush_mask")), get("brush_fill"));
      paintImage();
      paintMaps();
      renderCaptions();
      renderWhatIf();
    }),
  );
  on("whatif", () =>
    guard(() => {
      renderWhatIf();
      renderControls();
    }),
  );
  on("frame", () => guard(repaintFrame));
  on("labels true_class understanding choices", () => guard(renderControls));
  on("maps", () =>
    guard(() => {
      decodeMaps();
      localError = "";
      paintMaps();
      renderCaptions();
      renderControls();
      renderStatus();
    }),
  );
  on("colormap opacity", () =>
    guard(() => {
      cmap.set(get("colormap"));
      opacity.set(get("opacity"));
      paintMaps();
    }),
  );
  on("compare", () =>
    guard(() => {
      renderControls();
      paintMaps();
      renderCaptions();
      renderCurves();
    }),
  );
  on("method layer class_index image_index compare_method compare_class smoothing extra_layers methods layers top_classes class_names thumbnails about", () =>
    guard(() => {
      renderControls();
      renderCaptions();
    }),
  );
  on("class_index", () => guard(() => data.pixels && paintImage()));
  on("status progress message error", () => {
    renderStatus();
    renderCaptions();
  });
  on("curves curves_status", () =>
    guard(() => {
      decodeOrders();
      renderCurves();
    }),
  );

  // Tell the kernel a view exists (and, on dispose, that it is gone): with no view left the kernel
  // stops its worker and drops its caches.
  model.send({ action: "view-open" });
  return () => {
    for (const d of disposers) d();
    root.remove();
    model.send({ action: "view-closed" });
  };
}

/**
 * Render a CamExplorer saved by camwidget.export_html, with no kernel: `saved` holds the traits and
 * every map and curve the explorer had computed; choosing one of those redraws it, anything else says
 * it is not in the export.
 */
export function renderStatic(el, saved) {
  const model = new StaticModel(saved);
  return render({ model, el });
}

export default { render };
