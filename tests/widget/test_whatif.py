"""The what-if brush, kernel side (issue 17): a painted mask (packed bits, as the front end sends it) gives
the painted image's numbers and maps, built on the insertion/deletion curves' own substrates and cached
per mask; erasing restores the image as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traitlets import TraitError

import camwidget
from camwidget.data import sample_image
from camwidget.metrics import perturbed_image
from camwidget.metrics.insertion_deletion import blur_images
from camwidget.models import squeezenet1_1_imagenet
from camwidget.widget.map_key import MapKey, mask_id
from tests.widget.conftest import SIZE


def box(y0: int, y1: int, x0: int, x1: int, size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def key(w) -> MapKey:
    return MapKey.decode(w.maps[0]["key"])


@pytest.mark.parametrize("fill", ["blur", "black", "zeros"])
def test_the_painted_image_is_the_curves_substrate_and_its_numbers_and_map_follow(make_explorer, model, fill):
    w = make_explorer()
    assert w.wait(30)
    c = w.class_index
    before = w.top_classes[0]["prob"]
    painted = box(4, 20, 6, 26)
    w.paint(painted, fill)
    assert w.wait(30) and w.error == ""
    mid = key(w).mask
    assert mid == mask_id(np.packbits(painted.reshape(-1)).tobytes(), fill) and mid.startswith(f"{fill}:")
    x = w.inputs[:1]
    seen = w.session.painted(0, mid)
    # one owner for the substrates: the painted input is the metric's deletion of exactly these pixels
    metric = perturbed_image(
        x, torch.from_numpy(painted).float()[None], 0, 1, step=int(painted.sum()), substrate=fill
    )
    assert torch.equal(seen[0], metric)
    changed = (seen[0] != x[0]).any(0).numpy()
    assert not changed[~painted].any() and changed[painted].mean() > 0.9
    if fill == "blur":
        assert torch.allclose(seen[0][:, painted], blur_images(x)[0][:, painted])
    # the numbers: the model's on the painted input; the class explained stays the unpainted prediction
    with torch.no_grad():
        probs = torch.softmax(model(seen), dim=1)[0]
    assert w.class_index == c and key(w).target == c
    assert w.whatif == {
        "mask": mid,
        "index": c,
        "name": f"class {c}",
        "score": "probability",
        "before": pytest.approx(before, abs=1e-6),
        "after": pytest.approx(float(probs[c]), abs=1e-6),
    }
    for row in w.top_classes:
        assert row["prob"] == pytest.approx(float(probs[row["index"]]), abs=1e-6) and "before" in row
    # the map: the engine's on the painted input
    expected = camwidget.explain(model, seen, method="hirescam", layer=w.layer, target=c)[0]
    assert np.abs(w.heatmap_array() - expected.numpy()).max() < 1e-6
    # the curves stay the unpainted image's
    assert MapKey.decode(w.curves[0]["key"]) == key(w).replace(mask="")


def test_erasing_restores_the_image_and_masks_are_cached(make_explorer) -> None:
    w = make_explorer()
    assert w.wait(30)
    plain = dict(w.maps[0])
    w.paint(box(0, 16, 0, 16), "black")
    assert w.wait(30)
    first = dict(w.maps[0])
    w.paint(box(0, 16, 0, 16) & ~box(0, 8, 0, 8), "black")  # erase a corner: another mask
    assert w.wait(30) and key(w).mask not in ("", MapKey.decode(first["key"]).mask)
    calls = []
    handle = w.session.model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        w.paint(box(0, 16, 0, 16), "black")  # painted again: from the cache, published at once
        assert w.maps[0] == first
        w.paint(None)  # erased: the image as it is
        assert w.maps[0] == plain and w.whatif == {} and "before" not in w.top_classes[0]
        assert w.wait(30)
    finally:
        handle.remove()
    assert calls == []  # nothing was computed again


def test_the_brush_is_validated_and_reaches_the_kernel_as_bytes(make_explorer) -> None:
    w = make_explorer()
    with pytest.raises(TraitError, match=r"brush_mask must be 128 bytes \(the 32x32 mask's packed bits\)"):
        w.brush_mask = b"\x01" * 5
    with pytest.raises(TraitError):
        w.brush_fill = "noise"
    with pytest.raises(ValueError, match=r"the mask must be \(32, 32\) at the model input's resolution"):
        w.paint(np.zeros((8, 8), bool))
    # the front end's message: state + a binary buffer (ipywidgets hands it over as a memoryview)
    bits = np.packbits(box(2, 12, 2, 12).reshape(-1)).tobytes()
    w._handle_msg(
        {
            "content": {
                "data": {
                    "method": "update",
                    "state": {"brush_fill": "zeros"},
                    "buffer_paths": [["brush_mask"]],
                }
            },
            "buffers": [memoryview(bits)],
        }
    )
    assert w.brush_mask == bits and w.wait(30) and key(w).mask == mask_id(bits, "zeros")


def test_a_slow_method_under_the_brush_shows_its_preview_first(make_explorer) -> None:
    w = make_explorer(method="scorecam", curves=False)
    assert w.wait(60)
    w.paint(box(0, 10, 0, 32))
    assert w.wait(60) and key(w).method == "scorecam" and key(w).mask
    cached = {(k.method, bool(k.mask)) for k in w.session.cached()}
    assert {("hirescam", True), ("scorecam", True)} <= cached


def test_hiding_the_cats_eyes_drops_tiger_cat() -> None:
    """The demo the issue asks for, kernel side (tests/browser/test_explorer_features.py does it by mouse)."""
    pre = squeezenet1_1_imagenet()
    w = camwidget.CamExplorer(pre.model, sample_image("chelsea"), class_names=pre.class_names, curves=False)
    try:
        assert w.top_classes[0]["name"] == "tiger cat"
        yy, xx = np.mgrid[:224, :224]
        stroke = (np.abs(yy - 90) <= 35) & (xx >= 20) & (xx <= 205)  # a band over both eyes
        w.paint(stroke)
        assert w.wait(60)
        assert w.whatif["name"] == "tiger cat" and w.whatif["before"] == pytest.approx(0.3916, abs=1e-3)
        assert w.whatif["after"] < 0.1, w.whatif
    finally:
        w.close()
