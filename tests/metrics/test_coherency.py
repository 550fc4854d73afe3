"""Coherency, ADCC and ARCC (Poppi et al. 2021; pytorch-grad-cam's ARCC): closed forms on a linear CAM
model, the harmonic means from their parts, an Explainer passed in, the model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camwidget import Explainer
from camwidget.metrics import adcc, arcc, coherency, l1_complexity, pearson, road
from camwidget.metrics.coherency import harmonic_mean

from .conftest import CountingModel, LinearCAM, assert_untouched, snapshot


@pytest.fixture
def linear() -> tuple[LinearCAM, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return LinearCAM(torch.randn(4, 3, generator=g)), torch.randn(3, 3, 12, 10, generator=g)


def test_pearson_and_harmonic_mean() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 5, 6, generator=g), torch.rand(3, 5, 6, generator=g)
    expected = [
        np.corrcoef(u.flatten(), v.flatten())[0, 1] for u, v in zip(a.numpy(), b.numpy(), strict=True)
    ]
    assert pearson(a, b).tolist() == pytest.approx(expected, abs=1e-6)
    assert pearson(a, torch.ones_like(a)).tolist() == [0, 0, 0]  # constant map: 0, not NaN
    got = harmonic_mean(
        torch.tensor([0.5, 0.2, 0.9]), torch.tensor([0.25, 0.0, 0.9]), torch.tensor([1.0, 0.4, 0.9])
    )
    assert got.tolist() == pytest.approx([3 / (2 + 4 + 1), 0.0, 0.9])


def test_coherency_closed_form(linear) -> None:
    # Grad-CAM of the linear model is m = r / max r with r = ReLU(W_c·x) (min 0). Masking x by m scales r
    # by m, so the map of x ⊙ m is m² exactly: coherency = (ρ(m², m) + 1) / 2.
    model, x = linear
    before = snapshot(model)
    got = coherency(model, x, method="gradcam", layer="features")
    with torch.no_grad():
        classes = model(x).argmax(1)
    m = model.gradcam(x, classes).numpy()
    expected = [(np.corrcoef((v**2).flatten(), v.flatten())[0, 1] + 1) / 2 for v in m]
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    assert all(0.5 < v < 1 for v in got.tolist())  # similar, not identical maps
    assert_untouched(model, before)
    # Given maps and an explicit class, the same; an Explainer can be passed instead of a name.
    maps = model.gradcam(x, torch.tensor([1, 2, 3]))
    with Explainer(model, "features", "gradcam") as explainer:
        a = coherency(model, x, maps, [1, 2, 3], method=explainer)
    b = coherency(model, x, None, [1, 2, 3], method="gradcam", layer="features")
    m = maps.numpy()
    expected = [(np.corrcoef((v**2).flatten(), v.flatten())[0, 1] + 1) / 2 for v in m]
    assert a.tolist() == pytest.approx(expected, abs=1e-5)
    assert b.tolist() == pytest.approx(expected, abs=1e-5)


def test_adcc_is_the_harmonic_mean_of_its_parts(linear) -> None:
    model, x = linear
    got = adcc(model, x, method="gradcam", layer="features")
    assert set(got) == {"adcc", "coherency", "complexity", "average_drop"}
    maps = model.gradcam(x, model(x).argmax(1))
    assert got["complexity"].tolist() == pytest.approx(l1_complexity(maps).tolist(), abs=1e-6)
    assert torch.allclose(
        got["coherency"], coherency(model, x, method="gradcam", layer="features"), atol=1e-6
    )
    # Average Drop by hand: logits are W·mean(x), so the masked logits are W·mean(x ⊙ m).
    with torch.no_grad():
        p = model(x).softmax(1)
        o = model(x * maps.unsqueeze(1)).softmax(1)
    c = p.argmax(1)
    pc, oc = p.gather(1, c[:, None])[:, 0], o.gather(1, c[:, None])[:, 0]
    drop = ((pc - oc).clamp_min(0) / pc).tolist()
    assert got["average_drop"].tolist() == pytest.approx(drop, abs=1e-5)
    terms = [got["coherency"].tolist(), (1 - got["complexity"]).tolist(), [1 - d for d in drop]]
    expected = [3 / sum(1 / t[i] for t in terms) for i in range(3)]
    assert got["adcc"].tolist() == pytest.approx(expected, abs=1e-5)


def test_arcc_is_pytorch_grad_cams_combination(linear) -> None:
    model, x = linear
    got = arcc(model, x, method="gradcam", layer="features", noise=0, ties="raster")
    maps = model.gradcam(x, model(x).argmax(1))
    most = road(model, x, maps, None, (20, 40, 60, 80), "most", 0, ties="raster").mean(1)
    least = road(model, x, maps, None, (20, 40, 60, 80), "least", 0, ties="raster").mean(1)
    combined = (least - most) / 2
    assert got["road_combined"].tolist() == pytest.approx(combined.tolist(), abs=1e-6)
    assert float(combined.abs().max()) > 1e-3
    terms = [got["coherency"], 1 - got["complexity"], (2 * combined).clamp(0, 1)]
    expected = [
        3 / sum(1 / float(t[i]) for t in terms) if all(t[i] > 0 for t in terms) else 0 for i in range(3)
    ]
    assert got["arcc"].tolist() == pytest.approx(expected, abs=1e-5)


def test_errors_before_any_forward(linear) -> None:
    model, x = linear
    counting = CountingModel(model)
    with pytest.raises(ValueError, match="unknown method"):
        coherency(counting, x, method="nocam")
    with pytest.raises(ValueError, match="masking"):
        coherency(counting, x, masking="grey", layer="inner.features")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adcc(counting, x, torch.full((3, 12, 10), 3.0), layer="inner.features")
    with pytest.raises(ValueError, match="percentiles"):
        arcc(counting, x, percentiles=(0,), layer="inner.features")
    with Explainer(model, "features", "gradcam") as other:
        with pytest.raises(ValueError, match="another model"):
            coherency(counting, x, method=other)
    with Explainer(counting, "inner.features", "gradcam") as mine:
        with pytest.raises(ValueError, match="leave them out"):
            coherency(counting, x, method=mine, layer="inner.features")
    assert counting.calls == 0
