"""Browser test: the audit's views of where a model fails, in a real JupyterLab 4.

A notebook trains the watermark-shortcut CNN, stamps 20% of another class in the audited set (they
flip), audits it with error understanding, and shows the gallery. The test checks that the embedding
scatter and the confusion matrix render, that hovering a point brings its thumbnail from the kernel,
that a lasso around the planted subgroup filters the gallery to a selection holding all of it, that a
confusion cell filters the gallery to its pair, that the slices panel lists the subgroup first, and
that a misclassified image opens with its two maps and their confidence paths (and CamExplorer below).
Screenshots go to artifacts/ (one is the README's).
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from .conftest import kernel_idle
from .test_audit_gallery import _run_cell

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """\
import numpy as np, torch
import camwidget
from camwidget.audit.synthetic import SmallCNN, corner_regions, train_classifier, watermark_dataset

torch.set_num_threads(1)
model = train_classifier(SmallCNN(num_classes=3, seed=0), watermark_dataset(600, seed=0, object_strength=0.5),
                         epochs=4, lr=5e-3)  # learns the top-left stamp as 'h_stripes'
test = watermark_dataset(360, seed=1, object_strength=0.5)
labels = test.labels.numpy()
subgroup = np.zeros(len(test), bool)
subgroup[np.random.default_rng(0).choice(np.flatnonzero(labels == 1), 24, replace=False)] = True
test.images[torch.from_numpy(subgroup), :, 0:5, 0:5] = 2.0  # 20% of 'v_stripes' carry the stamp
report = camwidget.audit(model, test, regions=corner_regions(32, 8), store=":memory:", mean=(0.5,) * 3,
                         std=(0.5,) * 3, metrics=("energy", "error_understanding"), progress=False)
gallery = camwidget.AuditExplorer(report, model, page_size=12)
gallery
"""

LASSO = """\
xy = np.frombuffer(gallery.scatter_xy, dtype="<f2").reshape(-1, 2).astype(float)
lo, hi = xy[subgroup].min(axis=0), xy[subgroup].max(axis=0)
print("XYBOX", *[round(float(v), 4) for v in (lo[0], lo[1], hi[0], hi[1])])
"""

CHECK = """\
checks = globals().get("checks", 0) + 1
sel = gallery.selection
print(f"SELCHECK{checks}", len(sel), int(subgroup[sel].sum()), int(subgroup.sum()), gallery.total,
      gallery.filters[0]["column"] if gallery.filters else "-")
