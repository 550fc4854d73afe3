"""compare_methods: one row per method with every metric and its unit, no all-zero columns by default,
warm timings, the precision column, a DataFrame, the model left as it came."""

from __future__ import annotations

import math

import pytest
import torch

from camwidget.engine.explainer import Explainer
from camwidget.engine.precision import native_low_precision
from camwidget.metrics import (
    BETTER,
    COLUMNS,
    METRICS,
    UNITS,
    average_drop_increase_gain,
    compare_methods,
    complexity,
    road,
    sparseness,
)

from .conftest import CountingModel, assert_untouched, snapshot


def test_rows_dataframe_and_faithfulness_order(shortcut_model, patch_images) -> None:
    x, y = patch_images
    before = snapshot(shortcut_model)
    table = compare_methods(
        shortcut_model,
        x,
        methods=["hirescam", "Grad-CAM", "eigencam"],
        layer="features.6",
        step=16,
        road_percentiles=(30, 70),
        keep_zero_columns=True,
        metrics="all",
    )
    assert [r["method"] for r in table.rows] == ["hirescam", "gradcam", "eigencam"]
    assert table.columns == list(COLUMNS) and table.dropped == []
    assert set(UNITS) == set(COLUMNS) and set(BETTER) == set(COLUMNS) - {"method", "precision"}
    for row in table.rows:
        assert tuple(row) == COLUMNS
        expected = "bf16" if native_low_precision(torch.device("cpu")) else "fp32"
        assert row["precision"] in ("fp32", expected)  # what ran, never the "auto" setting
        assert 0 <= row["insertion_auc"] <= 1 and 0 <= row["deletion_auc"] <= 1
        assert 0 <= row["average_drop_%"] <= 100 and row["seconds_per_image"] > 0
        assert 0 <= row["drop_in_confidence_prob"] <= 1
        assert -1 <= row["road_morf_prob"] <= 1 and -1 <= row["road_lerf_prob"] <= 1
        assert 0 <= row["sparseness_gini"] < 1 and row["complexity_nats"] >= 0
        assert 0 <= row["coherency"] <= 1 and -1 <= row["random_logit_ssim"] <= 1
    assert torch.equal(table.targets, y)
    assert table.curves["hirescam"].insertion.shape == (len(x), 37)
    assert table.maps["gradcam"].shape == (len(x), 24, 24)
    assert table.road["gradcam"]["most"].shape == (len(x), 2) and table.road["gradcam"]["percentiles"] == (
        30,
        70,
    )
    # Each column is the mean of the per-image metric it names.
    maps = table.maps["gradcam"]
    grad = table.rows[1]
    assert grad["sparseness_gini"] == pytest.approx(float(sparseness(maps).mean()), abs=1e-6)
    assert grad["complexity_nats"] == pytest.approx(float(complexity(maps).mean()), abs=1e-5)
    ad = average_drop_increase_gain(shortcut_model, x, maps)
    assert grad["average_drop_%"] == pytest.approx(ad["average_drop"], abs=1e-4)
    assert grad["average_gain_%"] == pytest.approx(ad["average_gain"], abs=1e-4)
    morf = road(shortcut_model, x, maps, None, (30, 70), "most", 0.01, 0, ties="raster")
    assert grad["road_morf_prob"] == pytest.approx(float(morf.mean()), abs=1e-5)
    # On this planted-shortcut model the class-specific maps find the patch: deletion kills the class fast,
    # and so does ROAD's most-relevant-first imputation; Eigen-CAM ignores the class (random logit SSIM 1).
    hires = table.rows[0]
    assert hires["deletion_auc"] < 0.3 and hires["insertion_auc"] > 0.7
    assert hires["road_morf_prob"] < -0.5 and hires["road_morf_prob"] < hires["road_lerf_prob"]
    assert table.rows[2]["random_logit_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert grad["random_logit_ssim"] < 0.9
    lowest = min(table.rows, key=lambda r: r["deletion_auc"])["method"]
    assert table.best("deletion_auc") == lowest
    assert table.best("insertion_auc") == max(table.rows, key=lambda r: r["insertion_auc"])["method"]
    assert table.best("random_logit_ssim") != "eigencam"
    import pandas as pd

    frame = table.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == ["hirescam", "gradcam", "eigencam"]
    assert list(frame.columns) == list(COLUMNS[1:])
    assert "hirescam" in repr(table) and "AD %↓" in repr(table)
    assert_untouched(shortcut_model, before)


def test_all_zero_columns_are_dropped_by_default(shortcut_model, patch_images) -> None:
    x, _ = patch_images
    table = compare_methods(
        shortcut_model, x, methods=["hirescam", "gradcam"], layer="features.6", metrics=["confidence"]
    )
    # The true patch maps never raise the probability on this model: Average Increase and Gain are 0.
    assert table.dropped == ["average_increase_%", "average_gain_%"]
    assert table.columns == [
        "method",
        "precision",
        "average_drop_%",
        "drop_in_confidence_prob",
        "seconds_per_image",
    ]
    for row in table.rows:
        assert list(row) == table.columns
    assert list(table.to_dataframe().columns) == table.columns[1:]
    assert "not shown: average_increase_%, average_gain_%" in repr(table)
    with pytest.raises(ValueError, match="column"):
        table.best("average_gain_%")
    assert table.curves == {} and table.road == {}


def test_warm_timings_and_the_precision_column(shortcut_model, patch_images, monkeypatch) -> None:
    # Each method is called once on the first image, untimed, by an Explainer of its own (so that a
    # Score-CAM cache cannot serve the timed call), then timed on all images.
    x, _ = patch_images
    calls: list[tuple[int, str, int]] = []
    original = Explainer.__call__

    def spy(self, inputs, *args, **kwargs):
        calls.append((id(self), self.method, inputs.shape[0]))
        return original(self, inputs, *args, **kwargs)

    monkeypatch.setattr(Explainer, "__call__", spy)
    table = compare_methods(
        shortcut_model,
        x,
        methods=["hirescam", "scorecam"],
        layer="features.6",
        metrics=["sparseness"],
        precision="fp32",
    )
    assert [(m, n) for _, m, n in calls] == [
        ("hirescam", 1),
        ("hirescam", 4),
        ("scorecam", 1),
        ("scorecam", 4),
    ]
    assert calls[0][0] != calls[1][0] and calls[2][0] != calls[3][0]
    assert [r["precision"] for r in table.rows] == ["fp32", "fp32"]
    calls.clear()
    compare_methods(
        shortcut_model, x, methods=["hirescam"], layer="features.6", metrics="sparseness", warmup=False
    )
    assert [n for _, _, n in calls] == [4]


def test_zero_maps_give_nan_not_a_score(patch_images) -> None:
    # A model whose logits ignore the layer: every gradient map is zero; sparseness/complexity are NaN.
    class Constant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x).mean((2, 3)) * 0 + torch.tensor([1.0, 0.0])

    x, _ = patch_images
    table = compare_methods(
        Constant(), x, methods=["gradcam"], layer="conv", metrics=["sparseness", "complexity"]
    )
    assert math.isnan(table.rows[0]["sparseness_gini"]) and math.isnan(table.rows[0]["complexity_nats"])
    assert table.dropped == []


