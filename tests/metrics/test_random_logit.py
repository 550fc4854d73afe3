"""The random logit test (Sixt et al. 2020): other classes drawn uniformly and reproducibly, the SSIM of
closed-form maps, a class-agnostic method scoring 1, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camwidget.metrics import random_logit, ssim
from camwidget.metrics.random_logit import other_classes

from .conftest import CountingModel, LinearCAM, assert_untouched, snapshot


def test_other_classes_are_uniform_over_the_others_and_seeded() -> None:
    targets = torch.tensor([0, 1, 2, 3] * 1000)
    drawn = other_classes(targets, 4, seed=5)
    assert not bool((drawn == targets).any())
    assert torch.equal(drawn, other_classes(targets, 4, seed=5))
    assert not torch.equal(drawn, other_classes(targets, 4, seed=6))
    for c in range(4):
        counts = torch.bincount(drawn[targets == c], minlength=4).float()
        assert counts[c] == 0
        others = counts[torch.arange(4) != c]
        assert float(others.min()) > 0.8 * 1000 / 3  # about a third each
    with pytest.raises(ValueError, match="at least 2 classes"):
        other_classes(torch.tensor([0]), 1, seed=0)


def test_ssim_of_the_closed_form_maps() -> None:
    g = torch.Generator().manual_seed(0)
    model = LinearCAM(torch.randn(5, 3, generator=g))
    x = torch.randn(4, 3, 16, 16, generator=g)
    before = snapshot(model)
    got = random_logit(model, x, method="gradcam", layer="features", seed=11)
    assert_untouched(model, before)
    with torch.no_grad():
        targets = model(x).argmax(1)
    assert torch.equal(got["targets"], targets)
    assert torch.equal(got["other_classes"], other_classes(targets, 5, 11))
    mine = model.gradcam(x, targets)
    theirs = model.gradcam(x, got["other_classes"])
    assert torch.allclose(got["other_maps"], theirs, atol=1e-6)
    assert got["ssim"].tolist() == pytest.approx(ssim(mine, theirs).tolist(), abs=1e-5)
    assert float(got["ssim"].max()) < 0.9 and got["seed"] == 11  # class-specific maps differ
    # Given maps, the same; no seed draws a fresh one and returns it.
    again = random_logit(model, x, mine, method="gradcam", layer="features", seed=11)
    assert torch.allclose(again["ssim"], got["ssim"])
    fresh = random_logit(model, x, method="gradcam", layer="features")
    assert isinstance(fresh["seed"], int)


def test_a_class_agnostic_method_scores_one() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6)
    )
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    got = random_logit(model, x, method="eigencam", layer="1", seed=0)
    assert got["ssim"].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_errors_before_any_forward() -> None:
    model = CountingModel(LinearCAM(torch.eye(3)))
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="seed"):
        random_logit(model, x, seed=-1, layer="inner.features")
    with pytest.raises(ValueError, match="unknown method"):
        random_logit(model, x, method="randomcam?")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_logit(model, x, torch.full((2, 8, 8), -1.0), layer="inner.features")
    with pytest.raises(TypeError, match="unknown option"):
        random_logit(model, x, layer="inner.features", iterationz=2)
    assert model.calls == 0