"""

W, H, PAD = 520, 340, 10  # js/src/gallery/scatter.js


@pytest.fixture(scope="module")
def jupyter(jupyter_server: dict) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP, LASSO, CHECK)]
    nbformat.write(nb, jupyter_server["root"] / "views_lab.ipynb")
    return jupyter_server


def _printed(page, k: int, word: str) -> list[str]:
    """Run cell k and return the words of its output line starting with ``word``."""
    _run_cell(page, k)
    out = page.locator(".jp-OutputArea-output", has_text=f"{word} ")
    out.first.wait_for(timeout=60_000)
    return out.first.inner_text().split()


def test_views_in_jupyterlab(jupyter: dict, browser_context, artifacts: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 2400})  # the whole gallery in view for its screenshot
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{jupyter['url']}/lab/tree/views_lab.ipynb?token={jupyter['token']}")
    try:
        page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
        deadline = time.monotonic() + 120
        while not kernel_idle(jupyter, "views_lab.ipynb"):
            assert time.monotonic() < deadline, "the notebook's kernel never became idle"
            time.sleep(0.5)
        page.wait_for_timeout(1000)
        _run_cell(page, 0)
        bad = ".widget-error, .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
        page.wait_for_selector(f".cw-audit[data-ready], {bad}", timeout=240_000)
        if page.locator(bad).count():
            pytest.fail(f"the gallery did not render: {page.locator(bad).first.inner_text()}")
        page.wait_for_selector(".cw-audit-scatter[data-painted]", timeout=60_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.cw-audit-canvas[data-painted]').length >= 12", timeout=60_000
        )
        # the scatter: every audited image, drawn
        scatter = page.locator(".cw-audit-scatter")
        assert scatter.get_attribute("data-points") == "360"
        painted = scatter.evaluate(
            "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"
        )
        assert painted > 1000, painted
        # the confusion matrix: 3x3 cells over the 360 images
        cells = page.locator(".cw-audit-cell")
        assert cells.count() == 9
        assert sum(int(c.get_attribute("data-count")) for c in cells.all()) == 360
        # the slices: the planted subgroup first
        first_slice = page.locator(".cw-audit-slice").first.inner_text()
        assert "#1 v_stripes · 24 images" in first_slice and "top-left" in first_slice, first_slice
        gallery = page.locator(".cw-audit")
        gallery.scroll_into_view_if_needed()
        page.locator(".cw-audit-panel[data-panel=slices]").scroll_into_view_if_needed()
        page.locator(".cw-audit-panel[data-panel=findings]").scroll_into_view_if_needed()
        gallery.screenshot(path=str(artifacts / "audit_views_lab.png"))

        # hover: the thumbnail of the point under the pointer comes from the kernel on demand
        overlay = page.locator(".cw-audit-scatter-overlay")
        overlay.scroll_into_view_if_needed()
        box = overlay.bounding_box()
        spot = scatter.evaluate(
            "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " const r = window.devicePixelRatio || 1;"
            " for (let i = 3; i < d.length; i += 4) if (d[i] > 150) {"
            "   const p = (i - 3) / 4; return [(p % c.width) / r, Math.floor(p / c.width) / r]; } }"
        )
        page.mouse.move(box["x"] + spot[0] + 1, box["y"] + spot[1] + 1)
        page.wait_for_function(
            "() => { const t = document.querySelector('.cw-audit-tip');"
            " return t && !t.hidden && t.dataset.index; }",
            timeout=30_000,
        )
        tip = page.locator(".cw-audit-tip").inner_text()
        assert tip.startswith("#") and "→" in tip, tip
        thumb = page.evaluate(
            "() => { const c = document.querySelector('.cw-audit-tip-canvas');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2]; return s; }"
        )
        assert thumb > 0  # the JPEG the kernel sent, drawn

        # a lasso around the planted subgroup's points (their box, from the kernel)
        words = _printed(page, 1, "XYBOX")
        x0, y0, x1, y1 = (float(v) for v in words[1:5])
        margin = 0.02
        corners = [(x0 - margin, y0 - margin), (x1 + margin, y0 - margin), (x1 + margin, y1 + margin)]
        corners.append((x0 - margin, y1 + margin))
        overlay.scroll_into_view_if_needed()
        box = overlay.bounding_box()

        def screen(x: float, y: float) -> tuple[float, float]:
            return box["x"] + PAD + x * (W - 2 * PAD), box["y"] + H - PAD - y * (H - 2 * PAD)

        page.mouse.move(*screen(*corners[0]))
        page.mouse.down()
        for c in [*corners[1:], corners[0]]:
            page.mouse.move(*screen(*c), steps=8)
        page.mouse.up()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.cw-audit-chip')]"
            ".some(c => c.textContent.includes('lasso'))",
            timeout=30_000,
        )
        lasso = page.locator(".cw-audit-lasso")
        lasso.wait_for(timeout=30_000)
        words = _printed(page, 2, "SELCHECK1")
        selected, caught, planted, total = (int(v) for v in words[1:5])
        assert caught == planted == 24 and total == selected and words[5] == "lasso", words
        assert lasso.get_attribute("data-count") == str(selected)
        page.locator(".cw-audit-pager").scroll_into_view_if_needed()
        assert f"{selected} of 360 images" in page.locator(".cw-audit-pager").inner_text()

        # a confusion cell: the stamped v_stripes taken for h_stripes
        cell = page.locator(".cw-audit-cell[data-label=v_stripes][data-predicted=h_stripes]")
        cell.scroll_into_view_if_needed()
        count = int(cell.get_attribute("data-count"))
        assert count >= 20
        cell.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.cw-audit-chip')]"
            ".some(c => c.textContent.includes('predicted_name'))",
            timeout=30_000,
        )
        page.wait_for_function(
            "(n) => document.querySelector('.cw-audit-pager').textContent.includes(`${n} of 360`)",
            arg=count,
            timeout=30_000,
        )
        captions = page.locator(".cw-audit-card .cw-audit-caption").all_inner_texts()
        assert captions and all("v_stripes → h_stripes" in c for c in captions), captions

        # open a mistake: both maps with their confidence paths, and CamExplorer below
        page.locator(".cw-audit-card").first.click()
        page.wait_for_function(
            "() => document.querySelectorAll('.cw-audit-focus-canvas[data-painted]').length === 2"
            " && document.querySelectorAll('.cw-audit-path[data-painted]').length === 2",
            timeout=60_000,
        )
        figures = page.locator(".cw-audit-focus figcaption").all_inner_texts()
        assert "map of the predicted class: h_stripes" in figures
        assert "map of the true class: v_stripes" in figures
        page.wait_for_selector(".cw-root", timeout=120_000)
        focus = page.locator(".cw-audit-panel[data-panel=focus]")
        focus.scroll_into_view_if_needed()
        focus.screenshot(path=str(artifacts / "audit_views_lab_focus.png"))
    except Exception:
        page.screenshot(path=str(artifacts / "audit_views_lab_failure.png"), full_page=True)
        raise
    finally:
        page.close()
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors
