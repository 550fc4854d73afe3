"""Browser test: the bundled gallery front end in a plain page, driven against a stand-in model.

Thumbnails (real JPEG bytes), heatmaps and region outlines are painted; clicks on a card, a finding, a
class mean map, a filter chip and the pager reach the model as a kernel would see them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

PIXELS = """(el) => {
  const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
  const at = (x, y) => { const i = 4 * (y * el.width + x); return [d[i], d[i + 1], d[i + 2]]; };
  let s = 0;
  for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
  return { w: el.width, h: el.height, sum: s, corner: at(2, 2), centre: at(el.width >> 1, el.height >> 1) };
}"""


@pytest.fixture
def page(browser_context, static_server):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{static_server}/tests/browser/pages/gallery.html")
    page.wait_for_function("window.ready === true", timeout=10_000)
    page.wait_for_function(
        "document.querySelectorAll('.cw-audit-canvas[data-painted]').length === 6", timeout=10_000
    )
    yield page
    assert not errors, f"browser errors: {errors}"
    page.close()


def test_cards_are_painted_with_maps_and_outlines(page, artifacts: Path) -> None:
    cards = page.locator(".cw-audit-card")
    assert cards.count() == 6
    assert page.locator(".cw-audit-error").count() == 1 and page.locator(".cw-audit-wrong").count() == 1
    assert cards.nth(0).locator(".cw-audit-caption").inner_text() == "#0 h_stripes → h_stripes"
    assert cards.nth(0).locator(".cw-audit-value").inner_text() == "region_top_left 0.00"
    first = page.locator(".cw-audit-canvas").nth(0).evaluate(PIXELS)
    assert first["w"] == 96 and first["h"] == 96 and first["sum"] > 0
    # the map peaks in the top-left corner of image 0: the jet colormap's red there
    assert first["corner"][0] > 150 and first["corner"][0] > first["corner"][2]
    page.locator(".cw-audit").screenshot(path=str(artifacts / "gallery_page.png"))
    page.locator(".cw-audit-toolbar input[data-control=maps]").uncheck()
    page.wait_for_function("window.fake.state.show_maps === false")
    plain = page.locator(".cw-audit-canvas").nth(0).evaluate(PIXELS)
    assert plain["sum"] != first["sum"]  # repainted without the map


def test_clicks_reach_the_model(page) -> None:
    page.locator(".cw-audit-card").nth(4).click()
    assert page.evaluate("window.fake.sent") == [{"event": "open", "index": 4}]
    page.locator(".cw-audit-card").nth(2).focus()
    page.keyboard.press("Enter")
    assert page.evaluate("window.fake.sent")[-1] == {"event": "open", "index": 2}
    page.locator(".cw-audit-finding").first.click()
    state = page.evaluate("window.fake.state")
    assert state["filters"] == [{"column": "predicted_name", "op": "==", "value": "h_stripes"}]
    assert state["sort_by"] == "region_top_left" and state["descending"] is True
    page.locator(".cw-audit-chip-x").first.click()
    assert page.evaluate("window.fake.state.filters") == []
    page.locator(".cw-audit-class").nth(1).click()
    assert page.evaluate("window.fake.state.filters") == [
        {"column": "predicted_name", "op": "==", "value": "v_stripes"}
    ]
    page.locator(".cw-audit-test").first.click()
    assert page.evaluate("window.fake.sent")[-1] == {"event": "test", "finding": 0}
    page.select_option("select[data-control=filter-column]", "probability")
    page.select_option("select[data-control=filter-op]", ">")
    page.fill("input[data-control=filter-value]", "0.9")
    page.keyboard.press("Enter")
    assert page.evaluate("window.fake.state.filters")[-1] == {
        "column": "probability",
        "op": ">",
        "value": "0.9",
    }
    assert page.evaluate("window.fake.saves") == 4  # one save per user action


def test_class_maps_are_drawn_over_their_image(page) -> None:
    canvases = page.locator(".cw-audit-class-canvas")
    assert canvases.count() == 2
    page.wait_for_function("document.querySelectorAll('.cw-audit-class-canvas[data-painted]').length === 2")
    px = canvases.nth(0).evaluate(PIXELS)
    assert px["w"] == 88 and px["sum"] > 0
