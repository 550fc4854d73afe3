// Controls: selects, opacity slider, compare switch, class picker, image strip, frame scrubber.
import { COLORMAPS, cssGradient } from "./colormaps.js";
import { h, clear, setOptions, uid } from "./dom.js";
import { searchClasses, stepIndex } from "./search.js";

/** A labelled <select>. */
export function labelledSelect(label, onChange, extra = {}) {
  const id = uid("cw-sel");
  const select = h("select", { id, class: "cw-select", ...extra, onchange: () => onChange(select.value) });
  const wrap = h("div", { class: "cw-field" }, h("label", { for: id }, label), select);
  return { wrap, select };
}

export function methodOptions(methods) {
  return (methods || []).map((m) => ({
    value: m.name,
    label: m.label || m.name,
    group: m.fast ? "Fast (one pass)" : "Slow (many passes)",
    title: m.fast ? "one forward + backward pass" : "needs many forward passes: computed in the background",
  }));
}

export function layerOptions(layers) {
  return (layers || []).map((l) => ({
    value: l.name,
    label: `${l.name}${l.shape && l.shape.length ? `  ·  ${l.shape.join("×")}` : ""}`,
  }));
}

/**
 * The smoothing select's options: off, test-time augmentation (aug_smooth: six passes; not for a
 * segmentation model's or a detector's choices, which are tied to pixel positions), and eigen
 * (eigen_smooth) only where every shown method forms per-channel terms (the methods trait's `eigen`).
 */
export function smoothingOptions(methods, shown, choices) {
  const byName = new Map((methods || []).map((m) => [m.name, m]));
  const eigen = shown.every((name) => (byName.get(name) || {}).eigen !== false);
  const kind = (choices || {}).kind;
  const options = [{ value: "none", label: "Off" }];
  if (kind !== "segmentation" && kind !== "detections") {
    options.push({ value: "aug", label: "Flips × brightness (6 passes)", title: "aug_smooth: the map averaged over a horizontal flip and pixel values × 0.9, 1, 1.1" });
  }
  if (eigen) options.push({ value: "eigen", label: "Eigen (1st component)", title: "eigen_smooth: the first principal component of the method's weighted activations" });
  return options;
}

/**
 * The "+ Layer" select: none, or one more layer fused with the chosen one (its options are the layers
 * trait, the model's LayerCatalog, less the chosen layer); several further layers set from Python show as
 * one option "*" naming them all. Returns {options, value}.
 */
export function extraLayerChoice(layers, chosen, extra) {
  const others = [...new Set(extra || [])].filter((name) => name !== chosen);
  const options = [{ value: "", label: "none" }, ...layerOptions(layers).filter((o) => o.value !== chosen)];
  if (others.length > 1) options.push({ value: "*", label: others.join(" + ") });
  return { options, value: others.length > 1 ? "*" : others[0] || "" };
}

/** Opacity slider 0..100 %. */
export function opacitySlider(onInput) {
  const id = uid("cw-opacity");
  const out = h("output", { for: id, class: "cw-value" }, "50%");
  const input = h("input", {
    id,
    type: "range",
    min: "0",
    max: "100",
    step: "1",
    class: "cw-range",
    "aria-label": "Heatmap opacity",
    oninput: () => {
      out.textContent = `${input.value}%`;
      onInput(Number(input.value) / 100);
    },
  });
  const wrap = h("div", { class: "cw-field cw-field-range" }, h("label", { for: id }, "Opacity"), input, out);
  return {
    wrap,
    input,
    set(value) {
      const v = Math.round(Math.max(0, Math.min(1, Number(value) || 0)) * 100);
      if (Number(input.value) !== v) input.value = String(v);
      out.textContent = `${v}%`;
    },
  };
}

/** Colormap select with a swatch per option (the select itself stays native for accessibility). */
export function colormapSelect(onChange) {
  const { wrap, select } = labelledSelect("Colormap", onChange);
  setOptions(
    select,
    COLORMAPS.map((c) => ({ value: c, label: c })),
  );
  const swatch = h("span", { class: "cw-swatch", "aria-hidden": "true" });
  wrap.append(swatch);
  return {
    wrap,
    select,
    set(name) {
      select.value = name;
      swatch.style.background = cssGradient(name, 12, "to right");
    },
  };
}

/** Segmented radio group: Off | Methods | Classes. */
export function compareSwitch(onChange) {
  const name = uid("cw-compare");
  const options = [
    ["off", "Single"],
    ["method", "2 methods"],
    ["class", "2 classes"],
  ];
  const inputs = [];
  const group = h(
    "div",
    { class: "cw-segmented", role: "radiogroup", "aria-label": "Compare mode" },
    options.map(([value, label]) => {
      const id = uid("cw-cmp");
      const input = h("input", { type: "radio", name, id, value, onchange: () => onChange(value) });
      inputs.push(input);
      return [input, h("label", { for: id }, label)];
    }),
  );
  const wrap = h("div", { class: "cw-field" }, h("span", { class: "cw-label" }, "Compare"), group);
  return {
    wrap,
    set(value) {
      for (const input of inputs) input.checked = input.value === value;
    },
    /** What the selector lists (the choices trait): "2 labels", "2 detections"; none for one target. */
    setKind(choices) {
      const c = choices || {};
      const noun = c.noun || "class";
      const input = inputs.find((i) => i.value === "class");
      input.disabled = Boolean(c.fixed);
      input.nextSibling.textContent = `2 ${noun === "class" ? "classes" : `${noun}s`}`;
      input.nextSibling.hidden = Boolean(c.fixed);
    },
  };
}

function pct(p) {
  if (!Number.isFinite(p)) return "";
  if (p >= 0.995) return "100%";
  if (p < 0.001) return "<0.1%";
  return `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`;
}

/** A choice's number as the selector shows it: a percentage, or the raw value of a target ("value"). */
export function formatScore(p, score) {
  if (score === "value") return Number.isFinite(p) ? p.toFixed(3) : "";
  return pct(p);
}

/**
 * Class picker: the top-k predictions as a keyboard-navigable listbox with probability bars,
 * plus a type-ahead combobox over all class names.
 */
export function classPicker(onPick) {
  let names = [];
  let topk = [];
  let selected = -1;
  let extra = null; // the selected class when it is not in the top-k: {index, name, prob}
  let suggestions = [];
  let active = -1;
  let score = "probability";
  let plural = "classes";

  const listId = uid("cw-topk");
  const suggId = uid("cw-sugg");
  const searchId = uid("cw-search");
  const list = h("ul", { id: listId, class: "cw-topk", role: "listbox", tabindex: "0", "aria-label": "Predicted classes" });
  const sugg = h("ul", { id: suggId, class: "cw-suggestions", role: "listbox", hidden: true, "aria-label": "Matching classes" });
  const input = h("input", {
    id: searchId,
    class: "cw-search",
    type: "search",
    role: "combobox",
    autocomplete: "off",
    spellcheck: "false",
    "aria-autocomplete": "list",
    "aria-expanded": "false",
    "aria-controls": suggId,
    placeholder: "Search a class…",
  });

  function rows() {
    return extra ? [...topk, extra] : topk;
  }

  function renderList() {
    clear(list);
    const all = rows();
    all.forEach((row, i) => {
      const isExtra = extra && i === all.length - 1;
      const id = `${listId}-${row.index}`;
      const li = h(
        "li",
        {
          id,
          role: "option",
          class: `cw-class${isExtra ? " cw-class-extra" : ""}`,
          "aria-selected": String(row.index === selected),
          dataset: { index: String(row.index) },
          title: `class ${row.index}: ${row.name}`,
          onclick: () => onPick(row.index),
        },
        h("span", { class: "cw-class-rank" }, isExtra ? "•" : String(i + 1)),
        h("span", { class: "cw-class-name" }, row.name),
        h("span", { class: "cw-class-pct" }, formatScore(row.prob, score)),
        row.before != null ? h("span", { class: "cw-class-before", title: "before painting" }, `was ${formatScore(row.before, score)}`) : null,
        score === "value" ? null : h("span", { class: "cw-bar", "aria-hidden": "true" }, h("span", { style: { width: `${Math.max(0, Math.min(1, row.prob || 0)) * 100}%` } })),
      );
      list.append(li);
      if (row.index === selected) list.setAttribute("aria-activedescendant", id);
    });
  }

  list.addEventListener("keydown", (ev) => {
    const all = rows();
    const at = all.findIndex((r) => r.index === selected);
    const next = stepIndex(ev.key, at, all.length);
    if (next !== at && next >= 0) {
      ev.preventDefault();
      onPick(all[next].index);
    }
  });

  function closeSuggestions() {
    sugg.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function renderSuggestions() {
    clear(sugg);
    if (!suggestions.length) {
      if (input.value.trim()) {
        sugg.append(h("li", { class: "cw-empty", role: "presentation" }, `No class matches “${input.value.trim()}”`));
        sugg.hidden = false;
        input.setAttribute("aria-expanded", "true");
      } else closeSuggestions();
      return;
    }
    suggestions.forEach((index, i) => {
      const id = `${suggId}-${i}`;
      sugg.append(
        h(
          "li",
          {
            id,
            role: "option",
            class: "cw-suggestion",
            "aria-selected": String(i === active),
            onmousedown: (ev) => {
              ev.preventDefault();
              pick(index);
            },
          },
          h("span", { class: "cw-class-name" }, names[index]),
          h("span", { class: "cw-class-idx" }, `#${index}`),
        ),
      );
    });
    sugg.hidden = false;
    input.setAttribute("aria-expanded", "true");
    if (active >= 0) input.setAttribute("aria-activedescendant", `${suggId}-${active}`);
    else input.removeAttribute("aria-activedescendant");
  }

  function pick(index) {
    input.value = "";
    suggestions = [];
    closeSuggestions();
    onPick(index);
  }

  input.addEventListener("input", () => {
    suggestions = searchClasses(names, input.value, 8);
    active = suggestions.length ? 0 : -1;
    renderSuggestions();
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!suggestions.length) return;
      ev.preventDefault();
      active = stepIndex(ev.key, active, suggestions.length);
      renderSuggestions();
    } else if (ev.key === "Enter") {
      if (active >= 0 && suggestions[active] != null) {
        ev.preventDefault();
        pick(suggestions[active]);
      }
    } else if (ev.key === "Escape") {
      input.value = "";
      suggestions = [];
      closeSuggestions();
    }
  });
  input.addEventListener("blur", () => setTimeout(closeSuggestions, 100));

  const headingLabel = h("label", { for: searchId, class: "cw-label" }, "Class");
  const heading = h("div", { class: "cw-side-head" }, headingLabel);
  const combo = h("div", { class: "cw-combo" }, input, sugg);
  const hint = h("p", { class: "cw-hint" }, "↑ ↓ step through the predictions");
  const el = h("section", { class: "cw-classes", "aria-label": "Target class" }, heading, combo, list, hint);

  return {
    el,
    list,
    input,
    /** The selector's kind (the choices trait): its heading, its numbers, whether names can be searched. */
    setKind(choices) {
      const c = choices || {};
      const noun = c.noun || "class";
      score = c.score || "probability";
      plural = noun === "class" ? "classes" : `${noun}s`;
      headingLabel.textContent = noun === "target" ? "Target" : `${noun[0].toUpperCase()}${noun.slice(1)}`;
      el.setAttribute("aria-label", `Target ${noun}`);
      list.setAttribute("aria-label", noun === "detection" ? "Detections" : noun === "target" ? "Target" : `Predicted ${noun === "class" ? "classes" : `${noun}s`}`);
      combo.hidden = c.searchable === false;
      hint.textContent = c.fixed ? `${score === "value" ? "its value" : score} on this image` : `↑ ↓ step through the ${noun === "class" ? "predictions" : `${noun}s`}`;
      el.dataset.kind = c.kind || "classes";
    },
    /** selectedBefore: the selected class's number before painting (the what-if brush), if any. */
    update(newNames, newTopk, newSelected, selectedProb, selectedBefore) {
      names = newNames || [];
      topk = newTopk || [];
      selected = newSelected;
      input.placeholder = names.length ? `Search ${names.length} ${plural}…` : "Search a class…";
      extra = null;
      if (selected >= 0 && !topk.some((r) => r.index === selected)) {
        extra = { index: selected, name: names[selected] ?? `class ${selected}`, prob: selectedProb, before: selectedBefore };
      }
      renderList();
    },
  };
}

