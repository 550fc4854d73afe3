"""CamExplorer in Voilà (the notebook as a dashboard: outputs only, a live kernel behind them).

Opens the page (Voilà runs the notebook), then through the widget's own controls: method, layer and class
changes must redraw the heatmap and the curves; the widget must take Voilà's theme (``?theme=light`` in
a dark OS stays light, ``?theme=dark`` in a light OS is dark); in a 700 px container in a wide window
its panels must stay >= 200 px wide; the static PNG output must stay hidden. Screenshots and timings
(first map from opening the page, switches) go to artifacts/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import explorer_page as ep
from tests.browser.servers import EXPLORER, voila_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with voila_server(tmp_path_factory.mktemp("voila"), [EXPLORER + "w"]) as url:
        yield url


def _open(browser_context, url: str, os_scheme: str):
    page = browser_context.new_page()
    page.set_viewport_size(ep.WINDOW)  # tall enough for screenshots of the whole widget
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.emulate_media(color_scheme=os_scheme)
    t0 = time.perf_counter()
    page.goto(url)
    return page, errors, t0


def test_camexplorer_in_voila(voila: str, browser_context, artifacts: Path) -> None:
    page, errors, t0 = _open(browser_context, f"{voila}/?theme=light", "dark")
    try:
        timings = {"first_map_s": round(ep.wait_first_map(page, t0), 2)}
        root = page.locator(".cw-root").first
        ep.wait_ready(root)
        timings["page_open_to_curves_ready_s"] = round(time.perf_counter() - t0, 2)
        fallback = page.locator(".cw-static-fallback")
        assert fallback.count() == 1 and fallback.is_hidden()

        timings.update(ep.exercise(root))

        light = ep.theme_of(root)  # Voilà light in a dark OS
        assert light["theme"] == "light" and ep.luminance(light["background"]) > 200, light
        ep.screenshot(root, artifacts, "voila_light")

        layout = ep.narrow(root, 700)
        assert layout["root"] == 700 and layout["window"] == 1280, layout
        ep.assert_panels_wide(layout)
        ep.screenshot(root, artifacts, "voila_700px")
    except Exception:
        page.screenshot(path=str(artifacts / "voila_failure.png"))
        raise
    finally:
        page.close()
    print(f"\nvoila timings: {json.dumps(timings)}")
    (artifacts / "voila_timings.json").write_text(json.dumps(timings, indent=2))
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors


def test_camexplorer_takes_voilas_dark_theme(voila: str, browser_context, artifacts: Path) -> None:
    page, errors, t0 = _open(browser_context, f"{voila}/?theme=dark", "light")
    try:
        ep.wait_first_map(page, t0)
        root = page.locator(".cw-root").first
        ep.wait_ready(root)
        dark = ep.theme_of(root)  # Voilà dark in a light OS
        assert dark["theme"] == "dark" and ep.luminance(dark["background"]) < 60, dark
        h0 = ep.canvas_hash(root)
        ep.timed(root, "select[data-control=method]", "eigencam", {"method": "eigencam"})
        assert ep.canvas_hash(root) != h0
        ep.wait_ready(root)
        ep.screenshot(root, artifacts, "voila_dark")
    finally:
        page.close()
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors
