"""What every host test checks on a CamExplorer in a page, whatever the host (JupyterLab, Notebook 7, Voilà,
marimo): it renders, its controls (method, layer, class, smoothing) redraw the heatmap, the what-if brush
over the cat's face makes tiger cat drop, it takes the host's theme, a narrow container keeps its panels
wide enough, and how fast the first map and a cached switch appear.

Everything goes through the ``.cw-root`` locator, so it works inside marimo's shadow roots too. Timings are
read in the page from the widget's ``camwidget:paint`` events (its ``detail.map`` says which map was
drawn), except the first map, which is the first non-blank heatmap canvas after the cell or page starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

# A hash of a canvas's pixels (inside the root, so shadow roots do not matter).
HASH = """(root, sel) => {
  const c = root.querySelector(sel);
  if (!c || c.width < 2) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  return h;
}"""

# Change a control and resolve with the ms until the widget painted a map whose key matches `want`.
TIMED = """async (root, { sel, value, want, kind, timeout }) => {
  const t0 = performance.now();
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no repaint within ' + timeout + ' ms')), timeout);
    root.addEventListener('camwidget:paint', function f(ev) {
      const map = ev.detail.map || ev.detail.info || {};
      if (ev.detail.kind === kind && Object.entries(want).every(([k, v]) => map[k] === v)) {
        clearTimeout(timer);
        root.removeEventListener('camwidget:paint', f);
        resolve(ev.detail.t - t0);
      }
    });
  });
  const el = root.querySelector(sel);
  if (el.tagName === 'LI') el.click();
  else {
    el.value = String(value);
    el.dispatchEvent(new Event(el.type === 'range' ? 'input' : 'change', { bubbles: true }));
  }
  return await done;
}"""

# Resolve when the what-if line is settled: painted (its "after" number shown) or restored (hidden).
SETTLED = """async (r, { painted, timeout }) => {
  const t0 = performance.now();
  const delta = r.querySelector('.cw-whatif-delta');
  const done = () => r.dataset.stale === 'false' && r.dataset.status === 'ready' &&
    (painted ? delta.dataset.after !== '' && !delta.hidden : delta.hidden);
  while (!done()) {
    if (performance.now() - t0 > timeout) throw new Error('not settled: ' + JSON.stringify(r.dataset));
    await new Promise((f) => setTimeout(f, 25));
  }
  return { before: delta.dataset.before, after: delta.dataset.after, text: delta.textContent };
}"""

# Keep the heatmap's pixels under window[name] / the share of its pixels that changed since then.
SNAP = """(r, name) => {
  const c = r.querySelector('.cw-panel-heatmap canvas');
  window[name] = c.getContext('2d').getImageData(0, 0, c.width, c.height).data.slice();
}"""
SNAP_DIFF = """(r, name) => {
  const c = r.querySelector('.cw-panel-heatmap canvas');
  const a = window[name], b = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  if (a.length !== b.length) return 1;
  let n = 0;
  for (let i = 0; i < a.length; i += 4) {
    if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 30) n++;
  }
  return n / (a.length / 4);
}"""


# Change the <select> `sel` to `value`; resolve with the ms until a map whose key has the fields `want`
# (compared as JSON) is painted and the widget is settled on it.
CHANGE_UNTIL = """async (r, { sel, value, want, timeout }) => {
  const t0 = performance.now();
  const json = JSON.stringify;
  const same = (map) => map && Object.entries(want).every(([k, v]) => json(map[k]) === json(v));
  let painted = null;
  r.addEventListener('camwidget:paint', function f(ev) {
    if (ev.detail.kind === 'maps' && same(ev.detail.map)) {
      painted = ev.detail.t;
      r.removeEventListener('camwidget:paint', f);
    }
  });
  const el = r.querySelector(sel);
  el.value = value;
  el.dispatchEvent(new Event('change', { bubbles: true }));
  while (painted === null || r.dataset.stale !== 'false' || r.dataset.status !== 'ready') {
    if (performance.now() - t0 > timeout) throw new Error('no map ' + json(want) + json(r.dataset));
    await new Promise((f) => setTimeout(f, 25));
  }
  return painted - t0;
}"""


WINDOW = {"width": 1280, "height": 1500}
HEAT = ".cw-panel-heatmap canvas"
OVERLAY = ".cw-panel-overlay canvas"


def canvas_hash(root: Any, sel: str = HEAT) -> int | None:
    return root.evaluate(HASH, sel)


def timed(root: Any, sel: str, value: Any, want: dict, kind: str = "maps", timeout: int = 120_000) -> float:
    """ms from changing the control ``sel`` to ``value`` until a map matching ``want`` is painted."""
    return root.evaluate(TIMED, {"sel": sel, "value": value, "want": want, "kind": kind, "timeout": timeout})


def wait_first_map(page: Any, t0: float, timeout: float = 240) -> float:
    """Seconds from ``t0`` (time.perf_counter) until a CamExplorer shows a heatmap (a drawn, non-blank
    canvas) on ``page``."""
    root = page.locator(".cw-root").first
    root.wait_for(timeout=timeout * 1000)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if root.evaluate(
            """(r) => { const c = r.querySelector('.cw-panel-heatmap canvas');
              if (!c || c.width < 2) return false;
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              for (let i = 3; i < d.length; i += 4) if (d[i]) return true;
              return false; }"""
        ):
            return time.perf_counter() - t0
        time.sleep(0.01)
    raise AssertionError("no heatmap was drawn")


def wait_ready(root: Any, timeout: int = 240_000) -> None:
    """Until the explorer is idle with its curves drawn."""
    root.evaluate(
        """async (r, timeout) => {
          const t0 = performance.now();
          const d = r.dataset;
          const ready = () => d.curves === 'ready' && d.status === 'ready' && d.stale === 'false';
          while (!ready()) {
            if (performance.now() - t0 > timeout) throw new Error('not ready: ' + JSON.stringify(r.dataset));
            await new Promise((f) => setTimeout(f, 50));
          }
        }""",
        timeout,
    )


def exercise(root: Any) -> dict[str, float]:
    """Change method, layer and class through the widget's own controls; each must redraw the heatmap.
    Returns the timings (ms): the uncached and cached method switch, a layer, a class."""
    timings: dict[str, float] = {}
    assert root.evaluate("(r) => [r.querySelector('.cw-panel-heatmap canvas').width]") == [224]
    assert root.locator(".cw-error").is_hidden()
    h0 = canvas_hash(root)
    curve0 = root.locator(".cw-line.cw-ins").first.get_attribute("d")
    # Not Grad-CAM: on SqueezeNet's last layer its gradients are spatially constant (= HiResCAM's map).
    timings["method_uncached_ms"] = timed(
        root, "select[data-control=method]", "eigencam", {"method": "eigencam"}
    )
    assert canvas_hash(root) != h0, "heatmap pixels unchanged after a method change"
    wait_ready(root)
    assert root.locator(".cw-line.cw-ins").first.get_attribute("d") != curve0, "curves not redrawn"
    timings["method_cached_ms"] = timed(
        root, "select[data-control=method]", "hirescam", {"method": "hirescam"}
    )
    assert canvas_hash(root) == h0

    layers = root.evaluate(
        "(r) => [...r.querySelectorAll('select[data-control=layer] option')].map((o) => o.value)"
    )
    current = root.evaluate("(r) => r.querySelector('select[data-control=layer]').value")
    # an earlier block (later ones on SqueezeNet are class-score maps giving the same HiResCAM map)
    other = [n for n in layers[: layers.index(current)] if "activation" not in n][-1]
    timings["layer_uncached_ms"] = timed(root, "select[data-control=layer]", other, {"layer": other})
    assert canvas_hash(root) != h0, "heatmap pixels unchanged after a layer change"
    timed(root, "select[data-control=layer]", current, {"layer": current})
    assert canvas_hash(root) == h0

    second = int(root.locator(".cw-class").nth(1).get_attribute("data-index"))
    timings["class_uncached_ms"] = timed(root, ".cw-class:nth-child(2)", None, {"target": second})
    assert canvas_hash(root) != h0, "heatmap pixels unchanged after a class change"
    root.locator(".cw-class").first.click()
    wait_ready(root)
    assert canvas_hash(root) == h0

    # the Smoothing select: flips x brightness redraws the map; Off brings the first one back from the cache
    timings["smoothing_aug_ms"] = change_until(root, "smoothing", "aug", {"smoothing": "aug"})
    assert canvas_hash(root) != h0, "heatmap pixels unchanged after aug smoothing"
    change_until(root, "smoothing", "none", {"smoothing": "none"})
    assert canvas_hash(root) == h0

    timings["brush_stroke_to_settled_ms"] = brush_the_face(root)

    o0 = canvas_hash(root, OVERLAY)
    timings["colormap_ms"] = timed(root, "select[data-control=colormap]", "jet", {})
    assert canvas_hash(root, OVERLAY) != o0
    timed(root, "select[data-control=colormap]", "viridis", {})
    return timings


def theme_of(root: Any) -> dict[str, str]:
    """The widget's theme and its computed background colour."""
    return root.evaluate(
        "(r) => ({ theme: r.dataset.cwTheme, background: getComputedStyle(r).backgroundColor })"
    )


