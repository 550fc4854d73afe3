"""Browser test: the bundled gallery front end in a plain page, driven against a stand-in model.

Thumbnails (real JPEG bytes), heatmaps and region outlines are painted; clicks on a card, a finding, a
class mean map, a filter chip and the pager reach the model as a kernel would see them. The embedding
scatter draws its 200 points from the compact bytes traits, asks for one thumbnail on hover and shows
the kernel's answer, sends a lasso's polygon and a click's point; the confusion cells, the slices and
the comparison table set the filters; the opened image shows both maps and their confidence paths.
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
    page.wait_for_function(  # 6 cards, one with a second model's map beside the first
        "document.querySelectorAll('.cw-audit-canvas[data-painted]').length === 7", timeout=10_000
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


W, H, PAD = 520, 340, 10  # the scatter's size and margin (js/src/gallery/scatter.js)


def _screen(box, x, y):
    return box["x"] + PAD + x * (W - 2 * PAD), box["y"] + H - PAD - y * (H - 2 * PAD)


def test_the_scatter_hovers_lassos_and_opens(page, artifacts: Path) -> None:
    canvas = page.locator(".cw-audit-scatter")
    assert canvas.get_attribute("data-points") == "200"
    points = page.evaluate("window.points")
    box = page.locator(".cw-audit-scatter-overlay").bounding_box()
    # the points are drawn where their coordinates say: class 0 (blue) bottom left, class 1 (green) top right
    dpr = page.evaluate("window.devicePixelRatio")
    colours = page.evaluate(
        """([pts, pad, w, h, dpr]) => {
          const c = document.querySelector('.cw-audit-scatter');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          return pts.slice(1, 199).filter((p, i) => i % 25 === 0).map(([x, y]) => {
            const px = Math.round((pad + x * (w - 2 * pad)) * dpr);
            const py = Math.round((h - pad - y * (h - 2 * pad)) * dpr);
            const i = 4 * (py * c.width + px); return [d[i], d[i + 1], d[i + 2], d[i + 3]];
          });
        }""",
        [points, PAD, W, H, dpr],
    )
    assert all(c[3] > 0 for c in colours), colours  # painted under every sampled point
    assert colours[0][2] > colours[0][1] and colours[-1][1] > colours[-1][2]  # blue, then green

    # hover: one message for that point; the kernel's answer fills the tooltip
    x, y = _screen(box, *points[150])
    page.mouse.move(x, y)
    page.wait_for_function("window.fake.sent.some(m => m.event === 'hover')")
    hover = [m for m in page.evaluate("window.fake.sent") if m["event"] == "hover"]
    assert len(hover) == 1 and abs(hover[0]["position"] - 150) < 100  # a class-1 point near it
    position = hover[0]["position"]
    page.evaluate(
        """async (p) => {
          const c = document.createElement('canvas'); c.width = c.height = 16;
          const g = c.getContext('2d'); g.fillStyle = '#ff0000'; g.fillRect(0, 0, 16, 16);
          const blob = await new Promise((r) => c.toBlob(r, 'image/jpeg', 0.9));
          const msg = { event: 'thumb', position: p, index: 1000 + p, correct: true,
                        caption: `#${1000 + p} v_stripes → v_stripes` };
          window.fake.custom(msg, [new DataView(await blob.arrayBuffer())]);
        }""",
        position,
    )
    page.wait_for_function("document.querySelector('.cw-audit-tip').dataset.index !== undefined")
    tip = page.locator(".cw-audit-tip")
    assert tip.is_visible() and tip.inner_text().startswith(f"#{1000 + position} ")
    red = page.evaluate(
        "() => Array.from(document.querySelector('.cw-audit-tip-canvas').getContext('2d')"
        ".getImageData(32, 32, 1, 1).data)"
    )
    assert red[0] > 200 and red[1] < 60  # the thumbnail the kernel sent, drawn
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.move(x, y)  # the same point again: answered from the cache, no second request
    page.wait_for_timeout(200)
    assert len([m for m in page.evaluate("window.fake.sent") if m["event"] == "hover"]) == 1
    page.locator(".cw-audit").screenshot(path=str(artifacts / "gallery_page_views.png"))

    # a lasso around the class-0 cluster: the polygon goes to the kernel, in data coordinates
    corners = [(0.1, 0.15), (0.4, 0.15), (0.4, 0.45), (0.1, 0.45)]
    page.mouse.move(*_screen(box, *corners[0]))
    page.mouse.down()
    for cx, cy in [*corners[1:], corners[0]]:
        page.mouse.move(*_screen(box, cx, cy), steps=6)
    page.mouse.up()
    lasso = page.evaluate("window.fake.sent").pop()
    assert lasso["event"] == "lasso" and len(lasso["polygon"]) >= 4
    inside = page.evaluate(
        """(poly) => window.points.filter(([x, y]) => {
          let a = false;
          for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
            const [xi, yi] = poly[i], [xj, yj] = poly[j];
            if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) a = !a;
          }
          return a; }).length""",
        lasso["polygon"],
    )
    assert inside == 100  # every class-0 point, none of class 1 (the NaN point nowhere)

    # a click (no drag) on a point opens it, by its position in the table
    page.mouse.click(*_screen(box, *points[10]))
    opened = page.evaluate("window.fake.sent").pop()
    assert opened["event"] == "open" and opened["position"] < 100

    # the kernel's answer to the lasso: fewer points kept, the others faded; the summary shown
    page.evaluate(
        """() => { const keep = new Uint8Array(25); keep.fill(255, 0, 12); keep[12] = 15;
          window.fake.update({ scatter_shown: new DataView(keep.buffer),
            lasso: { count: 100, accuracy: 0.9, rest_accuracy: 1, classes: [['h_stripes', 100]] } }); }"""
    )
    assert page.locator(".cw-audit-lasso").inner_text().startswith("Lasso: 100 images, 90% correct")
    faded = page.evaluate(
        """([x, y, pad, w, h, dpr]) => {
          const c = document.querySelector('.cw-audit-scatter');
          const px = Math.round((pad + x * (w - 2 * pad)) * dpr);
          const py = Math.round((h - pad - y * (h - 2 * pad)) * dpr);
          return c.getContext('2d').getImageData(px, py, 1, 1).data[3]; }""",
        [*points[150], PAD, W, H, dpr],
    )
    assert 0 < faded < 80  # a class-1 point outside the selection, drawn faint


def test_confusion_slices_comparison_and_the_opened_image(page) -> None:
    cells = page.locator(".cw-audit-cell")
    assert cells.count() == 4
    assert [c.get_attribute("data-count") for c in cells.all()] == ["2", "0", "1", "2"]
    assert cells.nth(1).is_disabled()
    cells.nth(2).click()  # v_stripes taken for h_stripes
    state = page.evaluate("window.fake.state")
    assert state["filters"] == [
        {"column": "label_name", "op": "==", "value": "v_stripes"},
        {"column": "predicted_name", "op": "==", "value": "h_stripes"},
    ]
    assert state["sort_by"] == "probability" and state["descending"] is True
    page.locator(".cw-audit-pair").first.click()
    assert page.evaluate("window.fake.state.filters")[1]["value"] == "h_stripes"
    page.locator(".cw-audit-slice").first.click()
    assert page.evaluate("window.fake.state.filters") == [{"column": "slice", "op": "==", "value": "1"}]
    assert "25% vs" in page.locator(".cw-audit-slice").first.inner_text()
    page.locator(".cw-audit-compare-row").first.click()
    state = page.evaluate("window.fake.state")
    assert state["filters"] == [{"column": "label_name", "op": "==", "value": "v_stripes"}]
    assert state["sort_by"] == "map_disagreement"
    page.locator("button[data-control=disagree]").click()
    assert page.evaluate("window.fake.state.filters") == [{"column": "agree", "op": "==", "value": "false"}]
    # both models' maps on card 4
    assert page.locator(".cw-audit-card[data-index='4'] canvas").count() == 2
    # the opened image: the predicted class's map and the true class's, each with its confidence path
    page.wait_for_function("document.querySelectorAll('.cw-audit-focus-canvas[data-painted]').length === 2")
    assert page.locator(".cw-audit-focus figcaption").all_inner_texts()[0] == (
        "map of the predicted class: v_stripes"
    )
    assert page.locator(".cw-audit-path[data-painted]").count() == 2
    captions = page.locator(".cw-audit-focus .cw-audit-muted").all_inner_texts()
    assert captions == [
        "p(h_stripes) peaks at 0.30 with 48% of the pixels",
        "p(h_stripes) peaks at 0.80 with 48% of the pixels",
    ]
