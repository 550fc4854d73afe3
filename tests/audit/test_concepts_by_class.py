"""The audit reports per class which concepts carry its predictions: the planted watermark shows as the
concept that carries its class, with maps on the watermark's corner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camwidget


def test_the_watermark_is_the_concept_that_carries_its_class(biased) -> None:
    model, test = biased
    report = camwidget.audit(model, test, store=":memory:", batch_size=64, progress=False)
    found = report.concepts_by_class(model, n=3, per_class=40, layer="features.7")
    df = found.to_dataframe()
    assert 0 in df.index and len(df) >= 2
    assert found.parts.shape == (len(found.indices), 3)
    assert found.concepts.maps.shape == (len(found.indices), 3, 32, 32)
    # the images are the first of each predicted class, by dataset index, at most 40 a class
    predicted = report.to_dataframe()["predicted"]
    for k in df.index:
        assert df.loc[k, "images"] == min(40, int((predicted == k).sum()))
        assert (predicted.loc[found.indices[found.classes == k]] == k).all()
    watermark = int(df.loc[0, "top_concept"])
    assert found.carriers(0)[0] == watermark
    # it is the watermark: present on the watermarked images, nearly absent elsewhere, and there it sits on
    # the watermark's cells (pixels 0-4 of 32: cells 0-1 of the layer's 8x8, 6% of the area)
    x0, y0, x1, y1 = test.watermark_box
    cells = found.concepts.feature_maps[:, watermark]  # (M, 8, 8), unnormalised
    rows, cols = slice(y0 // 4, -(-y1 // 4)), slice(x0 // 4, -(-x1 // 4))
    marked = test.watermarked[torch.as_tensor(found.indices)]
    presence = cells.mean(dim=(1, 2))
    assert float(presence[marked].mean()) > 10 * float(presence[~marked].mean())
    share = cells[:, rows, cols].sum(dim=(1, 2)) / cells.sum(dim=(1, 2)).clamp_min(1e-12)
    assert float(share[marked].mean()) > 0.3, float(share[marked].mean())
    # it carries most of class 0's logit, and no other class's
    assert float(df.loc[0, "top_share"]) > 0.5
    assert all(int(df.loc[k, "top_concept"]) != watermark for k in df.index if k != 0)
    # the same from a tensor of the images, indexed by dataset index
    again = report.concepts_by_class(model, test.images, n=3, per_class=40, layer="features.7")
    np.testing.assert_allclose(again.parts, found.parts, rtol=1e-5, atol=1e-6)


def test_concepts_by_class_says_what_is_missing(biased) -> None:
    model, test = biased
    report = camwidget.audit(model, test, store=":memory:", batch_size=64, progress=False)
    with pytest.raises(ValueError, match="no readout to the classes"):
        report.concepts_by_class(model, n=2, layer="features.4")
    with pytest.raises(ValueError, match="indexed by dataset index"):
        report.concepts_by_class(model, test.images[:10], n=2)
    with pytest.raises(ValueError, match="per_class must be an int >= 1"):
        report.concepts_by_class(model, n=2, per_class=0)
    bare = type(report)(report._store)  # no dataset attached
    with pytest.raises(ValueError, match="does not know the audited dataset"):
        bare.concepts_by_class(model, n=2)
