"""Vision transformers out of the box: the default layer (the last block's first norm), tokens turned into
a grid without a reshape argument, and a clear warning where a map is zero or noise (issue 17)."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torchvision
from torch import nn

import camwidget
from camwidget.engine.diagnostics import MapWarning
from camwidget.engine.explainer import Explainer
from camwidget.engine.normalize import finalize

from .test_model_state import assert_same, snapshot

X = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def vit_b_16() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)  # it starts at zero: every gradient would be zero
    return model


def swin_t() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.swin_t(weights=None).eval()


def timm_vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()


def vit_tokens(t: torch.Tensor) -> torch.Tensor:
    return t[:, 1:].reshape(t.shape[0], 14, 14, -1).permute(0, 3, 1, 2)


def nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


CASES = {
    "torchvision vit_b_16": (vit_b_16, "encoder.layers.encoder_layer_11.ln_1", vit_tokens, (14, 14)),
    "torchvision swin_t": (swin_t, "features.7.1.norm1", nhwc, (7, 7)),
    "timm vit_tiny_patch16_224": (timm_vit, "blocks.11.norm1", vit_tokens, (14, 14)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_default_layer_and_grid_equal_the_explicit_computation(case) -> None:
    make, layer, reshape, grid = CASES[case]
    model = make()
    before = snapshot(model)
    for method, options in (("gradcam", {}), ("hirescam", {}), ("scorecam", {"channels": 12})):
        with warnings.catch_warnings():
            warnings.simplefilter("error", MapWarning)  # a zero or noise map would fail the test
            ex = Explainer(model, method=method, **options)
            auto = ex(X, raw=True)
        assert ex.layer_name == layer, case
        explicit = camwidget.explain(
            model, X, method=method, layer=layer, reshape_transform=reshape, raw=True, **options
        )
        assert auto.shape == (1, *grid) and torch.allclose(auto, explicit, rtol=1e-5, atol=1e-7), method
        maps = finalize(auto, (224, 224))  # what explain() returns from the same raw map
        assert maps.shape == (1, 224, 224) and float(maps.amax()) == 1.0 and float(maps.std()) > 0.05, method
    assert_same(model, before)
    names = [info.name for info in camwidget.candidate_layers(model)]
    assert layer in names  # the selectors offer token layers too


def test_the_zero_head_of_an_untrained_torchvision_vit_is_named() -> None:
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None).eval()
    with pytest.warns(
        MapWarning, match=r"gradient of 'class \d+' at layer 'encoder.layers.encoder_layer_11.ln_1'.*head"
    ):
        maps = camwidget.explain(model, X, method="gradcam")
    assert float(maps.abs().max()) == 0


def test_hirescam_at_a_layernorm_input_is_called_noise() -> None:
    model = swin_t()
    with pytest.warns(MapWarning, match=r"'features.7' is numerical noise.*LayerNorm"):
        camwidget.explain(model, X, method="hirescam", layer="features.7")
    ex = Explainer(model, method="hirescam")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MapWarning)
        ex(X)
    assert ex.last_warnings == []
