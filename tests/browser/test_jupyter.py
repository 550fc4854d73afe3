"""CamExplorer in a real JupyterLab 4 and Notebook 7, on a real image (the bundled SqueezeNet, the cat photo).

Runs the notebook's cell, then through the widget's own controls: method, layer and class changes must
redraw the heatmap (canvas pixels change) and the curves; the widget must take JupyterLab's light and dark
theme (and not the OS's); in a 700 px container (a split pane, a sidebar) in a wide window its panels
must stay >= 200 px wide; the static PNG output beside it must stay hidden while the widget is live.
Then the cell is run twice more: the replaced explorers must keep no thread and no cache. Saves
screenshots and timings (first map, cached and uncached switches) to artifacts/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.browser import explorer_page as ep
from tests.browser.servers import EXPLORER, REPORT, kernel_idle, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [EXPLORER + "w", REPORT + "print('REPORT ' + _json.dumps(_report))"]


@pytest.fixture(scope="module")
def jupyter(jupyter_server: dict) -> dict:
    """The module's Jupyter server with one CamExplorer notebook per front end."""
    for ui in ("lab", "nb7"):
        write_notebook(jupyter_server["root"] / f"camexplorer_{ui}.ipynb", CELLS)
    return jupyter_server


def _run_cell(page, index: int) -> float:
    """Run cell ``index`` in place (Ctrl+Enter); returns time.perf_counter() at the key press."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt").first
    before = prompt.inner_text()
    for _attempt in range(3):
        cell.locator(".cm-content").first.click()
        t0 = time.perf_counter()
        page.keyboard.press("Control+Enter")
        try:  # the prompt turns to [*] then to a new number: the run request reached the kernel
            page.wait_for_function(
                "([el, before]) => el.textContent !== before",
                arg=[prompt.element_handle(), before],
                timeout=10_000,
            )
            return t0
        except Exception:  # the run request went nowhere: try again
            continue
    raise AssertionError(f"cell {index} never ran")


def _open(page, jupyter: dict, ui: str) -> str:
    notebook = f"camexplorer_{ui}.ipynb"
    path = "lab/tree" if ui == "lab" else "notebooks"
    page.goto(f"{jupyter['url']}/{path}/{notebook}?token={jupyter['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    deadline = time.monotonic() + 120
    while not kernel_idle(jupyter, notebook):
        assert time.monotonic() < deadline, "the notebook's kernel never became idle"
        time.sleep(0.5)
    page.wait_for_timeout(1000)  # let the front end finish connecting to the kernel
    return notebook


def _switch_theme(page, theme: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=theme).first.click()
    light = "true" if "Light" in theme else "false"
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)
    page.wait_for_timeout(500)


def _report(page) -> dict:
    output = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea")
    output.get_by_text("REPORT ").first.wait_for(timeout=60_000)
    lines = [line for line in output.inner_text().splitlines() if line.startswith("REPORT ")]
    return json.loads(lines[-1].removeprefix("REPORT "))


@pytest.mark.parametrize("ui", ["lab", "nb7"])
def test_camexplorer_in_jupyter(ui: str, jupyter: dict, browser_context, artifacts: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size(ep.WINDOW)  # tall enough for screenshots of the whole widget
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    label = f"jupyter_{ui}"
    try:
        _open(page, jupyter, ui)
        t0 = _run_cell(page, 0)
        timings = {"first_map_s": round(ep.wait_first_map(page, t0), 2)}
        root = page.locator(".cw-root").first
        ep.wait_ready(root)
        timings["cell_run_to_curves_ready_s"] = round(time.perf_counter() - t0, 2)
        root.scroll_into_view_if_needed()

        # the static PNG output is in the cell's outputs, and hidden while the widget is live
        fallback = page.locator(".jp-Cell").first.locator(".cw-static-fallback")
        assert fallback.count() == 1 and fallback.is_hidden()

        timings.update(ep.exercise(root))

        # the host's theme, not the OS's: JupyterLab light in a dark OS stays light
        page.emulate_media(color_scheme="dark")
        page.wait_for_timeout(300)
        light = ep.theme_of(root)
        assert light["theme"] == "light" and ep.luminance(light["background"]) > 200, light
        box = root.locator(".cw-curves-svg").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        ep.screenshot(root, artifacts, f"{label}_light")
        _switch_theme(page, "JupyterLab Dark")
        page.emulate_media(color_scheme="light")
        dark = ep.theme_of(root)
        assert dark["theme"] == "dark" and ep.luminance(dark["background"]) < 60, dark
        root.scroll_into_view_if_needed()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        ep.screenshot(root, artifacts, f"{label}_dark")
        _switch_theme(page, "JupyterLab Light")
        assert ep.theme_of(root)["theme"] == "light"

        # a 700 px container in a 1280 px window (a split pane, a sidebar): panels stay >= 200 px
        layout = ep.narrow(root, 700)
        assert layout["root"] == 700 and layout["window"] == 1280, layout
        ep.assert_panels_wide(layout)
        ep.screenshot(root, artifacts, f"{label}_700px")

        # run the cell twice more: the replaced explorers stop their threads and drop their caches
        for _ in range(2):
            _run_cell(page, 0)
            ep.wait_first_map(page, time.perf_counter())
        ep.wait_ready(page.locator(".cw-root").first)
        _run_cell(page, 1)
        report = _report(page)
        assert report["workers"] == 1, report
        assert report["old_caches"] == [0] * len(report["old_caches"]), report
    except Exception:
        page.screenshot(path=str(artifacts / f"{label}_failure.png"))
        raise
    finally:
        page.close()
    timings["rerun_report"] = report
    print(f"\n{ui} timings: {json.dumps(timings)}")
    (artifacts / f"{label}_timings.json").write_text(json.dumps(timings, indent=2))
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors
