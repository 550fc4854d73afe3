"""Offline export: ``camwidget.export_html`` writes one file that renders the explanation with no network.

The file is opened from disk in Chromium with the network switched off (every http(s) request is also
refused and recorded): the heatmap canvases must be drawn with the exported map's pixels, a class whose
map was computed before the export must redraw, one that was not must say so, and colormap and opacity
must still work. A ``camwidget.show`` figure exports as an inline PNG.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import camwidget
from camwidget.widget.codecs import colorize
from camwidget.widget.map_key import MapKey
from tests.widget.conftest import TinyNet, random_images, small_preprocess

pytestmark = pytest.mark.browser

CANVAS = """(sel) => {
  const c = document.querySelector(sel);
  if (!c || c.width < 2) return null;
  return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
}"""


@pytest.fixture
def offline_page(browser_context):
    page = browser_context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def refuse(route) -> None:
        requests.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^https?://"), refuse)
    browser_context.set_offline(True)
    try:
        yield page, requests, errors
    finally:
        browser_context.set_offline(False)
        page.close()


@pytest.fixture
def explorer():
    import torch

    torch.manual_seed(0)
    w = camwidget.CamExplorer(
        TinyNet().eval(), random_images(2), preprocess=small_preprocess(), curve_steps=8
    )
    assert w.wait(30)
    first = w.class_index
    second = w.top_classes[1]["index"]
    w.class_index = second  # computed before the export: available offline
    assert w.wait(30)
    w.class_index = first
    assert w.wait(30)
    yield w, first, second
    w.close()


def test_exported_explorer_renders_offline(explorer, offline_page, tmp_path: Path, artifacts: Path) -> None:
    w, first, second = explorer
    page, requests, errors = offline_page
    path = camwidget.export_html(w, tmp_path / "handout.html")
    text = path.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", text), "the export refers to the network"
    page.goto(path.as_uri())
    page.wait_for_selector(".cw-root", timeout=10_000)
    page.wait_for_function("document.querySelector('.cw-root').dataset.curves === 'ready'", timeout=10_000)

    # the heatmap canvas shows exactly the exported map, through the viridis colormap
    heat = np.array(page.evaluate(CANVAS, ".cw-panel-heatmap canvas"), dtype=np.uint8).reshape(32, 32, 4)
    levels = np.frombuffer(w.maps[0]["levels"], dtype=np.uint8).reshape(32, 32)
    lut = colorize(np.arange(256, dtype=np.uint8)[None], "viridis")[0]
    assert np.abs(heat[..., :3].astype(int) - lut[levels].astype(int)).max() <= 1
    image = np.array(page.evaluate(CANVAS, ".cw-panel-image canvas"), dtype=np.uint8).reshape(32, 32, 4)
    assert np.array_equal(image[..., :3], w.session.display[0])
    assert page.locator(".cw-status-text").inner_text().startswith("HiResCAM in ")
    page.locator(".cw-root").screenshot(path=str(artifacts / "export_offline.png"))

    # a class computed before the export redraws; one that was not says so
    before = page.evaluate(CANVAS, ".cw-panel-heatmap canvas")
    page.locator(f".cw-class[data-index='{second}']").click()
    after = page.evaluate(CANVAS, ".cw-panel-heatmap canvas")
    assert after != before
    assert page.locator(".cw-root").get_attribute("data-stale") == "false"
    page.select_option("select[data-control=method]", "gradcam++")
    assert "Not in this export: Grad-CAM++" in page.locator(".cw-status-text").inner_text()
    assert page.locator(".cw-root").get_attribute("data-stale") == "true"

    # colormap and opacity are the browser's own work
    page.select_option("select[data-control=method]", "hirescam")
    overlay = page.evaluate(CANVAS, ".cw-panel-overlay canvas")
    page.select_option("select[data-control=colormap]", "jet")
    assert page.evaluate(CANVAS, ".cw-panel-overlay canvas") != overlay

    # the second image: its prediction and its map travelled too (computed? else said so)
    page.locator(".cw-thumb[data-index='1']").click()
    assert page.locator(".cw-panel-image figcaption").inner_text() == "Image 2"
    assert requests == [], f"the export tried the network: {requests}"
    assert not errors, errors
    key = MapKey.decode(w.maps[0]["key"])
    assert (key.image, key.target) == (0, first)


def test_exported_figure_is_an_inline_png(offline_page, tmp_path: Path) -> None:
    import torch

    page, requests, _ = offline_page
    torch.manual_seed(0)
    model = TinyNet().eval()
    fig = camwidget.show(model, random_images(1)[0], preprocess=small_preprocess(), curves=False)
    path = camwidget.export_html(fig, tmp_path / "figure.html", title="my figure")
    page.goto(path.as_uri())
    size = page.evaluate(
        "(() => { const i = document.querySelector('img'); return [i.naturalWidth, i.complete]; })()"
    )
    assert size[0] > 300 and size[1]
    assert page.title() == "my figure" and requests == []


def test_export_refuses_other_objects(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="takes a CamExplorer or a matplotlib Figure"):
        camwidget.export_html("a string", tmp_path / "x.html")
