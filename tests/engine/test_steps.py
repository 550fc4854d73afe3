"""``camwidget.explain_steps``: a method's intermediates equal a float64 hand formula, its final maps equal
``camwidget.explain``'s, and the model comes back exactly as it came."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camwidget
from tests.engine.test_model_state import assert_same, snapshot


class FlattenNet(nn.Module):
    """conv-BN-ReLU -> conv-ReLU (6 x 8 x 8 at ``features.4``) -> flatten -> linear: the head weighs each
    position differently, so gradients vary over the grid and Grad-CAM and HiResCAM differ."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 6, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(6 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture
def net() -> FlattenNet:
    torch.manual_seed(0)
    model = FlattenNet()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so eval mode matters
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
    model.train()  # the caller's mode: explain_steps must explain in eval mode and restore this
    model.features[3].weight.requires_grad_(False)  # a mixed requires_grad the caller chose
    return model


X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
TARGET = [0, 3, 4]


def by_hand(model: nn.Module, x: torch.Tensor, classes: list[int]) -> dict[str, torch.Tensor]:
    """A, g = d y_c / d A, and the Grad-CAM and HiResCAM raw maps, in float64 on an eval-mode copy."""
    twin = copy.deepcopy(model).double().eval()
    a = twin.features(x.double()).detach().requires_grad_(True)
    y = twin.head(a.flatten(1))
    rows = torch.arange(len(classes))
    (g,) = torch.autograd.grad(y[rows, torch.tensor(classes)].sum(), a)
    a = a.detach()
    weights = g.mean(dim=(2, 3))
    return {
        "activations": a,
        "gradients": g,
        "scores": y.detach()[rows, torch.tensor(classes)],
        "logits": y.detach(),
        "gradcam_weights": weights,
        "gradcam": torch.einsum("nc,nchw->nhw", weights, a),
        "hirescam": (g * a).sum(dim=1),
    }


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """float32 result against the float64 formula, to float32 rounding of the result's scale."""
    scale = float(b.abs().max())
    assert scale > 0, f"{what}: the reference is all zero, the test would prove nothing"
    err = float((a.double() - b).abs().max())
    assert err <= 1e-5 * scale, f"{what}: max error {err:.3g} against scale {scale:.3g}"


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_intermediates_equal_the_float64_formula(net, method) -> None:
    before = snapshot(net)
    steps = camwidget.explain_steps(net, X, method=method, layer="features.4", target=TARGET)
    assert_same(net, before)

    ref = by_hand(net, X, TARGET)
    assert steps.method == method and steps.layer == "features.4"
    assert steps.classes.tolist() == TARGET
    assert steps.activations.shape == (3, 6, 8, 8) and steps.gradients.shape == (3, 6, 8, 8)
    close(steps.activations, ref["activations"], "activations")
    close(steps.gradients, ref["gradients"], "gradients")
    close(steps.scores, ref["scores"], "scores")
    close(steps.logits, ref["logits"], "logits")
    close(steps.raw, ref[method], f"{method} raw map")
    if method == "gradcam":
        assert steps.weights is not None and steps.weights.shape == (3, 6)
        close(steps.weights, ref["gradcam_weights"], "Grad-CAM channel weights")
    else:
        assert steps.weights is None  # HiResCAM weighs positions, not channels

    # each later step is the documented operation on the one before
    up = F.interpolate(ref[method][:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    close(steps.upsampled, up, "upsampled")
    close(steps.rectified, up.clamp_min(0), "rectified")
    lo = up.clamp_min(0).flatten(1).amin(1).view(-1, 1, 1)
    hi = up.clamp_min(0).flatten(1).amax(1).view(-1, 1, 1)
    assert bool((hi > lo).all()), "a map with no positive evidence would not test the min-max"
    expected = (up.clamp_min(0) - lo) / (hi - lo)
    assert float((steps.maps.double() - expected).abs().max()) < 1e-5
    assert steps.maps.shape == (3, 16, 16) and steps.maps.dtype == torch.float32

    # the final maps are explain()'s, and the two methods really differ on this head
    plain = camwidget.explain(net, X, method=method, layer="features.4", target=TARGET)
    assert torch.equal(steps.maps, plain)
    other = by_hand(net, X, TARGET)["hirescam" if method == "gradcam" else "gradcam"]
    assert float((ref[method] - other).abs().max()) > 0.1 * float(ref[method].abs().max())
    assert_same(net, before)


LINEAR = {"gradcam": {}, "gradcam++": {}, "xgradcam": {}, "scorecam": {"channels": 3}, "ablationcam": {}}


@pytest.mark.parametrize("method", [*LINEAR, "hirescam", "layercam", "eigencam", "opticam"])
def test_channel_weights_are_those_the_map_was_made_with(net, method) -> None:
    """Methods of the form Σ_k w_k A_k report their w, and Σ_k w_k A_k rebuilds their raw map; the others
    report none (they weight positions, project, or weight ReLU(A))."""
    before = snapshot(net)
    options = LINEAR.get(method, {"iterations": 2} if method == "opticam" else {})
    steps = camwidget.explain_steps(
        net, X, method=method, layer="features.4", target=TARGET, precision="fp32", **options
    )
    assert_same(net, before)
    if method not in LINEAR:
        assert steps.weights is None
        return
    assert steps.weights is not None and steps.weights.shape == (3, 6)
    assert bool((steps.weights != 0).any())
    remade = torch.einsum("nc,nchw->nhw", steps.weights, steps.activations)
    assert torch.allclose(remade, steps.raw, rtol=1e-5, atol=1e-6 * float(steps.raw.abs().max()))
    if method == "scorecam":  # channels=3: only the three highest-variance maps were run
        assert bool(((steps.weights != 0).sum(dim=1) <= 3).all())


def test_cam_weights_are_the_classifier_rows() -> None:
    from tests.engine.conftest import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN(classes=3).eval()
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    steps = camwidget.explain_steps(model, x, method="cam", layer="features.5", target=[2, 0])
    assert torch.equal(steps.weights, model.fc.weight.detach()[[2, 0]])


def test_steps_leave_the_model_as_it_came_when_the_call_fails(net) -> None:
    before = snapshot(net)
    with pytest.raises(ValueError, match=r"shape \(3, 5\), expected \(N, C, h, w\)"):
        camwidget.explain_steps(net, X, method="gradcam", layer="head")
    assert_same(net, before)
    assert net.training and not net.features[3].weight.requires_grad


def test_sanity_check_returns_the_maps_of_every_step(net) -> None:
    """``return_maps=True``: each row holds the maps after that step and the unchanged model's maps; the
    correlations it reports are those of exactly these maps."""
    before = snapshot(net)
    rows = camwidget.metrics.sanity_check(
        net, X, method="hirescam", layer="features.4", target=TARGET, return_maps=True
    )
    assert_same(net, before)
    original = camwidget.explain(net, X, method="hirescam", layer="features.4", target=TARGET)
    assert [r["layer"] for r in rows] == ["head", "features.3", "features.1", "features.0"]
    for row in rows:
        assert row["maps"].shape == (3, 16, 16) and row["maps"].device.type == "cpu"
        assert torch.equal(row["original"], original)
        rho = camwidget.metrics.spearman(row["original"], row["maps"])
        assert torch.allclose(rho, row["spearman_per_image"])
    # randomising the head changes the map of a class that depends on it
    assert not torch.equal(rows[0]["maps"], original)
    plain = camwidget.metrics.sanity_check(net, X, method="hirescam", layer="features.4", target=TARGET)
    assert "maps" not in plain[0] and plain[0]["spearman"] == rows[0]["spearman"]
