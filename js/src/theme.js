// Light/dark detection. Colours themselves come from --jp-* CSS variables (see widget.css);
// this only tags the root with data-cw-theme so the few non-CSS colours (canvas) can follow.

function parseRgb(color) {
  const m = /rgba?\(([^)]+)\)/.exec(color || "");
  if (!m) return null;
  const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
  return { r, g, b, a };
}

/** Whether the effective background behind el is dark (walks up to the first opaque ancestor). */
export function isDark(el) {
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const c = parseRgb(getComputedStyle(node).backgroundColor);
    if (c && c.a > 0.5) return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b < 128;
  }
  const body = document.body;
  if (body && body.dataset.jpThemeLight) return body.dataset.jpThemeLight === "false";
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
}

/** Keep root.dataset.cwTheme current; returns a disposer. */
export function watchTheme(root, onChange) {
  const update = () => {
    const theme = isDark(root) ? "dark" : "light";
    if (root.dataset.cwTheme !== theme) {
      root.dataset.cwTheme = theme;
      if (onChange) onChange(theme);
    }
  };
  update();
  requestAnimationFrame(update);
  const observer = new MutationObserver(update);
  if (document.body) {
    observer.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name", "class"] });
  }
  const mq = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  if (mq && mq.addEventListener) mq.addEventListener("change", update);
  return () => {
    observer.disconnect();
    if (mq && mq.removeEventListener) mq.removeEventListener("change", update);
  };
}
