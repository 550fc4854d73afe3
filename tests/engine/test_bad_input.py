"""Bad input gets a clear exception that says what to do, and the model is untouched."""

from __future__ import annotations

import pytest
import torch

import camwidget
from camwidget.engine.explainer import Explainer

from .test_model_state import X, assert_same, snapshot


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"inputs": torch.randn(3, 64, 64)}, ValueError, "unsqueeze"),
        ({"inputs": torch.randn(1, 1, 64, 64)}, ValueError, "channels"),
        ({"inputs": torch.zeros(1, 3, 64, 64, dtype=torch.uint8)}, TypeError, "float"),
        ({"inputs": torch.full((1, 3, 64, 64), float("nan"))}, ValueError, "NaN"),
        ({"inputs": [[1.0]]}, TypeError, "torch.Tensor"),
        (
            {"layer": "layer9"},
            ValueError,
            r"layer 'layer9' not found.*candidates: conv1, bn1, relu, maxpool, layer1",
        ),
        ({"layer": "avgpool"}, ValueError, r"no spatial output.*candidate_layers"),
        ({"target": 1000}, ValueError, "out of range.*1000 classes"),
        ({"target": [1, 2, 3]}, ValueError, "3 entries for 2 images"),
        ({"target": 1.5}, TypeError, "integer"),
        ({"method": "gradcamm"}, ValueError, "unknown method 'gradcamm'; choose one of: cam, gradcam"),
        ({"variant": "nope"}, ValueError, "variant must be one of paper"),
        ({"colour": "red"}, TypeError, "unknown option"),
        ({"precision": "fp8"}, ValueError, "precision must be one of"),
    ],
)
def test_bad_input_raises_clearly_and_leaves_model_untouched(resnet18, kwargs, error, message) -> None:
    before = snapshot(resnet18)
    args = {"inputs": X, "method": "scorecam", "layer": "layer4", "channels": 4} | kwargs
    inputs = args.pop("inputs")
    with pytest.raises(error, match=message):
        camwidget.explain(resnet18, inputs, **args)
    assert_same(resnet18, before)


def test_not_a_module() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        camwidget.explain(lambda x: x, X)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        camwidget.candidate_layers("resnet")  # type: ignore[arg-type]


def test_model_returning_something_else_is_explained_clearly() -> None:
    class Dict(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return {"logits": self.conv(x).mean((2, 3))}

    with pytest.raises(TypeError, match=r"\(N, num_classes\) logits"):
        camwidget.explain(Dict(), X, method="hirescam", layer="conv")


def test_layer_module_from_another_model(resnet18) -> None:
    other = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="not a submodule"):
        Explainer(resnet18, other)
