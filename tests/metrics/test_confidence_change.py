"""Drop in Confidence / Increase in Confidence: values by hand on a closed-form model, equality with
pytorch-grad-cam 1.5.7's DropInConfidence / IncreaseInConfidence on resnet18 and real photos, errors."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

from camwidget import explain
from camwidget.metrics import average_drop_increase_gain, confidence_change

from .conftest import SIZE, CountingModel, RegionMean, assert_untouched, photo, snapshot


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_values_equal_hand_computation() -> None:
    # P(class 0) = sigmoid(2·m), logit 2·m, m = mean of the top-left 2x2 region. Image 0 is +1, image 1 is
    # -1 everywhere; maps 0.5 everywhere halve m: image 0 loses confidence, image 1 gains.
    model = RegionMean((0, 0, 2, 2), a=2.0)
    x = torch.cat([torch.ones(1, 3, 4, 4), -torch.ones(1, 3, 4, 4)])
    maps = torch.full((2, 4, 4), 0.5)
    result = confidence_change(model, x, maps, target=0)
    p, o = [sigmoid(2), sigmoid(-2)], [sigmoid(1), sigmoid(-1)]
    assert result["before"].tolist() == pytest.approx(p, abs=1e-6)
    assert result["after"].tolist() == pytest.approx(o, abs=1e-6)
    assert result["change"].tolist() == pytest.approx([o[0] - p[0], o[1] - p[1]], abs=1e-6)
    assert result["drop_in_confidence"].tolist() == pytest.approx([p[0] - o[0], 0.0], abs=1e-6)
    assert result["increase_in_confidence"].tolist() == [0.0, 1.0]
    logits = confidence_change(model, x, maps, target=0, score="logit")
    assert logits["drop_in_confidence"].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)  # 2·1 -> 2·0.5
    assert logits["change"].tolist() == pytest.approx([-1.0, 1.0], abs=1e-6)
    # Increase in Confidence is Average Increase / 100; Drop in Confidence is AD without dividing by p.
    ad = average_drop_increase_gain(model, x, maps, target=0)
    assert float(result["increase_in_confidence"].mean()) * 100 == ad["average_increase"]
    assert torch.allclose(result["drop_in_confidence"] / result["before"] * 100, ad["drop"], atol=1e-4)


@pytest.mark.parametrize(
    ("score", "target_class"),
    [("probability", ClassifierOutputSoftmaxTarget), ("logit", ClassifierOutputTarget)],
)
def test_equals_pytorch_grad_cam(resnet, score, target_class) -> None:
    x = torch.cat([photo("chelsea"), photo("coffee"), photo("astronaut")])
    maps = explain(resnet, x, method="gradcam", layer="layer3", precision="fp32")
    before = snapshot(resnet)
    ours = confidence_change(resnet, x, maps, score=score, precision="fp32")
    assert_untouched(resnet, before)
    targets = [target_class(int(t)) for t in ours["targets"]]
    drop = DropInConfidence()(x, maps.numpy(), targets, resnet)
    increase = IncreaseInConfidence()(x, maps.numpy(), targets, resnet)
    tolerance = 1e-4 if score == "probability" else 1e-3  # logits are tens: same relative precision
    assert ours["drop_in_confidence"].tolist() == pytest.approx(drop.tolist(), abs=tolerance)
    assert ours["increase_in_confidence"].tolist() == increase.tolist()
    assert float(ours["drop_in_confidence"].max()) > 100 * tolerance  # masking really moves the score


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"score": "prob"}, ValueError, "score"),
        ({"masking": "black"}, ValueError, "masking"),
        ({"maps": torch.full((2, SIZE, SIZE), 2.0)}, ValueError, r"\[0, 1\]"),
        ({"maps": torch.rand(2, SIZE, 3)}, ValueError, "shape"),
        ({"target": -2}, ValueError, "out of range"),
        ({"maps": torch.rand(2, SIZE, SIZE).numpy()}, TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_raises_before_any_forward(shortcut_model, change, error, message) -> None:
    model = CountingModel(shortcut_model)
    before = snapshot(model)
    args = {"maps": torch.rand(2, SIZE, SIZE), **change}
    with pytest.raises(error, match=message):
        confidence_change(model, torch.randn(2, 3, SIZE, SIZE), args.pop("maps"), **args)
    assert model.calls == 0
    assert_untouched(model, before)
