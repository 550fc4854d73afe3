"""Layer discovery: candidates in forward order with shapes, the default layer, aliases."""

from __future__ import annotations

import torch
import torchvision

import camwidget
from camwidget.engine.layers import default_layer


def test_resnet_candidates_in_forward_order_with_shapes(resnet18) -> None:
    infos = camwidget.candidate_layers(resnet18)
    names = [i.name for i in infos]
    assert names.index("layer1.0") < names.index("layer2.0") < names.index("layer4.1")
    last = infos[-1]
    assert last.name == "layer4.1" and last.shape == (512, 7, 7)
    assert "layer4" in last.aliases and last.label == "layer4.1 (512×7×7)"
    assert "avgpool" not in names and "fc" not in names  # no spatial output


def test_shared_relu_is_listed_only_where_its_last_call_lands(resnet18) -> None:
    infos = camwidget.candidate_layers(resnet18)
    where = [i.name for i in infos if "layer4.1.relu" in (i.name, *i.aliases)]
    assert where == ["layer4.1"]


def test_default_layer_skips_class_score_maps() -> None:
    squeezenet = torchvision.models.squeezenet1_1(weights=None)
    assert default_layer(squeezenet) == "features.12"
    assert default_layer(torchvision.models.resnet18(weights=None)) == "layer4.1"


def test_default_layer_is_used_when_none_given(resnet18) -> None:
    x = torch.randn(1, 3, 64, 64)
    ex = camwidget.Explainer(resnet18, method="hirescam")
    ex(x)
    assert ex.layer_name == "layer4.1"
    assert torch.allclose(ex(x), camwidget.explain(resnet18, x, method="hirescam", layer="layer4"))


def test_candidate_layers_leave_model_mode(resnet18) -> None:
    resnet18.train()
    try:
        camwidget.candidate_layers(resnet18, torch.randn(1, 3, 64, 64))
        assert resnet18.training and all(m.training for m in resnet18.modules())
    finally:
        resnet18.eval()
