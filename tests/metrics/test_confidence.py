"""Average Drop / Increase / Gain: values by hand on a closed-form model, the all-ones flaw, errors."""

from __future__ import annotations

import math

import pytest
import torch

from camwidget.metrics import average_drop_increase_gain, masked_inputs
from camwidget.metrics.confidence import confidence_scores

from .conftest import SIZE, RegionMean, assert_untouched, patch_maps, snapshot


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_values_equal_hand_computation_model_masking() -> None:
    # P(class 0) = sigmoid(2·m), m = mean of the top-left 2x2 region. Image 0 is +1 everywhere, image 1 is
    # -1 everywhere; both maps are 0.5 everywhere, so m halves: image 0 drops, image 1 increases.
    model = RegionMean((0, 0, 2, 2), a=2.0)
    x = torch.cat([torch.ones(1, 3, 4, 4), -torch.ones(1, 3, 4, 4)])
    maps = torch.full((2, 4, 4), 0.5)
    result = average_drop_increase_gain(model, x, maps, target=0)
    p = [sigmoid(2), sigmoid(-2)]
    o = [sigmoid(1), sigmoid(-1)]
    assert result["p"].tolist() == pytest.approx(p, abs=1e-6)
    assert result["o"].tolist() == pytest.approx(o, abs=1e-6)
    drop0 = (p[0] - o[0]) / p[0]
    gain1 = (o[1] - p[1]) / (1 - p[1])
    assert result["average_drop"] == pytest.approx(100 / 2 * (drop0 + 0), abs=1e-4)
    assert result["average_increase"] == pytest.approx(50.0)
    assert result["average_gain"] == pytest.approx(100 / 2 * (0 + gain1), abs=1e-4)
    assert result["increase"].tolist() == [False, True]
    assert result["targets"].tolist() == [0, 0]


def test_values_equal_hand_computation_pixel_masking() -> None:
    # Pixel space x·std + mean: with mean 0.5, std 0.25 an input of 2 is pixel 1.0; the map 0.25 makes it
    # 0.25, which is (0.25 - 0.5) / 0.25 = -1 in the model's space.
    model = RegionMean((1, 1, 3, 3), a=1.0)
    x = torch.full((1, 3, 4, 4), 2.0)
    maps = torch.full((1, 4, 4), 0.25)
    result = average_drop_increase_gain(model, x, maps, masking="pixel", mean=(0.5,) * 3, std=(0.25,) * 3)
    p, o = sigmoid(2), sigmoid(-1)
    assert result["o"].item() == pytest.approx(o, abs=1e-6)
    assert result["average_drop"] == pytest.approx(100 * (p - o) / p, abs=1e-4)
    assert result["average_increase"] == 0 and result["average_gain"] == 0
    masked = masked_inputs(x, maps, masking="pixel", mean=(0.5,) * 3, std=(0.25,) * 3)
    assert torch.allclose(masked, torch.full_like(x, -1.0))
    # Model-space masking of the same image gives 2 · 0.25 = 0.5 instead.
    assert torch.allclose(masked_inputs(x, maps), torch.full_like(x, 0.5))


@pytest.mark.parametrize("masking", ["model", "pixel"])
def test_all_ones_map_scores_perfect_drop_and_zero_gain(shortcut_model, patch_images, masking) -> None:
    # The flaw Average Gain was made to expose: "explain" nothing (keep the whole image) and AD is perfect.
    x, _ = patch_images
    ones = average_drop_increase_gain(shortcut_model, x, torch.ones(len(x), SIZE, SIZE), masking=masking)
    assert ones["average_drop"] == 0 and ones["average_gain"] == 0 and ones["average_increase"] == 0
    assert torch.equal(ones["p"], ones["o"])
    if masking == "model":
        # AD alone cannot tell "nothing" from the true patch (both 0); AG and AI can.
        truth = average_drop_increase_gain(shortcut_model, x, patch_maps(len(x)))
        assert truth["average_drop"] == ones["average_drop"] == 0
        assert truth["average_gain"] > 50 and truth["average_increase"] == 100


def test_per_image_terms_handle_certain_probabilities() -> None:
    terms = confidence_scores(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([1.0, 0.0, 0.75]))
    assert terms["drop"].tolist() == [0, 0, 0]
    assert terms["gain"].tolist() == [0, 0, 50.0]
    assert terms["increase"].tolist() == [False, False, True]


def test_model_untouched_and_batch_matches_single(shortcut_model, patch_images) -> None:
    x, _ = patch_images
    maps = torch.rand(len(x), SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    shortcut_model.train()
    before = snapshot(shortcut_model)
    try:
        batch = average_drop_increase_gain(shortcut_model, x, maps, precision="fp32")
        for i in range(len(x)):
            one = average_drop_increase_gain(shortcut_model, x[i : i + 1], maps[i : i + 1], precision="fp32")
            assert one["o"].item() == pytest.approx(batch["o"][i].item(), abs=1e-6)
            assert one["p"].item() == pytest.approx(batch["p"][i].item(), abs=1e-6)
        assert_untouched(shortcut_model, before)
    finally:
        shortcut_model.eval()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"maps": torch.rand(2, SIZE, 8)}, "shape"),
        ({"maps": torch.rand(1, SIZE, SIZE)}, "1 maps for 2 images"),
        ({"maps": torch.full((2, SIZE, SIZE), float("nan"))}, "NaN"),
        ({"maps": torch.full((2, SIZE, SIZE), 2.0)}, r"\[0, 1\]"),
        ({"target": 5}, "out of range"),
        ({"masking": "black"}, "masking"),
    ],
)
def test_bad_input_raises_value_error_and_leaves_model_untouched(shortcut_model, change, message) -> None:
    x = torch.randn(2, 3, SIZE, SIZE)
    args = {"maps": torch.rand(2, SIZE, SIZE), **change}
    before = snapshot(shortcut_model)
    with pytest.raises(ValueError, match=message):
        average_drop_increase_gain(shortcut_model, x, args.pop("maps"), **args)
    assert_untouched(shortcut_model, before)