def luminance(css_color: str) -> float:
    """Relative luminance (0..255) of an ``rgb(...)``/``rgba(...)`` colour."""
    r, g, b = (float(v) for v in css_color[css_color.index("(") + 1 : -1].replace(",", " ").split()[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def narrow(root: Any, width: int = 700) -> dict[str, Any]:
    """Make the widget's own container ``width`` px wide (as a split pane, a sidebar or marimo's column
    would), leaving the window as it is; returns the root's width and every visible panel's width."""
    root.evaluate(
        """(r, width) => { const host = r.parentElement || r.getRootNode().host;
           host.style.width = width + 'px'; host.style.maxWidth = width + 'px'; }""",
        width,
    )
    return panel_widths(root)


def panel_widths(root: Any) -> dict[str, Any]:
    """The root's and the window's widths, and ``[name, width]`` of every visible panel and the class list."""
    return root.evaluate(
        """(r) => ({
          root: Math.round(r.getBoundingClientRect().width),
          window: window.innerWidth,
          panels: [...r.querySelectorAll('.cw-panel, .cw-side')]
            .map((el) => [el.dataset.panel || el.className.split(' ').pop(), el.getBoundingClientRect()])
            .map(([name, box]) => [name, Math.round(box.width)])
            .filter(([, w]) => w > 0),
        })"""
    )


def assert_panels_wide(layout: dict[str, Any], minimum: int = 200) -> None:
    narrow_ones = [(k, v) for k, v in layout["panels"] if v < minimum]
    assert layout["panels"] and not narrow_ones, f"panels under {minimum} px: {narrow_ones} in {layout}"


def screenshot(root: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    root.screenshot(path=str(path))
    return path


def to_screen(root: Any, x: float, y: float) -> tuple[float, float]:
    """Image pixel (x, y) of the 224x224 input -> page coordinates on the image panel."""
    box = root.locator(".cw-panel-image .cw-frame").bounding_box()
    return box["x"] + box["width"] * (x + 0.5) / 224, box["y"] + box["height"] * (y + 0.5) / 224


def settled(root: Any, painted: bool, timeout: int = 120_000) -> dict[str, str]:
    """Wait for the what-if line to settle; returns its before/after numbers and text."""
    return root.evaluate(SETTLED, {"painted": painted, "timeout": timeout})


def brush_the_face(root: Any) -> float:
    """One stroke of the Paint tool (radius 35, blur fill) across the cat's eyes: the explained class's
    probability must fall to under a third and the heatmap follow the painted image; Clear restores both.
    Returns the ms from the stroke's start to the settled painted view."""
    page = root.page
    h0 = canvas_hash(root)
    root.locator(".cw-whatif label", has_text="Paint").click()
    size = root.locator(".cw-brush-size input")
    size.fill("35")
    size.dispatch_event("input")
    root.locator(".cw-panel-image .cw-frame").scroll_into_view_if_needed()
    t0 = time.perf_counter()
    page.mouse.move(*to_screen(root, 20, 90))
    page.mouse.down()
    for x in range(20, 206, 15):
        page.mouse.move(*to_screen(root, x, 90), steps=2)
    page.mouse.up()
    shown = settled(root, painted=True)
    ms = (time.perf_counter() - t0) * 1000
    before, after = float(shown["before"]), float(shown["after"])
    assert after < before / 3, shown  # hiding the eyes takes most of the evidence away
    assert canvas_hash(root) != h0, "the heatmap did not follow the painted image"
    root.locator("[data-control=brush_clear]").click()
    settled(root, painted=False)
    assert canvas_hash(root) == h0, "Clear did not bring back the unpainted map"
    root.locator(".cw-whatif label", has_text="Off").click()
    return round(ms, 1)


def open_voila(
    browser_context: Any, url: str, count: int = 1, timeout: int = 300_000
) -> tuple[Any, list[str]]:
    """A page on the Voilà dashboard at ``url`` (light theme), once ``count`` explorers are on it; returns it
    with the list its page errors go to. Voilà runs every cell before it serves the page: on a busy 2-core
    machine, minutes."""
    page = browser_context.new_page()
    page.set_viewport_size(WINDOW)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.emulate_media(color_scheme="light")
    page.goto(f"{url}/?theme=light", wait_until="commit", timeout=timeout)
    page.locator(".cw-root").nth(count - 1).wait_for(timeout=timeout)
    return page, errors


def widget_errors(errors: list[str]) -> list[str]:
    """The page errors that come from camwidget's front end."""
    return [e for e in errors if "camwidget" in e or "cw-" in e]


def change_until(root: Any, control: str, value: str, want: dict[str, Any], timeout: int = 180_000) -> float:
    """Set the ``data-control`` select to ``value``; ms until a map whose key has ``want`` is painted and the
    widget settled on it."""
    sel = f"[data-control={control}]"
    return root.evaluate(CHANGE_UNTIL, {"sel": sel, "value": value, "want": want, "timeout": timeout})
