// CamExplorer front end: plain DOM + canvas, rendered by anywidget.
import { blend, colorize, getLut } from "./colormaps.js";
import { decodeLevels, decodeUint16, perturbedFrame, rgbToRgba, toBytes } from "./buffers.js";
import { classPicker, colormapSelect, compareSwitch, imageStrip, labelledSelect, layerOptions, methodOptions, opacitySlider } from "./controls.js";
import { curvePlot } from "./curves.js";
import { h, setOptions } from "./dom.js";
import { clearCanvas, panelGrid, putPixels } from "./panels.js";
import { watchTheme } from "./theme.js";

const SELECTION = ["image_index", "method", "layer", "class_index", "compare", "compare_method", "compare_class"];

function sameKey(info, sel) {
  return (
    !!info &&
    info.method === sel.method &&
    info.layer === sel.layer &&
    info.class_index === sel.class_index &&
    info.image_index === sel.image_index
  );
}

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
  const classB = labelledSelect("Class B", (v) => set("compare_class", Number(v)), { "data-control": "compare_class" });
  const cmap = colormapSelect((v) => set("colormap", v));
  cmap.select.dataset.control = "colormap";
  const opacity = opacitySlider((v) => set("opacity", v));
  opacity.input.dataset.control = "opacity";
  const compare = compareSwitch((v) => set("compare", v));
  const toolbar = h("div", { class: "cw-toolbar" }, method.wrap, methodB.wrap, layer.wrap, cmap.wrap, opacity.wrap, compare.wrap, classB.wrap);

  const grid = panelGrid(onHover);
  const picker = classPicker((i) => set("class_index", i));
  const errorBox = h("div", { class: "cw-error", role: "alert", hidden: true });
  const main = h("div", { class: "cw-main" }, h("div", { class: "cw-center" }, grid.el, errorBox), h("aside", { class: "cw-side" }, picker.el));

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
  const data = { rgb: null, shape: [0, 0], a: null, b: null, orderA: null, orderB: null, scrub: null };
  const buf = {};
  const rgbaBuf = (name, n) => {
    if (!buf[name] || buf[name].length !== n * 4) buf[name] = new Uint8ClampedArray(n * 4);
    return buf[name];
  };
  let localError = "";

  function emit(kind) {
    root.dispatchEvent(new CustomEvent("camwidget:paint", { bubbles: true, detail: { kind, t: performance.now(), info: get("heatmap_info") } }));
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
    const shape = get("image_shape") || [0, 0];
    const bytes = toBytes(get("image"));
    if (bytes.length && bytes.length !== shape[0] * shape[1] * 3) {
      throw new Error(`camwidget: image has ${bytes.length} bytes, expected ${shape[0]}×${shape[1]}×3`);
    }
    data.rgb = bytes.length ? bytes : null;
    data.shape = shape;
    grid.setSize(shape[0] || 1, shape[1] || 1);
  }

  function decodeMap(which) {
    const name = which === "a" ? "heatmap" : "heatmap2";
    const shape = get("heatmap_shape") || [0, 0];
    const bytes = toBytes(get(name));
    data[which] = bytes.length ? decodeLevels(bytes, shape, get("heatmap_dtype") || "uint8") : null;
  }

  function decodeBase() {
    const bytes = toBytes(get("insertion_base"));
    data.base = bytes.length ? bytes : null;
  }

  function decodeOrder(which) {
    const name = which === "a" ? "curve_order" : "curve_order2";
    const [hh, ww] = data.shape;
    const bytes = toBytes(get(name));
    data[which === "a" ? "orderA" : "orderB"] = bytes.length ? decodeUint16(bytes, hh * ww) : null;
  }

  // ---- painting ------------------------------------------------------------------------------
  function paintImage() {
    const { panels } = grid;
    const [hh, ww] = data.shape;
    if (!data.rgb) return clearCanvas(panels.image.canvas);
    putPixels(panels.image.canvas, rgbToRgba(data.rgb, rgbaBuf("image", hh * ww)), ww, hh);
  }

  function paintMaps() {
    const { panels } = grid;
    const [hh, ww] = data.shape;
    const n = hh * ww;
    const lut = getLut(get("colormap"));
    const alpha = Number(get("opacity"));
    const comparing = get("compare") !== "off";
    grid.setMode(comparing);
    grid.setColormap(get("colormap"));
    if (data.a && data.a.length === n) {
      if (!comparing) putPixels(panels.heatmap.canvas, colorize(data.a, lut, rgbaBuf("heat", n)), ww, hh);
      putPixels(panels.overlay.canvas, data.rgb ? blend(data.rgb, data.a, lut, alpha, rgbaBuf("over", n)) : colorize(data.a, lut, rgbaBuf("over", n)), ww, hh);
    } else {
      clearCanvas(panels.heatmap.canvas);
      clearCanvas(panels.overlay.canvas);
    }
    if (comparing && data.b && data.b.length === n) {
      putPixels(panels.compare.canvas, data.rgb ? blend(data.rgb, data.b, lut, alpha, rgbaBuf("cmp", n)) : colorize(data.b, lut, rgbaBuf("cmp", n)), ww, hh);
    } else if (comparing) {
      clearCanvas(panels.compare.canvas);
    }
    emit("maps");
  }

  function methodLabel(name) {
    const m = (get("methods") || []).find((x) => x.name === name);
    return m ? m.label || m.name : name || "";
  }
  function className(i) {
    const names = get("class_names") || [];
    return names[i] ?? `class ${i}`;
  }

  function selection() {
    const sel = {};
    for (const k of SELECTION) sel[k] = get(k);
    return sel;
  }

  function renderCaptions() {
    const { panels } = grid;
    const sel = selection();
    const infoA = get("heatmap_info") || {};
    const infoB = get("heatmap2_info") || {};
    const comparing = sel.compare !== "off";
    const wantB = { ...sel, method: sel.compare === "method" ? sel.compare_method : sel.method, class_index: sel.compare === "class" ? sel.compare_class : sel.class_index };
    const staleA = !sameKey(infoA, sel);
    const staleB = comparing && !sameKey(infoB, wantB);
    const describe = (info) => (info && info.method ? `${methodLabel(info.method)} · ${className(info.class_index)}` : "no map yet");
    panels.image.caption.textContent = `Image ${sel.image_index + 1}`;
    panels.heatmap.caption.textContent = `Heatmap · ${describe(infoA)}`;
    panels.overlay.caption.textContent = comparing ? `A · ${describe(infoA)}` : `Overlay · ${describe(infoA)}`;
    panels.compare.caption.textContent = `B · ${describe(infoB)}`;
    for (const [p, stale] of [[panels.heatmap, staleA], [panels.overlay, staleA], [panels.compare, staleB]]) {
      p.el.classList.toggle("cw-stale", stale);
      p.badge.hidden = !stale;
      p.badge.textContent = get("status") === "running" ? "computing…" : get("status") === "cancelled" ? "cancelled" : "waiting…";
    }
    root.dataset.stale = String(staleA || staleB);
  }

  function renderControls() {
    const sel = selection();
    setOptions(method.select, methodOptions(get("methods")), sel.method);
    setOptions(methodB.select, methodOptions(get("methods")), sel.compare_method);
    setOptions(layer.select, layerOptions(get("layers")), sel.layer);
    const topk = get("top_classes") || [];
    const names = get("class_names") || [];
    const infoA = get("heatmap_info") || {};
    const selProb = infoA.class_index === sel.class_index ? infoA.class_prob : undefined;
    picker.update(names, topk, sel.class_index, selProb);
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
    const hadFocus = strip.el.contains(document.activeElement);
    strip.update(toBytes(get("thumbnails")), get("thumb_size") || 0, get("n_images") || 0, sel.image_index);
    if (hadFocus) strip.focusCurrent();
    meta.textContent = [get("model_name"), get("device")].filter(Boolean).join(" · ");
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

  function renderCurves() {
    const a = get("curves") || {};
    const b = get("curves2") || {};
    const series = [];
    const comparing = get("compare") !== "off";
    if (a.fractions) series.push({ id: "a", data: a });
    if (comparing && b.fractions) series.push({ id: "b", data: b });
    chart.update(series, get("curves_status"));
    root.dataset.curves = a.fractions ? "ready" : "none";
    paintFrames();
    emit("curves");
  }

  function paintFrames() {
    const curves = get("curves") || {};
    const [hh, ww] = data.shape;
    const xs = curves.fractions || [];
    const order = data.orderA;
    frames.hidden = !(order && data.rgb && xs.length);
    if (frames.hidden) return;
    let i = data.scrub;
    if (i == null || i >= xs.length) i = Math.min(xs.length - 1, Math.round((xs.length - 1) * 0.2));
    const substrate = get("substrate_rgb") || [0, 0, 0];
    const n = hh * ww;
    const base = data.base && data.base.length === n * 3 ? data.base : null;
    putPixels(frameIns, perturbedFrame(data.rgb, order, i, "insertion", substrate, rgbaBuf("fins", n), base), ww, hh);
    putPixels(frameDel, perturbedFrame(data.rgb, order, i, "deletion", substrate, rgbaBuf("fdel", n)), ww, hh);
    const share = `${Math.round(xs[i] * 100)}%`;
    const ins = curves.insertion ? curves.insertion[i] : NaN;
    const del = curves.deletion ? curves.deletion[i] : NaN;
    capIns.textContent = `Insertion · ${share} shown · p=${Number.isFinite(ins) ? ins.toFixed(3) : "–"}`;
    capDel.textContent = `Deletion · ${share} removed · p=${Number.isFinite(del) ? del.toFixed(3) : "–"}`;
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
    const parts = [`x ${x}, y ${y}`];
    if (data.a) parts.push(`relevance${get("compare") !== "off" ? " A" : ""} ${(data.a[i] / 255).toFixed(2)}`);
    if (get("compare") !== "off" && data.b) parts.push(`B ${(data.b[i] / 255).toFixed(2)}`);
    grid.readout.textContent = parts.join(" · ");
  }

  // ---- wiring --------------------------------------------------------------------------------
  const all = () =>
    guard(() => {
      decodeImage();
      decodeMap("a");
      decodeMap("b");
      decodeOrder("a");
      decodeOrder("b");
      decodeBase();
      localError = "";
      renderControls();
      renderStatus();
      paintImage();
      paintMaps();
      renderCaptions();
      renderCurves();
    });
  all();

  on("image image_shape", () => guard(() => {
    decodeImage();
    decodeOrder("a");
    decodeOrder("b");
    paintImage();
    paintMaps();
    paintFrames();
  }));
  on("heatmap heatmap_shape heatmap_dtype heatmap_info", () => guard(() => {
    decodeMap("a");
    paintMaps();
    renderCaptions();
    renderControls();
  }));
  on("heatmap2 heatmap2_info", () => guard(() => {
    decodeMap("b");
    paintMaps();
    renderCaptions();
  }));
  on("colormap opacity", () => guard(() => {
    cmap.set(get("colormap"));
    opacity.set(get("opacity"));
    paintMaps();
  }));
  on("compare", () => guard(() => {
    renderControls();
    paintMaps();
    renderCaptions();
    renderCurves();
  }));
  on("method layer class_index image_index compare_method compare_class methods layers top_classes class_names thumbnails n_images model_name device", () => guard(() => {
    renderControls();
    renderCaptions();
  }));
  on("status progress message error", () => {
    renderStatus();
    renderCaptions();
  });
  on("curves curves2 curves_status", renderCurves);
  on("curve_order curve_order2 insertion_base", () => guard(() => {
    decodeBase();
    decodeOrder("a");
    decodeOrder("b");
    paintFrames();
  }));

  return () => {
    for (const d of disposers) d();
    root.remove();
  };
}

export default { render };
