"""Browser test (a): the bundled front end in a plain page, driven against a stand-in model.

Checks that the canvases are drawn, that colormap/opacity changes repaint in the browser (no
kernel), that the controls are keyboard accessible, and saves screenshots (light and dark).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

PIXELS = """(sel) => {
  const c = document.querySelector(sel);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0, h = 0;
  for (let i = 0; i < d.length; i++) { s += d[i]; h = (h * 31 + d[i]) >>> 0; }
  return { w: c.width, h: c.height, sum: s, hash: h };
}"""

OVERLAY = ".cw-panel-overlay canvas"
HEATMAP = ".cw-panel-heatmap canvas"


@pytest.fixture
def page(browser_context, static_server):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{static_server}/tests/browser/pages/fake_model.html")
    page.wait_for_function("window.ready === true", timeout=10_000)
    yield page
    assert not errors, f"browser errors: {errors}"
    page.close()


def timed_change(page, action: str) -> float:
    """Run `action` (JS) and return ms until the next 'maps' paint event."""
    return page.evaluate(
        """async (action) => {
          const n = window.paints.length;
          const t0 = performance.now();
          (new Function(action))();
          const painted = () => window.paints.slice(n).some((p) => p.kind === 'maps');
          while (!painted()) await new Promise(requestAnimationFrame);
          return window.paints.slice(n).find((p) => p.kind === 'maps').t - t0;
        }""",
        action,
    )


def test_canvases_are_drawn_at_image_size(page) -> None:
    for sel in (".cw-panel-image canvas", HEATMAP, OVERLAY):
        px = page.evaluate(PIXELS, sel)
        assert (px["w"], px["h"]) == (128, 96), sel
        assert px["sum"] > 0, f"{sel} is blank"
    assert page.locator(".cw-error").is_hidden()
    assert page.locator(".cw-class[aria-selected=true] .cw-class-name").inner_text() == "tabby cat"
    assert "62%" in page.locator(".cw-class[aria-selected=true]").inner_text()


def test_colormap_and_opacity_repaint_without_the_kernel(page) -> None:
    before = page.evaluate(PIXELS, OVERLAY)
    heat_before = page.evaluate(PIXELS, HEATMAP)
    page.select_option("select[data-control=colormap]", "jet")
    after = page.evaluate(PIXELS, OVERLAY)
    assert after["hash"] != before["hash"], "overlay unchanged after colormap change"
    assert page.evaluate(PIXELS, HEATMAP)["hash"] != heat_before["hash"]
    assert page.evaluate("window.fake.state.colormap") == "jet"
    assert page.evaluate("window.fake.saves") >= 1

    slider = page.locator("input[data-control=opacity]")
    slider.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert page.evaluate("window.fake.state.opacity") == pytest.approx(0.55)
    after2 = page.evaluate(PIXELS, OVERLAY)
    assert after2["hash"] != after["hash"], "overlay unchanged after opacity change"
    # the heatmap panel alone does not depend on opacity
    assert page.evaluate(PIXELS, HEATMAP)["hash"] == page.evaluate(PIXELS, HEATMAP)["hash"]

    # opacity 0 shows the plain image
    page.evaluate("window.fake.set('opacity', 0)")
    assert page.evaluate(PIXELS, OVERLAY)["hash"] == page.evaluate(PIXELS, ".cw-panel-image canvas")["hash"]


def test_repaint_is_fast(page) -> None:
    names = ("jet", "inferno", "gray", "viridis")
    cmap = [timed_change(page, f"window.fake.set('colormap', '{c}')") for c in names]
    opac = [timed_change(page, f"window.fake.set('opacity', {v})") for v in (0.2, 0.4, 0.6, 0.8)]
    print(f"\nplain page, 128x96: colormap repaint ms {cmap}, opacity repaint ms {opac}")
    assert max(cmap) < 100 and max(opac) < 100


def test_keyboard_steps_through_classes_and_search_picks_any_class(page) -> None:
    page.locator(".cw-topk").focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("window.fake.state.class_index") == 5
    page.keyboard.press("ArrowDown")
    assert page.evaluate("window.fake.state.class_index") == 7
    page.keyboard.press("Home")
    assert page.evaluate("window.fake.state.class_index") == 4

    search = page.locator("input.cw-search")
    search.fill("lyn")
    assert page.locator(".cw-suggestion").count() == 1
    page.keyboard.press("Enter")
    assert page.evaluate("window.fake.state.class_index") == 8
    # a class outside the top-k is listed as the selected extra row
    assert page.locator(".cw-class-extra .cw-class-name").inner_text() == "lynx"
    search.fill("zzz")
    assert "No class matches" in page.locator(".cw-suggestions").inner_text()


def test_controls_set_traits(page) -> None:
    page.select_option("select[data-control=method]", "scorecam")
    page.select_option("select[data-control=layer]", "layer3")
    state = page.evaluate("window.fake.state")
    assert (state["method"], state["layer"]) == ("scorecam", "layer3")
    # the shown map is now stale: badge visible, panel dimmed
    assert page.locator(".cw-panel-overlay.cw-stale .cw-badge").is_visible()
    page.locator(".cw-segmented label", has_text="2 methods").click()
    assert page.evaluate("window.fake.state.compare") == "method"
    assert page.locator(".cw-panel-compare").is_visible()
    assert page.locator(".cw-panel-heatmap").is_hidden()
    assert page.evaluate(PIXELS, ".cw-panel-compare canvas")["sum"] > 0
    # image strip: arrow keys
    page.locator(".cw-thumb[aria-checked=true]").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("window.fake.state.image_index") == 1


def test_curves_hover_shows_perturbed_frames(page) -> None:
    assert page.locator(".cw-curves-svg path.cw-line").count() == 2
    assert page.locator("[data-curve=a-insertion]").inner_text().startswith("0.")
    frame = ".cw-frames canvas"
    before = page.evaluate(PIXELS, frame)
    box = page.locator(".cw-curves-svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.5)
    step = int(page.locator(".cw-frames").get_attribute("data-step"))
    assert step > 16
    assert page.evaluate(PIXELS, frame)["hash"] != before["hash"]
    page.locator(".cw-curves-plot").focus()
    page.keyboard.press("Home")
    assert page.locator(".cw-frames").get_attribute("data-step") == "0"


def test_status_error_and_cancel(page) -> None:
    page.evaluate("window.fake.update({status: 'running', progress: 0.4, message: 'Score-CAM · 200/512'})")
    assert page.locator(".cw-progress").is_visible()
    assert page.locator(".cw-status-text").inner_text() == "Score-CAM · 200/512"
    page.get_by_role("button", name="Cancel").click()
    assert page.evaluate("window.fake.sent") == [{"action": "view-open"}, {"action": "cancel"}]
    page.evaluate("window.fake.update({status: 'error', error: 'Score-CAM failed: boom'})")
    assert page.locator(".cw-error").inner_text() == "⚠ Score-CAM failed: boom"
    page.get_by_role("button", name="Retry").click()
    assert page.evaluate("window.fake.sent.at(-1)") == {"action": "retry"}
    # a malformed heatmap shows a message instead of drawing garbage
    m = {"key": '[0,"hirescam","layer4",4,"","none",[]]'}
    page.evaluate("(m) => window.fake.update({maps: [{...m, levels: new DataView(new ArrayBuffer(7))}]})", m)
    assert "expected" in page.locator(".cw-error").inner_text()


def test_a_warning_about_the_map_is_shown(page) -> None:
    assert page.locator(".cw-warning").is_hidden()
    page.evaluate(
        "(w) => { const [a, b] = window.fake.state.maps;"
        " window.fake.update({maps: [{...a, warnings: [w]}, b]}); }",
        "the map is all zero: try another layer",
    )
    assert page.locator(".cw-warning").inner_text() == "the map is all zero: try another layer"
    page.evaluate("() => window.fake.update({maps: [{...window.fake.state.maps[0], warnings: []}]})")
    assert page.locator(".cw-warning").is_hidden()


def test_dispose_removes_the_view(page) -> None:
    page.evaluate("window.dispose()")
    assert page.locator(".cw-root").count() == 0
    assert page.evaluate("window.fake.sent.at(-1)") == {"action": "view-closed"}  # the kernel may release
    page.evaluate("window.fake.set('colormap', 'jet')")  # no listener left to throw


def test_screenshots_light_and_dark(page, artifacts: Path) -> None:
    page.emulate_media(color_scheme="light")
    page.locator(".cw-root").screenshot(path=str(artifacts / "frontend_light.png"))
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(100)
    page.locator(".cw-segmented label", has_text="2 classes").click()
    page.select_option("select[data-control=colormap]", "inferno")
    box = page.locator(".cw-curves-svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.4)
    page.locator(".cw-root").screenshot(path=str(artifacts / "frontend_dark.png"))
    bg = page.evaluate("getComputedStyle(document.querySelector('.cw-root')).backgroundColor")
    assert bg == "rgb(30, 31, 34)", bg
    assert (artifacts / "frontend_dark.png").stat().st_size > 10_000
