"""Layer discovery: candidates in forward order with shapes, the default layer, aliases."""

from __future__ import annotations

import pytest
import torch
import torchvision

import camwidget
from camwidget.engine.layers import LayerCatalog, default_layer


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


def test_layer_catalog_owns_names_aliases_and_the_default(resnet18) -> None:
    calls = []
    handle = resnet18.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        catalog = LayerCatalog.of(resnet18)
    finally:
        handle.remove()
    assert calls == [1]  # one forward pass: layers, aliases and the class count for the default rule
    assert catalog.names == tuple(i.name for i in camwidget.candidate_layers(resnet18))
    assert catalog.default == "layer4.1" == default_layer(resnet18)
    for alias in ("layer4", "layer4.1", "layer4.1.relu"):
        assert alias in catalog and catalog.canonical(alias) == "layer4.1"
    assert catalog.info("layer4").shape == (512, 7, 7)
    with pytest.raises(
        ValueError, match=r"layer 'layer9' is not a spatial layer of ResNet; did you mean .*layer4"
    ):
        catalog.canonical("layer9")
    with pytest.raises(ValueError, match=r"candidates: conv1, .*, layer4.1$"):
        catalog.canonical("fc")  # not spatial
    with pytest.raises(TypeError, match="module name"):
        catalog.canonical(4)  # type: ignore[arg-type]


def test_layer_catalog_restrict_keeps_the_order_given_and_a_default_inside() -> None:
    squeezenet = torchvision.models.squeezenet1_1(weights=None)
    catalog = LayerCatalog.of(squeezenet)
    assert catalog.default == "features.12"  # the classifier's class-score map is passed over
    some = catalog.restrict(["features.9", "features.12", "features"])  # "features" is features.12
    assert some.names == ("features.9", "features.12") and some.default == "features.12"
    assert catalog.restrict(["features.9", "features.3"]).default == "features.3"  # the last one kept
    with pytest.raises(ValueError, match="no layer chosen"):
        catalog.restrict([])


def test_layer_catalog_of_a_model_without_spatial_layers() -> None:
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(ValueError, match=r"Sequential has no layer with a spatial \(N, C, h, w\) output"):
        LayerCatalog.of(mlp, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="no layer with a spatial"):
        default_layer(mlp, torch.zeros(1, 3, 8, 8))
