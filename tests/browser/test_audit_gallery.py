"""Browser test: AuditExplorer in a real JupyterLab 4 and Notebook 7.

A notebook trains the planted-shortcut CNN of notebook 03 (a stamp on a quarter of one class), audits
its test set, and shows the gallery with the tested findings. The test checks that the gallery renders
(cards painted, findings listed with their flip rates), clicks a finding (the gallery filters), opens
a correctly classified and a misclassified image (a CamExplorer appears below on the 32x32 audited
input; the misclassified one compares label and prediction), asks the kernel whether the explorer's
input is the audited tensor, and saves screenshots to artifacts/.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from .conftest import kernel_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """\
import torch
import camwidget
from camwidget.audit.synthetic import SmallCNN, corner_regions, train_classifier, watermark_dataset

torch.set_num_threads(1)
plant = dict(object_strength=0.4, p_watermark=0.25)  # a stamp on a quarter of h_stripes
train = watermark_dataset(600, seed=0, **plant)
model = train_classifier(SmallCNN(num_classes=3, seed=0), train, epochs=6, lr=5e-3)
test = watermark_dataset(240, seed=1, **plant)
report = camwidget.audit(model, test, regions=corner_regions(32, 8), store=":memory:", mean=(0.5,) * 3,
                         std=(0.5,) * 3, progress=False)
gallery = camwidget.AuditExplorer(report, model, shortcuts=report.shortcuts(model=model), page_size=14)
gallery
"""

CHECK = """\
checks = globals().get("checks", 0) + 1
x = gallery.explorer.inputs
same = torch.equal(x[0], report.inputs([gallery.selected])[0])
label = int(report.to_dataframe().loc[gallery.selected, "label"])
print(f"AUDITED{checks}", gallery.selected, tuple(x.shape), same, gallery.explorer.compare,
      gallery.explorer.compare_class, label)
"""


@pytest.fixture(scope="module")
def jupyter(jupyter_server: dict) -> dict:
    for name in ("lab", "nb7"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(CHECK)]
        nbformat.write(nb, jupyter_server["root"] / f"gallery_{name}.ipynb")
    return jupyter_server


def _run_cell(page, k: int) -> None:
    """Run the k-th cell of the open notebook (click its editor, Shift+Enter) and wait for its prompt."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    for _attempt in range(3):
        cells.nth(k).locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(
                "(k) => { const p = document.querySelectorAll('.jp-Notebook .jp-Cell .jp-InputPrompt')[k];"
                " return p && !/\\[ \\]/.test(p.textContent); }",
                arg=k,
                timeout=10_000,
            )
            return
        except Exception:  # the run request went nowhere: try again
            continue


def _open_gallery(page, jupyter: dict, notebook: str) -> None:
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    deadline = time.monotonic() + 120
    while not kernel_idle(jupyter, notebook):
        assert time.monotonic() < deadline, "the notebook's kernel never became idle"
        time.sleep(0.5)
    page.wait_for_timeout(1000)  # let the front end finish connecting to the kernel
    _run_cell(page, 0)
    bad = ".widget-error, .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
    page.wait_for_selector(f".cw-audit[data-ready], {bad}", timeout=240_000)
    if page.locator(bad).count():
        pytest.fail(f"the gallery did not render: {page.locator(bad).first.inner_text()}")
    page.wait_for_function(
        "() => document.querySelectorAll('.cw-audit-canvas[data-painted]').length >= 14", timeout=60_000
    )


def _check_in_kernel(page, k: int) -> list[str]:
    """Run the check cell (the k-th time) and return the words it printed."""
    _run_cell(page, 1)
    outputs = page.locator(".jp-OutputArea-output", has_text=f"AUDITED{k} ")
    outputs.first.wait_for(timeout=60_000)
    return outputs.first.inner_text().split()


@pytest.mark.parametrize("ui", ["lab", "nb7"])
def test_gallery_in_jupyter(ui: str, jupyter: dict, browser_context, artifacts: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 2300})  # the whole gallery in view for its screenshot
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    path = "lab/tree" if ui == "lab" else "notebooks"
    page.goto(f"{jupyter['url']}/{path}/gallery_{ui}.ipynb?token={jupyter['token']}")
    try:
        _open_gallery(page, jupyter, f"gallery_{ui}.ipynb")
        gallery = page.locator(".cw-audit")
        # findings, tested in the kernel: the planted stamp first, with its flip rates
        first = page.locator(".cw-audit-finding").first
        assert "h_stripes → top_left" in first.inner_text()
        assert "pasted: 64/64 flip to h_stripes" in page.locator(".cw-audit-flips").first.inner_text()
        assert page.locator(".cw-audit-class").count() == 3
        # a click on the finding filters the gallery to the class, leaning images first
        first.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.cw-audit-chip')]"
            ".some(c => c.textContent.includes('h_stripes'))",
            timeout=30_000,
        )
        page.wait_for_function(
            "() => (document.querySelector('.cw-audit-card .cw-audit-value') || {}).textContent"
            "?.startsWith('region_top_left')",
            timeout=30_000,
        )
        captions = page.locator(".cw-audit-card .cw-audit-caption").all_inner_texts()
        assert captions and all("→ h_stripes" in c for c in captions), captions
        page.wait_for_function(
            "() => document.querySelectorAll('.cw-audit-canvas[data-painted]').length >= 14", timeout=60_000
        )
        gallery.scroll_into_view_if_needed()
        gallery.screenshot(path=str(artifacts / f"audit_gallery_{ui}.png"))

        # open the top card: a CamExplorer on the audited 32x32 input appears below the gallery
        page.locator(".cw-audit-card").first.click()
        page.wait_for_selector(".cw-root", timeout=120_000)
        page.wait_for_function(
            "() => { const c = document.querySelector('.cw-root .cw-panel-image canvas');"
            " return c && c.width === 32 && c.height === 32; }",
            timeout=120_000,
        )
        caption = page.locator(".cw-audit-detail").last.inner_text()
        assert caption.startswith("#") and "label h_stripes → predicted h_stripes" in caption, caption
        assert "the audited input, 3×32×32" in caption
        words = _check_in_kernel(page, 1)
        assert words[2:6] == ["(1,", "3,", "32,", "32)"] and words[6] == "True", words

        # a misclassified image opens comparing the prediction's map with the label's
        page.locator(".cw-audit-chip-x").first.click()
        page.locator("select[data-control=filter-column]").select_option("correct")
        page.locator("select[data-control=filter-op]").select_option("==")
        page.locator("input[data-control=filter-value]").fill("no")
        page.locator("button[data-control=filter-add]").click()
        page.wait_for_function(
            "() => { const cs = document.querySelectorAll('.cw-audit-card');"
            " return cs.length > 0 && [...cs].every(c => c.classList.contains('cw-audit-wrong')); }",
            timeout=30_000,
        )
        page.locator(".cw-audit-card").first.click()
        page.wait_for_function(  # the new explorer (the closed one's view may linger a moment)
            "() => { const roots = document.querySelectorAll('.cw-root'); const r = roots[roots.length - 1];"
            " const p = r && r.querySelector('.cw-panel-compare');"
            " return roots.length === 1 && p && !p.hidden && r.dataset.stale === 'false'; }",
            timeout=120_000,
        )
        words = _check_in_kernel(page, 2)
        assert words[6] == "True" and words[7] == "class" and words[8] == words[9], words
        page.locator(".cw-audit-detail").last.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"audit_gallery_{ui}_opened.png"), full_page=False)
    except Exception:
        page.screenshot(path=str(artifacts / f"audit_gallery_{ui}_failure.png"))
        if page.locator(".cw-root").count():
            page.locator(".cw-root").last.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / f"audit_gallery_{ui}_failure_explorer.png"))
        raise
    finally:
        page.close()
    assert not [e for e in errors if "camwidget" in e or "cw-" in e], errors