def test_bad_arguments_before_any_forward(shortcut_model, patch_images) -> None:
    x, _ = patch_images
    model = CountingModel(shortcut_model)
    with pytest.raises(ValueError, match="unknown method"):
        compare_methods(model, x, methods=["gradcam", "nocam"])
    with pytest.raises(ValueError, match="non-empty"):
        compare_methods(model, x, methods=[])
    with pytest.raises(ValueError, match="step"):
        compare_methods(model, x, methods=["gradcam"], step=0)
    with pytest.raises(TypeError, match="unknown option"):
        compare_methods(model, x, methods=["gradcam"], iterationz=3)
    with pytest.raises(ValueError, match="metrics must be"):
        compare_methods(model, x, methods=["gradcam"], metrics=["road", "speed"])
    with pytest.raises(ValueError, match="metrics must be"):
        compare_methods(model, x, methods=["gradcam"], metrics=[])
    with pytest.raises(ValueError, match="percentiles"):
        compare_methods(model, x, methods=["gradcam"], road_percentiles=(50, 150))
    with pytest.raises(ValueError, match="noise"):
        compare_methods(model, x, methods=["gradcam"], road_noise=-1)
    with pytest.raises(ValueError, match="seed"):
        compare_methods(model, x, methods=["gradcam"], seed=None)
    assert model.calls == 0
    assert set(METRICS) == {
        "insertion_deletion",
        "confidence",
        "road",
        "sparseness",
        "complexity",
        "coherency",
        "random_logit",
    }
