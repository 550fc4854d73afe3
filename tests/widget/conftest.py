"""Fixtures for the CamExplorer tests: a tiny random CNN and small images, so each test takes well
under a second on a CPU."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD

SIZE = 32


class TinyNet(nn.Module):
    """conv -> relu -> conv(stride 2) -> relu -> conv -> relu -> GAP -> fc; random init."""

    def __init__(self, num_classes: int = 10, delay: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.fc(self.pool(self.features(x)).flatten(1))


def small_preprocess() -> Callable:
    return T.Compose(
        [T.Resize(SIZE), T.CenterCrop(SIZE), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def random_images(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        img[10:25, 20:35] = (240, 30, 30)  # a bright square, so maps have structure
        out.append(img)
    return out


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def make_explorer(model: nn.Module) -> Iterator[Callable]:
    from camwidget.widget.explorer import CamExplorer

    made = []

    def make(*, images=None, net=None, **kwargs):
        kwargs.setdefault("preprocess", small_preprocess())
        kwargs.setdefault("curve_steps", 8)
        w = CamExplorer(
            net if net is not None else model, random_images() if images is None else images, **kwargs
        )
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
