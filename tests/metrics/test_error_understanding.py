"""Error understanding (Chen et al., ICLR 2024): the published protocol, by hand and against a naive loop."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from camwidget.metrics import compare_methods, error_understanding, misclassified

from .conftest import assert_untouched, snapshot

H = W = 10
REGION = (slice(2, 7), slice(1, 5))  # rows 2..6, columns 1..4: 20 pixels


class RegionMean(nn.Module):
    """logit_0 = A · (mean of channel 0 over REGION), logit_1 = 0: p_0 = sigmoid(A · mean)."""

    A = 3.0

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Conv2d(3, 1, 1)  # a parameter, so the model has a device and dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0, REGION[0], REGION[1]].mean(dim=(1, 2))
        return torch.stack([self.A * m, torch.zeros_like(m)], dim=1)


def test_paths_and_figures_equal_the_protocol_by_hand() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, H, W) + 0.5  # pixel space = model space (mean 0, std 1): black is 0
    order = torch.randperm(H * W, generator=torch.Generator().manual_seed(1))
    maps = torch.empty(2, H * W)
    maps[0, order] = torch.linspace(1, 0, H * W)  # a strict ranking: pixel order[0] first
    maps[1] = torch.rand(H * W)
    maps = maps.view(2, H, W)
    model = RegionMean()
    steps = 25
    result = error_understanding(model, x, [0, 0], maps, steps=steps, mean=(0, 0, 0), std=(1, 1, 1))

    region = torch.zeros(H, W, dtype=torch.bool)
    region[REGION] = True
    for i in range(2):
        ranking = torch.argsort(maps[i].flatten(), descending=True, stable=True)
        path = []
        for k in range(1, steps):
            keep = torch.zeros(H * W, dtype=torch.bool)
            keep[ranking[: int(H * W * k / steps)]] = True
            kept = keep.view(H, W) & region
            m = float((x[i, 0] * kept).sum()) / int(region.sum())
            path.append(1 / (1 + math.exp(-RegionMean.A * m)))
        path_t = torch.tensor(path)
        assert torch.allclose(result.path[i], path_t, atol=1e-6)
        for p in (0.25, 0.5, 0.75, 1.0):
            first = int(p * steps)
            assert math.isclose(float(result.highest(p)[i]), float(path_t[:first].max()), abs_tol=1e-6)
            best = int(path_t[:first].argmax())
            assert math.isclose(
                float(result.area_at_highest(p)[i]), int(H * W * (best + 1) / steps) / (H * W), abs_tol=1e-6
            )
        insertion = []
        for j in range(26):
            keep = torch.zeros(H * W, dtype=torch.bool)
            keep[ranking[: int(H * W * j / 25)]] = True
            m = float((x[i, 0] * (keep.view(H, W) & region)).sum()) / int(region.sum())
            insertion.append(1 / (1 + math.exp(-RegionMean.A * m)))
        curve = torch.tensor(insertion)
        assert torch.allclose(result.insertion[i], curve, atol=1e-6)
        assert math.isclose(
            float(result.insertion_auc[i]), float(torch.trapezoid(curve, dx=1 / 25)), abs_tol=1e-6
        )
    summary = result.summary()
    assert math.isclose(
        summary["average_highest_confidence@25%"], float(result.highest(0.25).mean()), rel_tol=1e-6
    )
    assert list(result.to_dataframe().columns)[:2] == ["label", "prediction"]


def test_a_map_on_the_evidence_beats_a_map_beside_it() -> None:
    x = torch.rand(1, 3, H, W) + 0.5
    on = torch.zeros(1, H, W)
    on[0][REGION] = 1.0
    good = error_understanding(RegionMean(), x, [0], on, mean=(0, 0, 0), std=(1, 1, 1))
    bad = error_understanding(RegionMean(), x, [0], 1 - on, mean=(0, 0, 0), std=(1, 1, 1))
    assert float(good.highest(0.25)[0]) > float(bad.highest(0.25)[0]) + 0.3
    assert float(good.insertion_auc[0]) > float(bad.insertion_auc[0])


def test_equals_a_naive_loop_on_a_real_cnn() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    maps = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([3, 8])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    before = snapshot(model)
    result = error_understanding(model, x, labels, maps, steps=10, mean=mean, std=std, precision="fp32")
    assert_untouched(model, before)
    black = (-torch.tensor(mean) / torch.tensor(std)).view(3, 1, 1)
    with torch.no_grad():
        for i in range(2):
            ranking = torch.argsort(maps[i].flatten(), descending=True, stable=True)
            for k in range(1, 10):
                keep = torch.zeros(32 * 32, dtype=torch.bool)
                keep[ranking[: int(32 * 32 * k / 10)]] = True
                image = torch.where(keep.view(1, 32, 32), x[i], black)
                p = torch.softmax(model(image[None]), dim=1)[0, labels[i]]
                assert abs(float(result.path[i, k - 1]) - float(p)) < 1e-5
            for j in range(26):
                keep = torch.zeros(32 * 32, dtype=torch.bool)
                keep[ranking[: int(32 * 32 * j / 25)]] = True
                image = torch.where(keep.view(1, 32, 32), x[i], torch.zeros(()))
                p = torch.softmax(model(image[None]), dim=1)[0, labels[i]]
                assert abs(float(result.insertion[i, j]) - float(p)) < 1e-5
        predictions = model(x).argmax(1)
    assert torch.equal(result.predictions, predictions)
    assert torch.equal(misclassified(model, x, labels), predictions != labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": None}, "labels are required"),
        ({"labels": [0, 1, 2]}, "3 entries for 2 images"),
        ({"labels": [0, 5]}, r"labels \[0, 5\] out of range"),
        ({"steps": 1}, "steps must be an int >= 2"),
        ({"ranges": (0.5, 1.5)}, r"ranges must be shares in \(0, 1\]"),
        ({"maps": torch.rand(2, 5, 5)}, "maps must have shape"),
    ],
)
def test_bad_arguments_are_refused_before_any_forward(kwargs, message) -> None:
    class Counting(RegionMean):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Counting.calls += 1
            return super().forward(x)

    args = {"labels": [0, 1], "maps": torch.rand(2, H, W)} | kwargs
    with pytest.raises(ValueError, match=message):
        error_understanding(
            Counting(),
            torch.rand(2, 3, H, W),
            args["labels"],
            args["maps"],
            **{k: v for k, v in kwargs.items() if k in ("steps", "ranges")},
        )
    assert Counting.calls <= 1  # at most the reference forward that finds a label out of range


def test_compare_methods_reports_error_understanding_for_the_misclassified(
    shortcut_model, patch_images
) -> None:
    x, y = patch_images
    labels = y.clone()
    labels[:3] = 1 - labels[:3]  # three images the model now "gets wrong"
    table = compare_methods(
        shortcut_model, x, methods=["hirescam", "gradcam"], layer="features.6", step=64, labels=labels
    )
    wrong = int((shortcut_model(x).argmax(1) != labels).sum())
    assert wrong >= 3
    assert [(r["method"], r["explained"]) for r in table.errors] == [
        ("hirescam", "true"),
        ("hirescam", "predicted"),
        ("gradcam", "true"),
        ("gradcam", "predicted"),
    ]
    for row in table.errors:
        assert row["images"] == wrong
        assert 0 <= row["average_highest_confidence@25%"] <= row["average_highest_confidence@100%"] <= 1
        assert 0 <= row["insertion_auc"] <= 1
    by_class = [r for r in table.errors_by_class if (r["method"], r["explained"]) == ("gradcam", "true")]
    assert sum(r["images"] for r in by_class) == wrong
    assert list(table.errors_dataframe().columns)[:3] == ["method", "explained", "images"]
