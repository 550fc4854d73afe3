// A tiny hyperscript helper: h("div", { class: "x", onclick: fn }, child, "text").

export function h(tag, attrs, ...children) {
  const el = tag.includes(":")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.split(":")[1])
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (key in el && !tag.includes(":") && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let counter = 0;
/** A document-unique id (for label/aria wiring). */
export function uid(prefix = "cw") {
  counter += 1;
  return `${prefix}-${Math.random().toString(36).slice(2, 7)}-${counter}`;
}

/** Options of a <select>, keeping the element (and its focus) alive. */
export function setOptions(select, options, value) {
  const key = JSON.stringify(options.map((o) => [o.value, o.label, o.group || ""]));
  if (select.dataset.optionsKey !== key) {
    clear(select);
    const groups = new Map();
    for (const o of options) {
      const opt = h("option", { value: o.value }, o.label);
      if (o.title) opt.title = o.title;
      if (o.group) {
        if (!groups.has(o.group)) {
          const g = h("optgroup", { label: o.group });
          groups.set(o.group, g);
          select.append(g);
        }
        groups.get(o.group).append(opt);
      } else {
        select.append(opt);
      }
    }
    select.dataset.optionsKey = key;
  }
  if (value != null) select.value = String(value);
}
