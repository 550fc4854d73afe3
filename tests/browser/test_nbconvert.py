"""Saved notebooks show the explanation where the widget cannot run: nbconvert's HTML, offline.

A notebook that builds a CamExplorer is run by nbclient (which saves the widget state, as JupyterLab does
with "Save Widget State Automatically"), converted by ``jupyter nbconvert --to html`` with and without
that state, and opened from disk in Chromium with the network off. Either way the cell's output must show
the explorer's PNG (image, overlay, heatmap), not an empty box: nbconvert's widget loader comes from a
CDN, so the widget itself cannot render offline.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELL = """\
import numpy as np, torch, camwidget
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
).eval()
image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
image[20:40, 20:40] = (250, 20, 20)
w = camwidget.CamExplorer(model, image, curves=False)
w
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    base = tmp_path_factory.mktemp("nbconvert")
    kernels = base / "jupyter" / "kernels"
    write_kernel_spec(kernels / "python3")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    root = str(Path(__file__).resolve().parents[2])
    env_patch = pytest.MonkeyPatch()
    env_patch.setenv("JUPYTER_PATH", str(base / "jupyter"))
    env_patch.setenv("PYTHONPATH", root)
    try:
        NotebookClient(nb, kernel_name="python3", timeout=300, store_widget_state=True).execute()
    finally:
        env_patch.undo()
    path = base / "explorer.ipynb"
    nbformat.write(nb, path)
    return path


def _convert(notebook: Path, out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nbconvert",
            "--to",
            "html",
            "--output",
            out.stem,
            "--output-dir",
            str(out.parent),
            str(notebook),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_saved_outputs_carry_the_png(executed: Path) -> None:
    nb = nbformat.read(executed, as_version=4)
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data", "display_data"]
    widget, fallback = (o.data for o in outputs)
    assert "application/vnd.jupyter.widget-view+json" in widget
    assert "widgets" in nb.metadata  # nbclient saved the widget state
    assert 'class="cw-static-fallback"' in fallback["text/html"] and "image/png" in fallback


@pytest.mark.parametrize("with_state", [True, False], ids=["widget-state", "no-widget-state"])
def test_nbconvert_html_shows_the_png_offline(
    executed: Path, with_state: bool, browser_context, tmp_path: Path, artifacts: Path
) -> None:
    notebook = executed
    if not with_state:  # as JupyterLab saves by default: outputs without the widget state
        nb = nbformat.read(executed, as_version=4)
        del nb.metadata["widgets"]
        notebook = tmp_path / "no_state.ipynb"
        nbformat.write(nb, notebook)
    html = _convert(notebook, tmp_path / f"export_{with_state}.html")
    text = html.read_text()
    match = re.search(r'<div class="cw-static-fallback"><img [^>]*src="data:image/png;base64,([^"]+)"', text)
    assert match, "the PNG output is missing from the HTML"
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(match.group(1)))).convert("RGB"))
    assert png.shape == (224, 3 * 224 + 12, 3)  # image, overlay, heatmap
    heat = png[:, -224:]
    assert heat.std() > 10, "the heatmap tile is flat"

    page = browser_context.new_page()
    browser_context.set_offline(True)
    try:
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        img = page.locator(".cw-static-fallback img")
        assert img.count() == 1 and img.is_visible()
        box = img.bounding_box()
        assert box["width"] > 300 and box["height"] > 100
        assert page.evaluate("document.querySelector('.cw-static-fallback img').naturalWidth") == png.shape[1]
        page.screenshot(path=str(artifacts / f"nbconvert_{'state' if with_state else 'nostate'}.png"))
    finally:
        browser_context.set_offline(False)
        page.close()
    if with_state:  # the widget view's placeholder is there too; it needs a CDN (offline: nothing)
        assert "application/vnd.jupyter.widget-view+json" in text
