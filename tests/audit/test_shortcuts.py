"""Shortcut findings an auditor can act on: a minority's shortcut, compact hotspots, the intervention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camwidget
from camwidget.audit.counterfactual import Counterfactual
from camwidget.audit.report import AuditReport
from camwidget.audit.synthetic import corner_regions

CORNERS = corner_regions(32, 8)


def run(model, data, store=":memory:", **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 64)
    return camwidget.audit(model, data, store=store, **kw)


def test_minority_shortcut_is_found_first_and_convicted(minority):
    """A quarter of one class carries a stamp the model uses: found first, and pasting it flips others."""
    model, test = minority
    labels, marked = test.labels.numpy(), test.watermarked.numpy()
    carried = marked[labels == 0].mean()
    assert 0 < carried <= 0.25, carried  # the planted shortcut is a minority's
    report = run(model, test, regions=CORNERS)
    found = report.shortcuts(model=model)
    first = found[0]
    assert (first.class_name, first.kind, first.region) == ("h_stripes", "region", "top_left"), found
    # The images leaning on the corner are the stamped ones, and they are a minority of the class.
    assert first.users_fraction <= 0.3 and first.users >= 10
    stamped_users = [i for i in first.user_indices if marked[i]]
    assert len(stamped_users) >= 0.8 * first.users
    assert first.examples and all(marked[i] for i in first.examples)
    # Energy relative to the region's area: the users put several times the area's share there.
    assert first.area == pytest.approx(64 / 1024)
    assert first.lift > 3
    # The intervention: the stamp pasted onto other classes' images makes them h_stripes.
    cf = first.counterfactual
    assert isinstance(cf, Counterfactual)
    assert cf.pasted >= 50 and cf.paste_flip_rate >= 0.8
    predicted = report.to_dataframe()["predicted"]
    assert len(cf.paste_examples) > 0 and all(predicted[i] != 0 for i in cf.paste_examples)
    assert marked[cf.source]  # the pasted pixels come from a stamped image
    assert cf.removed == first.users and 0 <= cf.remove_flip_rate <= 1  # every user is predicted h_stripes
    # Nothing else is convicted: any other finding flips far fewer predictions.
    for other in found[1:]:
        assert other.counterfactual.paste_flip_rate < 0.5, other
    text = str(first)
    assert "top_left" in text and "flips" in text and "%" in text


def test_the_same_finding_without_named_regions_is_a_compact_hotspot(minority):
    model, test = minority
    report = run(model, test)
    first = report.shortcuts()[0]
    assert first.class_name == "h_stripes" and first.kind == "hotspot"
    x0, y0, x1, y1 = first.box
    # Compact and on the stamp (pixels 0..5, 0..5), not a box of cells scattered over the image.
    assert (x1 - x0) * (y1 - y0) <= 0.15 * 32 * 32
    assert x0 < 5 + 4 and y0 < 5 + 4
    assert first.users_fraction <= 0.3


def test_counterfactual_of_a_finding_by_hand(minority):
    """report.counterfactual equals doing the paste and the removal by hand."""
    model, test = minority
    report = run(model, test, regions=CORNERS)
    first = report.shortcuts()[0]
    cf = report.counterfactual(first, model, limit=None, fill="mean")
    x0, y0, x1, y1 = (int(v) for v in first.box)
    images = test.images
    with torch.inference_mode():
        pred = model(images).argmax(1)
    patch = images[cf.source, :, y0:y1, x0:x1]
    targets = torch.nonzero(pred != first.class_index).flatten()
    pasted = images[targets].clone()
    pasted[:, :, y0:y1, x0:x1] = patch
    with torch.inference_mode():
        flips = (model(pasted).argmax(1) == first.class_index).sum().item()
    assert cf.pasted == len(targets) and cf.pasted_flipped == flips
    assert cf.paste_flip_rate == pytest.approx(flips / len(targets))
    own = torch.tensor(first.user_indices)
    own = own[pred[own] == first.class_index]
    cleaned = images[own].clone()
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    fill = cleaned[:, :, ~inside].mean(dim=2)  # each image's mean outside the region, per channel
    cleaned[:, :, y0:y1, x0:x1] = fill[:, :, None, None]
    with torch.inference_mode():
        left = (model(cleaned).argmax(1) != first.class_index).sum().item()
    assert cf.removed == len(own) and cf.removed_flipped == left


def test_majority_shortcut_still_first_and_the_printout_is_rounded(biased):
    model, test = biased
    report = run(model, test, regions=CORNERS)
    found = report.shortcuts()
    first = found[0]
    assert (first.class_name, first.region) == ("h_stripes", "top_left")
    assert first.users_fraction > 0.7 and first.score > 0.5
    text = repr(found)
    assert "h_stripes" in text and "top_left" in text
    # Rounded and readable: no float with more than 2 decimals, no truncated names.
    import re

    assert not re.search(r"\d\.\d{3,}", text), text
    assert "(0, 0, 8, 8)" in str(first) or "top_left" in str(first)
    frame = found.to_dataframe()
    assert {"class_name", "region", "score", "users", "users_fraction", "lift"} <= set(frame.columns)


def test_counterfactual_needs_the_audited_inputs(minority, tmp_path):
    model, test = minority
    run(model, test, store=tmp_path / "m.sqlite", regions=CORNERS)
    loaded = AuditReport.load(tmp_path / "m.sqlite")
    first = loaded.shortcuts()[0]
    with pytest.raises(ValueError, match="dataset="):
        loaded.counterfactual(first, model)
    again = AuditReport.load(tmp_path / "m.sqlite", dataset=test)
    cf = again.counterfactual(again.shortcuts()[0], model)
    assert cf.paste_flip_rate >= 0.8
    assert np.isfinite(cf.remove_flip_rate)


def test_removal_by_blur_and_bad_arguments(minority):
    model, test = minority
    report = run(model, test, regions=CORNERS)
    first = report.shortcuts()[0]
    blurred = report.counterfactual(first, model, fill="blur", limit=16)
    assert blurred.fill == "blur" and blurred.pasted == 16 and blurred.removed <= 16
    assert 0 <= blurred.remove_flip_rate <= 1 and blurred.paste_flip_rate >= 0.8
    with pytest.raises(ValueError, match="fill must be one of mean, blur"):
        report.counterfactual(first, model, fill="zeros")
    with pytest.raises(ValueError, match="limit must be a positive int"):
        report.counterfactual(first, model, limit=0)
    other = type(model)(num_classes=3, seed=5).eval()
    with pytest.warns(UserWarning, match="not the audited one"):
        report.counterfactual(first, other, limit=8)
