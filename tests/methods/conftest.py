"""The three model families every new method is checked on (random init, offline, small inputs), the
peers' post-processing, and the helpers the comparisons share."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.transforms import functional as TF

from camwidget.data import sample_images

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SIZE = 64  # input side: ResNet-18 layer3 4x4, DenseNet-121 denseblock3 4x4, ViT-B/16 4x4 patches


def photos(n: int = 2, size: int = SIZE) -> torch.Tensor:
    """The first ``n`` sample photos, (n, 3, size, size), ImageNet-normalised."""
    images = [
        TF.to_tensor(TF.center_crop(TF.resize(im.convert("RGB"), size), size))
        for im in list(sample_images().values())[:n]
    ]
    return (torch.stack(images) - MEAN) / STD


def pearson(a: object, b: object) -> float:
    """Pearson correlation of two maps; 1.0 when both are the same constant map (two all-zero maps: no
    positive evidence in either), 0.0 when only one is constant."""
    a = torch.as_tensor(np.asarray(a)).double().flatten()
    b = torch.as_tensor(np.asarray(b)).double().flatten()
    if float(a.std()) == 0 and float(b.std()) == 0:
        return 1.0 if torch.allclose(a, b) else 0.0
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def vit_tokens(t: torch.Tensor) -> torch.Tensor:
    """ViT-B/16 at 64 px: (N, 1 + 16, C) tokens -> (N, C, 4, 4), the class token dropped."""
    return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)


@dataclass
class Case:
    """A model with the layers the tests explain on it."""

    name: str
    model: nn.Module
    layer: str  # gradient and activation methods
    score_layer: str  # the Score-CAM family (fewer channels: C x samples masked forwards)
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None

    def module(self, name: str) -> nn.Module:
        return dict(self.model.named_modules())[name]


@pytest.fixture(scope="session")
def resnet18_case() -> Case:
    torch.manual_seed(0)
    return Case("resnet18", torchvision.models.resnet18(weights=None).eval(), "layer3", "layer2")


@pytest.fixture(scope="session")
def densenet121_case() -> Case:
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    return Case("densenet121", model, "features.denseblock3", "features.transition1")


@pytest.fixture(scope="session")
def vit_case() -> Case:
    """torchvision's ViT-B/16 at 64 px (16 patches). Its classification head starts at zero (every gradient
    would be zero): re-initialised normal(0, 0.02)."""
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, image_size=SIZE).eval()
    with torch.no_grad():
        nn.init.normal_(model.heads.head.weight, std=0.02)
    return Case(
        "vit_b_16", model, "encoder.layers.encoder_layer_10", "encoder.layers.encoder_layer_10", vit_tokens
    )


@pytest.fixture(params=["resnet18", "densenet121", "vit_b_16"])
def case(request: pytest.FixtureRequest) -> Case:
    return request.getfixturevalue(
        {"resnet18": "resnet18_case", "densenet121": "densenet121_case", "vit_b_16": "vit_case"}[
            request.param
        ]
    )


def peer_post(raw: torch.Tensor, size: int = SIZE) -> np.ndarray:
    """pytorch-grad-cam's post-processing of a raw (N, h, w) map: ReLU, per-map min-max (+1e-7), cv2 resize
    (its ``scale_cam_image``), applied to camwidget's raw map so both go through the same steps."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    return scale_cam_image(np.maximum(raw.detach().cpu().numpy(), 0), (size, size))


@pytest.fixture(autouse=True)
def _quiet_peers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def float64_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double().eval()
