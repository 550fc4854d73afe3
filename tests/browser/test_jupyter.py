"""Browser test (b): CamExplorer in a real JupyterLab 4 and Notebook 7, on a real image.

Starts a Jupyter server on a free localhost port (token auth, temporary settings), opens a notebook
that builds a CamExplorer on scikit-image's cat photo with the embedded SqueezeNet (or a random-init
ResNet-18 when the demo extra is missing), runs it, drives method / layer / class / colormap /
opacity through the widget's own controls, checks that the heatmap pixels change and the curves
redraw, measures the time from a control change to the repainted heatmap, and saves light and dark
screenshots to artifacts/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from .conftest import kernel_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """\
import camwidget, skimage.data
from PIL import Image
try:
    from camwidget.models import squeezenet1_1_imagenet
    pre = squeezenet1_1_imagenet()
    model, names = pre.model, pre.class_names
except Exception:  # no demo extra: a random-init ResNet-18 still exercises everything
    import torch, torchvision
    torch.manual_seed(0)
    model, names = torchvision.models.resnet18(weights=None).eval(), None
w = camwidget.CamExplorer(model, Image.fromarray(skimage.data.chelsea()), class_names=names, curve_steps=16)
w
"""

HASH = """(sel) => {
  const c = document.querySelector(sel);
  if (!c || !c.width) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  return h;
}"""

# Change a control and resolve with the ms until the widget has painted a heatmap matching `want`.
TIMED = """async ({ sel, value, want, kind, timeout }) => {
  const root = document.querySelector('.cw-root');
  const t0 = performance.now();
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no repaint within ' + timeout + ' ms')), timeout);
    root.addEventListener('camwidget:paint', function f(ev) {
      const info = ev.detail.info || {};
      if (ev.detail.kind === kind && Object.entries(want).every(([k, v]) => info[k] === v)) {
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


@pytest.fixture(scope="module")
def jupyter(jupyter_server: dict) -> dict:
    """The module's Jupyter server with one CamExplorer notebook per front end."""
    for name in ("lab", "nb7"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(SETUP)]
        nbformat.write(nb, jupyter_server["root"] / f"camexplorer_{name}.ipynb")
    return jupyter_server


def _run_first_cell(page, jupyter: dict, notebook: str) -> None:
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    deadline = time.monotonic() + 120
    while not kernel_idle(jupyter, notebook):
        assert time.monotonic() < deadline, "the notebook's kernel never became idle"
        time.sleep(0.5)
    page.wait_for_timeout(1000)  # let the front end finish connecting to the kernel
    for _attempt in range(3):
        page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(
                "() => { const p = document.querySelector('.jp-Cell .jp-InputPrompt');"
                " return p && !/\\[ \\]/.test(p.textContent); }",
                timeout=10_000,
            )
            break
        except Exception:  # the run request went nowhere: try again
            continue
    bad = ".widget-error, .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
    page.wait_for_selector(f".cw-root, {bad}", timeout=240_000)
    if page.locator(bad).count():
        page.locator(bad).first.click()
        page.wait_for_timeout(500)
        pytest.fail(f"the widget did not render: {page.locator(bad).first.inner_text()}")
    page.wait_for_function(
        "() => { const r = document.querySelector('.cw-root');"
        " return r && r.dataset.curves === 'ready' && r.dataset.status === 'ready'; }",
        timeout=240_000,
    )


def _timed(page, sel: str, value, want: dict, kind: str = "maps", timeout: int = 120_000) -> float:
    return page.evaluate(TIMED, {"sel": sel, "value": value, "want": want, "kind": kind, "timeout": timeout})


def _switch_theme(page, theme: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=theme).first.click()
    light = "true" if "Light" in theme else "false"
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)
    page.wait_for_timeout(500)


def _exercise(page, label: str, artifacts: Path) -> dict:
    timings: dict[str, float] = {}
    heat = ".cw-panel-heatmap canvas"
    over = ".cw-panel-overlay canvas"
    root = page.locator(".cw-root")
    root.scroll_into_view_if_needed()
    shape = page.evaluate(
        f"[document.querySelector('{heat}').width, document.querySelector('{heat}').height]"
    )
    assert shape == [224, 224]
    assert page.locator(".cw-error").is_hidden()

    # method (uncached: one forward pass), then back (cached). Not Grad-CAM: on SqueezeNet's last
    # layer its gradients are spatially constant, so Grad-CAM and HiResCAM give the same map.
    h0 = page.evaluate(HASH, heat)
    curve0 = page.locator(".cw-line.cw-ins").first.get_attribute("d")
    timings["method_uncached_ms"] = _timed(
        page, "select[data-control=method]", "eigencam", {"method": "eigencam"}
    )
    h1 = page.evaluate(HASH, heat)
    assert h1 != h0, "heatmap pixels unchanged after a method change"
    page.wait_for_function(
        "(d0) => { const p = document.querySelector('.cw-line.cw-ins');"
        " return p && p.getAttribute('d') !== d0; }",
        arg=curve0,
        timeout=120_000,
    )
    timings["method_cached_ms"] = _timed(
        page, "select[data-control=method]", "hirescam", {"method": "hirescam"}
    )
    assert page.evaluate(HASH, heat) == h0

    # layer
    layers = page.eval_on_selector_all("select[data-control=layer] option", "os => os.map(o => o.value)")
    current = page.eval_on_selector("select[data-control=layer]", "s => s.value")
    # an earlier block (later ones on SqueezeNet are class-score maps giving the same HiResCAM map)
    other = [n for n in layers[: layers.index(current)] if "activation" not in n][-1]
    timings["layer_uncached_ms"] = _timed(page, "select[data-control=layer]", other, {"layer": other})
    assert page.evaluate(HASH, heat) != h0
    _timed(page, "select[data-control=layer]", current, {"layer": current})

    # class: the second prediction (click), then a class found by typing
    second = int(page.locator(".cw-class").nth(1).get_attribute("data-index"))
    timings["class_uncached_ms"] = _timed(page, ".cw-class:nth-child(2)", None, {"class_index": second})
    assert page.evaluate(HASH, heat) != h0
    page.locator(".cw-topk").focus()
    page.keyboard.press("ArrowUp")  # keyboard: back to the top prediction (cached)
    page.wait_for_function(f"() => document.querySelector('{heat}') && true")
    page.locator("input.cw-search").fill("golden retr")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => (document.querySelector('.cw-panel-overlay figcaption') || {}).textContent.includes('golden')"
        " || (document.querySelector('.cw-panel-overlay figcaption') || {}).textContent.includes('class ')",
        timeout=120_000,
    )

    # colormap / opacity: browser only
    o0 = page.evaluate(HASH, over)
    timings["colormap_ms"] = _timed(page, "select[data-control=colormap]", "jet", {})
    o1 = page.evaluate(HASH, over)
    assert o1 != o0
    timings["opacity_ms"] = _timed(page, "input[data-control=opacity]", 80, {})
    assert page.evaluate(HASH, over) != o1
    _timed(page, "select[data-control=colormap]", "viridis", {})
    _timed(page, "input[data-control=opacity]", 50, {})

    # back to the top class; hover the curves to show a perturbed step
    page.locator(".cw-class").first.click()
    page.wait_for_function(
        "() => document.querySelector('.cw-root').dataset.stale === 'false'", timeout=120_000
    )
    page.wait_for_function(
        "() => document.querySelector('.cw-root').dataset.curves === 'ready'", timeout=120_000
    )
    box = page.locator(".cw-curves-svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    assert int(page.locator(".cw-frames").get_attribute("data-step")) > 0
    root.screenshot(path=str(artifacts / f"{label}_light.png"))
    page.screenshot(path=str(artifacts / f"{label}_light_page.png"))

    _switch_theme(page, "JupyterLab Dark")
    assert root.get_attribute("data-cw-theme") == "dark"
    root.scroll_into_view_if_needed()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    root.screenshot(path=str(artifacts / f"{label}_dark.png"))
    _switch_theme(page, "JupyterLab Light")
    assert root.get_attribute("data-cw-theme") == "light"
    return timings


@pytest.mark.parametrize("ui", ["lab", "nb7"])
def test_camexplorer_in_jupyter(ui: str, jupyter: dict, browser_context, artifacts: Path) -> None:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: print("console:", m.text) if m.type == "error" else None)
    path = "lab/tree" if ui == "lab" else "notebooks"
    page.goto(f"{jupyter['url']}/{path}/camexplorer_{ui}.ipynb?token={jupyter['token']}")
    try:
        t0 = time.perf_counter()
        _run_first_cell(page, jupyter, f"camexplorer_{ui}.ipynb")
        first = time.perf_counter() - t0
        timings = _exercise(page, f"jupyter_{ui}", artifacts)
    except Exception:
        page.screenshot(path=str(artifacts / f"jupyter_{ui}_failure.png"))
        raise
    finally:
        page.close()
    timings["cell_run_to_curves_ready_s"] = round(first, 1)
    print(f"\n{ui} timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    (artifacts / f"jupyter_{ui}_timings.json").write_text(json.dumps(timings, indent=2))
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors
