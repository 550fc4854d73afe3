"""Browser test: the shareable audit report (issue 13) opened in Chromium with the network off.

A small CNN that makes mistakes (a stamp on a quarter of one class, faint objects) is trained and
audited with error understanding; report.export_html writes one file. Chromium opens it offline (the
context is offline and every request but the file itself is refused and recorded): nothing is fetched,
every image (all data: URIs) decodes, and the sections carry the audit's figures. The screenshot is
saved to artifacts/audit_report.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import camwidget
from camwidget.audit.synthetic import SmallCNN, corner_regions, train_classifier, watermark_dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, object]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plant = {"object_strength": 0.4, "p_watermark": 0.25}
        model = train_classifier(
            SmallCNN(num_classes=3, seed=0), watermark_dataset(600, seed=0, **plant), epochs=6, lr=5e-3
        )
        report = camwidget.audit(
            model, watermark_dataset(240, seed=1, **plant), regions=corner_regions(32, 8), store=":memory:",
            mean=(0.5,) * 3, std=(0.5,) * 3, metrics=("energy", "error_understanding"), progress=False,
        )  # fmt: skip
        path = report.export_html(tmp_path_factory.mktemp("report") / "audit report.html", model=model)
    finally:
        torch.set_num_threads(before)
    return path, report


def test_the_report_opens_offline_with_every_image(exported, browser_context, artifacts: Path) -> None:
    path, report = exported
    page = browser_context.new_page()
    browser_context.set_offline(True)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.route(lambda url: not url.startswith("file://"), lambda route: route.abort())
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        others = [u for u in requests if not u.startswith("data:") and u != path.as_uri()]
        assert others == [], others  # nothing but the file itself
        images = page.evaluate(
            "() => [...document.images].map(i => [i.complete, i.naturalWidth, i.src.slice(0, 11)])"
        )
        assert len(images) >= 30 and all(c and w > 0 and s == "data:image/" for c, w, s in images), images
        headings = page.locator("h2").all_inner_texts()
        assert headings == [
            "Where each class looks",
            "Possible shortcuts",
            "Confusion matrix",
            "Most confused pairs",
            "Slices: where the model fails",
            "Error understanding",
        ]
        # the shortcut, convicted by the counterfactual, with its flip rates
        assert "h_stripes → top_left" in page.locator(".item .head").first.inner_text()
        assert "flip to h_stripes" in page.locator(".flips").first.inner_text()
        # the confusion matrix: every audited image counted once
        cells = page.locator("table.confusion td").all_inner_texts()
        assert sum(int(c) for c in cells if c.strip()) == len(report)
        # the error-understanding table: per class and overall, the true class's map and the prediction's
        rows = page.locator("h2:has-text('Error understanding') + p + table tr").all_inner_texts()
        table = report.error_understanding()
        assert len(rows) == 1 + len(table)
        assert rows[-2].split("\t")[:3] == ["all", "true", str(int(table.loc[("all", "true"), "images"]))]
        assert f"{table.loc[('all', 'true'), 'insertion_auc']:.3f}" in rows[-2]
        page.screenshot(path=str(artifacts / "audit_report.png"), full_page=True)
    finally:
        browser_context.set_offline(False)
        page.close()
