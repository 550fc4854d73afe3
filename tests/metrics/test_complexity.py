"""Sparseness (Gini, Chalasani et al. 2020), complexity (entropy, Bhatt et al. 2020) and L1 complexity
(Poppi et al. 2021): the published formulas computed by hand, and per-map independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from camwidget.metrics import complexity, l1_complexity, sparseness


def test_a_small_map_by_hand() -> None:
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    # Gini: sorted a = 0, 1, 2, 3; n = 4; Σ (2k − n − 1)·a_k = −3·0 − 1·1 + 1·2 + 3·3 = 10; n·Σa = 24.
    assert sparseness(maps).item() == pytest.approx(10 / 24, abs=1e-7)
    # Entropy of p = 0, 1/6, 2/6, 3/6 (0·ln 0 = 0), in nats.
    expected = -(1 / 6 * math.log(1 / 6) + 2 / 6 * math.log(2 / 6) + 3 / 6 * math.log(3 / 6))
    assert complexity(maps).item() == pytest.approx(expected, abs=1e-6)
    assert l1_complexity(maps).item() == pytest.approx(1.5)
    # Absolute values: the sign of an attribution does not matter.
    assert sparseness(-maps).item() == sparseness(maps).item()
    assert complexity(-maps).item() == complexity(maps).item()


def test_extremes() -> None:
    n = 7 * 9
    one = torch.zeros(1, 7, 9)
    one[0, 3, 4] = 0.25
    uniform = torch.full((1, 7, 9), 0.25)
    assert sparseness(one).item() == pytest.approx((n - 1) / n)
    assert complexity(one).item() == 0
    assert sparseness(uniform).item() == pytest.approx(0, abs=1e-7)
    assert complexity(uniform).item() == pytest.approx(math.log(n), abs=1e-6)
    # A zero map has no distribution: NaN, not a number that looks like a score.
    zero = torch.zeros(1, 7, 9)
    assert math.isnan(sparseness(zero).item()) and math.isnan(complexity(zero).item())
    assert l1_complexity(zero).item() == 0


def test_random_maps_equal_independent_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 12, 10, generator=g) ** 3 - 0.1  # skewed, some negative values
    a = maps.abs().flatten(1).double().numpy()
    # Gini as the mean absolute difference over all pairs, divided by twice the mean.
    gini = [np.abs(row[:, None] - row[None, :]).sum() / (2 * row.size**2 * row.mean()) for row in a]
    entropy = [scipy.stats.entropy(row / row.sum()) for row in a]  # natural log
    assert sparseness(maps).tolist() == pytest.approx(gini, abs=1e-6)
    assert complexity(maps).tolist() == pytest.approx(entropy, abs=1e-5)
    assert l1_complexity(maps).tolist() == pytest.approx(a.mean(1).tolist(), abs=1e-6)


def test_each_map_is_scored_on_its_own() -> None:
    # Quantus rescales by the batch-wide maximum and adds 1e-7, so a map's score depends on its
    # neighbours in the batch; here it must not.
    g = torch.Generator().manual_seed(1)
    small = torch.rand(1, 8, 8, generator=g) * 1e-4
    big = torch.rand(1, 8, 8, generator=g) * 1e4
    both = torch.cat([small, big])
    for score in (sparseness, complexity):
        assert score(both)[0].item() == pytest.approx(score(small).item(), rel=1e-6)
        assert score(both)[1].item() == pytest.approx(score(big).item(), rel=1e-6)
    # and a map's scale does not matter
    assert sparseness(small * 1e8).item() == pytest.approx(sparseness(small).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("maps", "error", "message"),
    [
        (np.zeros((1, 4, 4)), TypeError, "torch.Tensor"),
        (torch.zeros(1, 4, 4, dtype=torch.long), TypeError, "float"),
        (torch.full((1, 4, 4), float("nan")), ValueError, "NaN"),
        (torch.zeros(4), ValueError, "shape"),
    ],
)
def test_bad_maps(maps, error, message) -> None:
    for score in (sparseness, complexity, l1_complexity):
        with pytest.raises(error, match=message):
            score(maps)
