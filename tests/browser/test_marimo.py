"""CamExplorer in marimo (``mo.ui.anywidget(CamExplorer(...))``, served by ``marimo run``).

marimo renders the widget inside a shadow root, sets its theme from the user setting ``display.theme``
(a class on its own elements, whatever the OS says), gives outputs a ~740 px column by default, and
reruns a cell whenever a value it reads changes, closing the comms of the cell's old widgets. Checks:
the widget renders; method, layer and class changes redraw the heatmap and curves; the theme follows
marimo's setting (light in a dark OS, dark in a light OS); at marimo's default width and in a 700 px
container the panels stay >= 200 px wide; after the widget's cell reruns twice there is one worker thread
and one explorer left (the old ones stopped and were collected, caches and all).
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import explorer_page as ep
from tests.browser.servers import EXPLORER, REPORT, marimo_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

APP = """\
import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell
def _(mo):
    rebuild = mo.ui.button(label="rebuild", value=0, on_click=lambda v: v + 1)
    rebuild
    return (rebuild,)


@app.cell
def _(mo, rebuild):
    rebuild.value  # a click reruns this cell: a new explorer replaces the old one
{explorer}
    view = mo.ui.anywidget(w)
    view
    return (w,)


@app.cell
def _(mo, rebuild, w):
    rebuild.value
{report}
    _report["rebuilds"] = rebuild.value
    mo.Html("<pre id='cw-report'>" + _json.dumps(_report) + "</pre>")
    return


if __name__ == "__main__":
    app.run()
""".format(explorer=textwrap.indent(EXPLORER, "    "), report=textwrap.indent(REPORT, "    "))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("marimo_app") / "explorer_app.py"
    path.write_text(APP)
    return path


@pytest.fixture
def marimo(request, app: Path, tmp_path: Path) -> Iterator[str]:
    with marimo_server(tmp_path, app, request.param) as url:
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


def _report(page, rebuilds: int) -> dict:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        report = page.locator("#cw-report")
        if report.count():
            data = json.loads(report.inner_text())
            if data["rebuilds"] == rebuilds:
                return data
        page.wait_for_timeout(250)
    raise AssertionError(f"no report after rebuild {rebuilds}")


@pytest.mark.parametrize("marimo", ["light"], indirect=True)
def test_camexplorer_in_marimo(marimo: str, browser_context, artifacts: Path) -> None:
    page, errors, t0 = _open(browser_context, marimo, "dark")
    try:
        timings = {"first_map_s": round(ep.wait_first_map(page, t0), 2)}
        root = page.locator(".cw-root").first
        ep.wait_ready(root)
        timings["page_open_to_curves_ready_s"] = round(time.perf_counter() - t0, 2)

        # marimo's default column: no window media query could tell, the widget's own width does
        layout = ep.panel_widths(root)
        assert 600 <= layout["root"] <= 760 and layout["window"] == 1280, layout
        ep.assert_panels_wide(layout)
        timings["default_width_px"] = layout["root"]

        timings.update(ep.exercise(root))

        light = ep.theme_of(root)  # marimo light in a dark OS
        assert light["theme"] == "light" and ep.luminance(light["background"]) > 200, light
        ep.screenshot(root, artifacts, "marimo_light")

        layout = ep.narrow(root, 700)
        assert layout["root"] == 700, layout
        ep.assert_panels_wide(layout)

        # rerun the widget's cell twice: the old explorers stop, drop their caches and are collected
        first = _report(page, 0)
        for n in (1, 2):
            page.get_by_role("button", name="rebuild").click()
            report = _report(page, n)
        assert report["workers"] == 1 and report["explorers"] == 1, report
        assert report["old_caches"] == [], report
        ep.wait_ready(page.locator(".cw-root").first)
    except Exception:
        page.screenshot(path=str(artifacts / "marimo_failure.png"))
        raise
    finally:
        page.close()
    timings["reports"] = [first, report]
    print(f"\nmarimo timings: {json.dumps(timings)}")
    (artifacts / "marimo_timings.json").write_text(json.dumps(timings, indent=2))
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors


@pytest.mark.parametrize("marimo", ["dark"], indirect=True)
def test_camexplorer_takes_marimos_dark_theme(marimo: str, browser_context, artifacts: Path) -> None:
    page, errors, t0 = _open(browser_context, marimo, "light")
    try:
        ep.wait_first_map(page, t0)
        root = page.locator(".cw-root").first
        ep.wait_ready(root)
        dark = ep.theme_of(root)  # marimo dark in a light OS
        assert dark["theme"] == "dark" and ep.luminance(dark["background"]) < 60, dark
        h0 = ep.canvas_hash(root)
        ep.timed(root, "select[data-control=method]", "eigencam", {"method": "eigencam"})
        assert ep.canvas_hash(root) != h0
        ep.wait_ready(root)
        ep.screenshot(root, artifacts, "marimo_dark")
    finally:
        page.close()
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors
