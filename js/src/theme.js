// Light or dark, as the host says. The widget's colours are CSS variables keyed on the root's
// data-cw-theme (see widget.css): --jp-* variables where JupyterLab, Notebook 7 and Voilà define them,
// camwidget's own light/dark palettes elsewhere (marimo, VS Code, plain pages).
//
// The host is asked in this order, nearest first, crossing shadow roots (marimo renders widgets in one):
//   1. an explicit signal on an ancestor: JupyterLab/Notebook/Voilà's body[data-jp-theme-light], marimo's
//      and many sites' .dark / .light classes, [data-theme] / [data-color-mode] attributes, VS Code's
//      body.vscode-dark / vscode-light;
//   2. the effective background colour behind the widget;
//   3. the OS preference (prefers-color-scheme).

/** {r, g, b (0..255), a} of a computed colour: rgb()/rgba(), or color(srgb ...) as marimo's are. */
export function parseRgb(color) {
  const rgb = /rgba?\(([^)]+)\)/.exec(color || "");
  const srgb = /color\(srgb ([^)]+)\)/.exec(color || "");
  if (!rgb && !srgb) return null;
  const [r, g, b, a = 1] = (rgb || srgb)[1].split(/[ ,/]+/).filter(Boolean).map(Number);
  const k = rgb ? 1 : 255;
  return { r: r * k, g: g * k, b: b * k, a };
}

/** The element's parent, or the host of the shadow root it sits in. */
function parentOf(node) {
  if (node.parentElement) return node.parentElement;
  const root = node.getRootNode ? node.getRootNode() : null;
  return root && root.host ? root.host : null;
}

function ancestors(el) {
  const out = [];
  for (let node = el; node && node.nodeType === 1; node = parentOf(node)) out.push(node);
  return out;
}

const WORD = /(^|[\s_-])(dark|light)($|[\s_-])/i;

/** "dark" | "light" from an element's own theme markers, or null. */
function explicitTheme(node) {
  const ds = node.dataset || {};
  if (ds.jpThemeLight === "true" || ds.jpThemeLight === "false") return ds.jpThemeLight === "true" ? "light" : "dark";
  const cls = node.classList;
  if (cls) {
    if (cls.contains("vscode-dark") || cls.contains("vscode-high-contrast")) return "dark";
    if (cls.contains("vscode-light") || cls.contains("vscode-high-contrast-light")) return "light";
    if (cls.contains("dark") || cls.contains("dark-theme") || cls.contains("theme-dark")) return "dark";
    if (cls.contains("light") || cls.contains("light-theme") || cls.contains("theme-light")) return "light";
  }
  for (const attr of ["data-theme", "data-color-mode", "data-mode"]) {
    const v = node.getAttribute && node.getAttribute(attr);
    const m = v && WORD.exec(v);
    if (m) return m[2].toLowerCase();
  }
  return null;
}

/** "dark" | "light": what the host around `el` uses (see the module comment for the order). */
export function hostTheme(el) {
  const chain = ancestors(el);
  for (const node of chain) {
    if (node === el) continue;
    const theme = explicitTheme(node);
    if (theme) return theme;
  }
  for (const node of chain) {
    if (node === el) continue;
    const c = parseRgb(getComputedStyle(node).backgroundColor);
    if (c && c.a > 0.5) return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b < 128 ? "dark" : "light";
  }
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/** Whether the host around `el` is dark (kept for callers of the earlier API). */
export function isDark(el) {
  return hostTheme(el) === "dark";
}

const WATCHED = ["class", "style", "data-theme", "data-color-mode", "data-mode", "data-jp-theme-light", "data-jp-theme-name"];

/**
 * Keep root.dataset.cwTheme ("light" | "dark") current as the host's theme changes; `onChange(theme)`
 * is called on each change. Watches the theme markers of every ancestor (shadow hosts included) and
 * the OS preference. Returns a disposer.
 */
export function watchTheme(root, onChange) {
  const update = () => {
    const theme = hostTheme(root);
    if (root.dataset.cwTheme !== theme) {
      root.dataset.cwTheme = theme;
      if (onChange) onChange(theme);
    }
  };
  update();
  // the root is usually attached after render() returns: look again once it is in the page
  let frames = 0;
  const settle = () => {
    update();
    observeAncestors();
    if (!root.isConnected && frames++ < 120) requestAnimationFrame(settle);
  };
  const observer = new MutationObserver(update);
  const observed = new Set();
  function observeAncestors() {
    for (const node of ancestors(root)) {
      if (node === root || observed.has(node)) continue;
      observed.add(node);
      observer.observe(node, { attributes: true, attributeFilter: WATCHED });
    }
  }
  requestAnimationFrame(settle);
  const mq = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  if (mq && mq.addEventListener) mq.addEventListener("change", update);
  return () => {
    observer.disconnect();
    if (mq && mq.removeEventListener) mq.removeEventListener("change", update);
  };
}
