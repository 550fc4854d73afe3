"""Toy models for the engine tests: small, seeded, trained in seconds where training is needed."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from camwidget.methods.registry import METHOD_CLASSES, METHODS

CNN_METHODS = [m for m in METHODS if METHOD_CLASSES[m].architecture == "any"]
"""Every method that explains any CNN (LeGrad needs a vision transformer's attention)."""


def quick_options(method: str, iterations: int = 5) -> dict[str, object]:
    """Options that keep a method cheap in tests (few optimisation steps or samples, fixed seeds)."""
    return {
        "opticam": {"iterations": iterations},
        "sscam": {"samples": 2, "seed": 0},
        "iscam": {"samples": 2},
        "smoothgradcam++": {"samples": 2, "seed": 0},
        "randomcam": {"seed": 0},
    }.get(method, {})


PATCH = (20, 4, 32, 16)  # x0, y0, x1, y1 (exclusive) of the planted patch in a 40x40 image


class TinyCNN(nn.Module):
    """conv-relu x3 -> GAP -> linear: a GAP + linear head, feature map 20x20 at ``features.5``."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def shortcut_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose label is written only in PATCH: + pattern for class 1, - pattern for 0."""
    x = torch.randn(n, 3, 40, 40, generator=generator) * 0.25
    y = torch.randint(0, 2, (n,), generator=generator)
    x0, y0, x1, y1 = PATCH
    sign = (y.float() * 2 - 1).view(-1, 1, 1, 1)
    x[:, :, y0:y1, x0:x1] = sign * 1.5 + 0.2 * torch.randn(n, 3, y1 - y0, x1 - x0, generator=generator)
    return x, y


@pytest.fixture(scope="session")
def shortcut_model() -> TinyCNN:
    """A TinyCNN trained (a few seconds on CPU) to read its label from PATCH only."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        x, y = shortcut_batch(32, g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = shortcut_batch(256, g)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95, f"the planted-shortcut model did not learn its patch (accuracy {accuracy:.2f})"
    return model


@pytest.fixture(scope="session")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture
def image() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 64, 64, generator=g)
