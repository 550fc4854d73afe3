"""CamExplorer's smoothing select and "+ Layer" select in a real browser (Voilà, a live kernel), on the
bundled SqueezeNet and scikit-image's cat.

Each control must redraw the heatmap with the map it asks for (the painted map's key carries the
smoothing and the further layers), a large share of the heatmap's pixels must change, the captions
must say what is shown, and going back must show the first map again from the cache. Eigen smoothing
is offered only where the method forms per-channel terms, and FullGrad (which reads its own layers)
hides the "+ Layer" select. Screenshot: ``artifacts/smoothing_layers.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import explorer_page as ep
from tests.browser.servers import voila_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """\
import camwidget
from camwidget.data import sample_image
from camwidget.models import squeezenet1_1_imagenet
pre = squeezenet1_1_imagenet()
toggles = camwidget.CamExplorer(pre.model, sample_image("chelsea"), class_names=pre.class_names,
                                preprocess=pre.transform, curve_steps=16)
toggles
""",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, browser_context) -> Iterator[object]:
    with voila_server(tmp_path_factory.mktemp("voila_toggles"), CELLS) as url:
        page, errors = ep.open_voila(browser_context, url)
        root = page.locator(".cw-root").first
        ep.wait_ready(root, timeout=300_000)
        root.scroll_into_view_if_needed()
        yield root
        page.close()
        assert not ep.widget_errors(errors), errors


def _options(root, control: str) -> list[str]:
    return root.locator(f"[data-control={control}] option").evaluate_all("(os) => os.map((o) => o.value)")


def test_smoothing_and_a_second_layer_redraw_the_map(root, artifacts: Path) -> None:
    heat = root.locator(".cw-panel-heatmap figcaption")
    assert heat.inner_text() == "Heatmap · HiResCAM · tiger cat"
    assert _options(root, "smoothing") == ["none", "aug", "eigen"]
    extra = _options(root, "extra_layers")
    assert extra[0] == "" and "features.7" in extra and "features.12" not in extra  # not the chosen layer
    h0 = ep.canvas_hash(root)

    # smoothing: flips x brightness, six passes in the background
    root.evaluate(ep.SNAP, "cwPlain")
    aug_ms = ep.change_until(root, "smoothing", "aug", {"smoothing": "aug", "extra_layers": []})
    changed_aug = root.evaluate(ep.SNAP_DIFF, "cwPlain")
    assert changed_aug > 0.05, f"only {changed_aug:.1%} of the heatmap changed under aug smoothing"
    assert heat.inner_text() == "Heatmap · HiResCAM · aug-smoothed · tiger cat"

    # a second layer, fused with the first (27x27 features.7 with 13x13 features.12)
    root.evaluate(ep.SNAP, "cwAug")
    both = {"smoothing": "aug", "extra_layers": ["features.7"]}
    fused_ms = ep.change_until(root, "extra_layers", "features.7", both)
    changed_fused = root.evaluate(ep.SNAP_DIFF, "cwAug")
    assert changed_fused > 0.05, f"only {changed_fused:.1%} of the heatmap changed with a second layer"
    assert heat.inner_text() == "Heatmap · HiResCAM + features.7 · aug-smoothed · tiger cat"
    assert heat.get_attribute("title") == heat.inner_text()  # cut with an ellipsis, whole on hover
    status = root.locator(".cw-status-text").inner_text()
    assert status.startswith("HiResCAM + features.7 · aug-smoothed in "), status
    ep.wait_ready(root)  # the curves of the smoothed, fused map
    ep.screenshot(root, artifacts, "smoothing_layers")

    # eigen smoothing redraws too
    root.evaluate(ep.SNAP, "cwFused")
    ep.change_until(root, "smoothing", "eigen", {"smoothing": "eigen", "extra_layers": ["features.7"]})
    assert root.evaluate(ep.SNAP_DIFF, "cwFused") > 0.05

    # back to one layer, unsmoothed: the first map again, from the cache
    ep.change_until(root, "extra_layers", "", {"smoothing": "eigen", "extra_layers": []})
    back_ms = ep.change_until(root, "smoothing", "none", {"smoothing": "none", "extra_layers": []})
    assert ep.canvas_hash(root) == h0
    assert heat.inner_text() == "Heatmap · HiResCAM · tiger cat"
    print(
        f"\nheatmap pixels changed: aug {changed_aug:.0%}, + layer {changed_fused:.0%}; aug smoothing "
        f"{aug_ms:.0f} ms, + layer {fused_ms:.0f} ms, cached switch back {back_ms:.0f} ms"
    )


def test_a_method_shows_only_the_options_it_takes(root) -> None:
    ep.change_until(root, "smoothing", "eigen", {"smoothing": "eigen", "method": "hirescam"})
    # Eigen-CAM is a principal component already: no eigen option, and the kernel turns it off
    ep.change_until(root, "method", "eigencam", {"method": "eigencam", "smoothing": "none"})
    assert _options(root, "smoothing") == ["none", "aug"]
    assert root.locator("[data-control=smoothing]").input_value() == "none"
    assert root.locator("[data-control=extra_layers]").is_visible()
    # FullGrad reads every layer itself: no "+ Layer"
    ep.change_until(root, "method", "fullgrad", {"method": "fullgrad"})
    assert root.locator("[data-control=extra_layers]").is_hidden()
    ep.change_until(root, "method", "hirescam", {"method": "hirescam"})
    assert root.locator("[data-control=extra_layers]").is_visible()