/** Frame scrubber for clips and volumes: a slider over the frames (hidden for still images). */
export function frameScrubber(onInput) {
  const id = uid("cw-frame");
  const out = h("output", { for: id, class: "cw-value" }, "");
  const input = h("input", {
    id,
    type: "range",
    min: "0",
    max: "0",
    step: "1",
    value: "0",
    class: "cw-range",
    "data-control": "frame",
    "aria-label": "Frame",
    oninput: () => onInput(Number(input.value)),
  });
  const wrap = h("div", { class: "cw-field cw-field-range cw-scrubber", hidden: true }, h("label", { for: id }, "Frame"), input, out);
  return {
    wrap,
    input,
    set(frame, frames) {
      wrap.hidden = !(frames > 1);
      input.max = String(Math.max(0, frames - 1));
      if (Number(input.value) !== frame) input.value = String(frame);
      out.textContent = `${frame + 1} / ${frames}`;
    },
  };
}

/** Thumbnail strip for several images (a radio group driven by the arrow keys). */
export function imageStrip(onPick) {
  const el = h("div", { class: "cw-strip", role: "radiogroup", "aria-label": "Images" });
  let count = 0;
  let current = 0;
  let key = "";
  el.addEventListener("keydown", (ev) => {
    const next = stepIndex(ev.key, current, count);
    if (next !== current && next >= 0) {
      ev.preventDefault();
      onPick(next);
    }
  });
  return {
    el,
    update(thumbs, size, n, index) {
      const newKey = `${n}:${size}:${thumbs.length}`;
      count = n;
      current = index;
      el.hidden = n <= 1;
      if (newKey !== key) {
        key = newKey;
        clear(el);
        for (let i = 0; i < n; i++) {
          const canvas = h("canvas", { width: size, height: size, class: "cw-thumb-canvas" });
          const ctx = canvas.getContext("2d");
          const start = i * size * size * 3;
          const chunk = thumbs.subarray(start, start + size * size * 3);
          if (ctx && chunk.length === size * size * 3) {
            const img = ctx.createImageData(size, size);
            for (let p = 0, q = 0; p < chunk.length; p += 3, q += 4) {
              img.data[q] = chunk[p];
              img.data[q + 1] = chunk[p + 1];
              img.data[q + 2] = chunk[p + 2];
              img.data[q + 3] = 255;
            }
            ctx.putImageData(img, 0, 0);
          }
          el.append(
            h("button", { type: "button", class: "cw-thumb", role: "radio", "aria-label": `Image ${i + 1} of ${n}`, dataset: { index: String(i) }, onclick: () => onPick(i) }, canvas, h("span", {}, String(i + 1))),
          );
        }
      }
      for (const btn of el.children) {
        const on = Number(btn.dataset.index) === index;
        btn.setAttribute("aria-checked", String(on));
        btn.tabIndex = on ? 0 : -1;
      }
    },
    focusCurrent() {
      const btn = el.querySelector('[aria-checked="true"]');
      if (btn) btn.focus();
    },
  };
}
