"""Toy models for the metrics tests: closed-form ones to check values by hand, a tiny CNN trained (in a
few seconds) to read its label from a small patch only, and a real CNN on a real photo for comparisons
with the peers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

SIZE = 24
PATCH = (14, 4, 20, 10)  # x0, y0, x1, y1 (exclusive) of the planted patch in a SIZE x SIZE image


class RegionMean(nn.Module):
    """Two classes; logits (a·m, 0) with m the mean of the input over ``region`` (all channels), so
    P(class 0) = sigmoid(a·m) in closed form. ``region`` = (x0, y0, x1, y1), exclusive ends."""

    def __init__(self, region: tuple[int, int, int, int], a: float = 2.0) -> None:
        super().__init__()
        self.region = region
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, y0, x1, y1 = self.region
        m = x[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3))
        return torch.stack([self.a * m, torch.zeros_like(m)], dim=1)


class LinearCAM(nn.Module):
    """x -> ``features`` (identity) -> global average pool -> linear (no bias): logits W·mean(x).

    At layer "features", Grad-CAM's map of class c is min-max(ReLU(Σ_k W_ck x_k)) in closed form (the
    gradient of the logit with respect to x_k is W_ck / (H·W) everywhere)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))

    def gradcam(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The closed form above: (N, C, H, W), (N,) -> (N, H, W)."""
        w = self.fc.weight.detach()[classes]  # (N, C)
        raw = torch.relu(torch.einsum("nc,nchw->nhw", w, x))
        top = raw.flatten(1).amax(1).view(-1, 1, 1)
        return torch.where(top > 0, raw / top.clamp_min(1e-30), torch.zeros_like(raw))


class CountingModel(nn.Module):
    """Wraps a model and counts forward passes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


class TinyCNN(nn.Module):
    """conv-relu, conv-BN-relu, conv-relu -> global max pool -> linear (3 classes)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


_yy, _xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
CHECKER = ((_yy + _xx) % 2 * 2 - 1).float()


def shortcut_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose label lives only in PATCH: a ±1.5 checkerboard (its phase gives class 0 or 1)
    or plain noise (class 2). A checkerboard is high-frequency, so RISE's blur erases it: a blurred image
    reads as class 2 and insertion curves start low."""
    x = torch.randn(n, 3, SIZE, SIZE, generator=generator) * 0.5
    y = torch.randint(0, 3, (n,), generator=generator)
    x0, y0, x1, y1 = PATCH
    sign = torch.tensor([-1.5, 1.5, 0.0])[y].view(-1, 1, 1, 1)
    pattern = sign * CHECKER[y0:y1, x0:x1] + 0.2 * torch.randn(n, 3, y1 - y0, x1 - x0, generator=generator)
    x[:, :, y0:y1, x0:x1] = torch.where(y.view(-1, 1, 1, 1) == 2, x[:, :, y0:y1, x0:x1], pattern)
    return x, y


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is as fast, and far steadier on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shortcut_model() -> TinyCNN:
    """A TinyCNN trained to read its label from PATCH (40 Adam steps, a few seconds on 2 CPU cores)."""
    return train_shortcut_model()


def train_shortcut_model() -> TinyCNN:
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        x, y = shortcut_batch(32, g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.random.set_rng_state(state)
    torch.set_num_threads(threads)
    model.eval()
    x, y = shortcut_batch(256, g)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95, f"the planted-shortcut model did not learn its patch (accuracy {accuracy:.2f})"
    return model


@pytest.fixture
def patch_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Four images of classes 0/1 (patch present) and their labels."""
    g = torch.Generator().manual_seed(7)
    x, y = shortcut_batch(32, g)
    keep = y < 2
    return x[keep][:4], y[keep][:4]


def patch_maps(n: int) -> torch.Tensor:
    """(n, SIZE, SIZE): 1 inside PATCH, 0 elsewhere: the ground-truth explanation."""
    maps = torch.zeros(n, SIZE, SIZE)
    x0, y0, x1, y1 = PATCH
    maps[:, y0:y1, x0:x1] = 1
    return maps


def snapshot(model: nn.Module) -> dict:
    """Everything a metric must leave as it was."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [
            sum(len(getattr(m, name)) for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"))
            for m in model.modules()
        ],
        "versions": [p._version for p in model.parameters()],
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    assert after["versions"] == before["versions"]
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{key} changed"
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photo(name: str = "chelsea", size: int = 224) -> torch.Tensor:
    """(1, 3, size, size) ImageNet-normalised real photo (camwidget.data), resized and centre-cropped."""
    from torchvision.transforms import functional as TF

    from camwidget.data import sample_image

    image = TF.center_crop(TF.resize(sample_image(name).convert("RGB"), size * 8 // 7), size)
    return TF.normalize(TF.to_tensor(image), MEAN, STD).unsqueeze(0)


@pytest.fixture(scope="session")
def resnet() -> nn.Module:
    """torchvision resnet18, random init (seed 0), its classifier scaled ×40 so that the photos' top
    classes get probabilities well above chance (an agreement to 1e-4 in probability is then a real check).
    Tests must leave it as they found it."""
    import torchvision

    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    torch.random.set_rng_state(state)
    with torch.no_grad():
        model.fc.weight.mul_(40)
    return model


@pytest.fixture(scope="session")
def cat() -> torch.Tensor:
    return photo("chelsea")
