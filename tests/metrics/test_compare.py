"""compare_methods: one row per method with every metric, a DataFrame, the model left as it came."""

from __future__ import annotations

import pytest
import torch

from camwidget.metrics import COLUMNS, compare_methods

from .conftest import assert_untouched, snapshot


def test_rows_dataframe_and_faithfulness_order(shortcut_model, patch_images) -> None:
    x, y = patch_images
    before = snapshot(shortcut_model)
    table = compare_methods(
        shortcut_model, x, methods=["hirescam", "Grad-CAM", "eigencam"], layer="features.6", step=16
    )
    assert [r["method"] for r in table.rows] == ["hirescam", "gradcam", "eigencam"]
    for row in table.rows:
        assert tuple(row) == COLUMNS
        assert 0 <= row["insertion_auc"] <= 1 and 0 <= row["deletion_auc"] <= 1
        assert 0 <= row["average_drop"] <= 100 and row["seconds_per_image"] > 0
    assert torch.equal(table.targets, y)
    assert table.curves["hirescam"].insertion.shape == (len(x), 37)
    assert table.maps["gradcam"].shape == (len(x), 24, 24)
    # On this planted-shortcut model the class-specific maps find the patch: deletion kills the class fast.
    hires = table.rows[0]
    assert hires["deletion_auc"] < 0.3 and hires["insertion_auc"] > 0.7
    lowest = min(table.rows, key=lambda r: r["deletion_auc"])["method"]
    assert table.best("deletion_auc") == lowest
    assert table.best("insertion_auc") == max(table.rows, key=lambda r: r["insertion_auc"])["method"]
    import pandas as pd

    frame = table.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == ["hirescam", "gradcam", "eigencam"]
    assert list(frame.columns) == list(COLUMNS[1:])
    assert "hirescam" in repr(table)
    assert_untouched(shortcut_model, before)


def test_bad_arguments(shortcut_model, patch_images) -> None:
    x, _ = patch_images
    with pytest.raises(ValueError, match="unknown method"):
        compare_methods(shortcut_model, x, methods=["gradcam", "nocam"])
    with pytest.raises(ValueError, match="non-empty"):
        compare_methods(shortcut_model, x, methods=[])
    with pytest.raises(ValueError, match="step"):
        compare_methods(shortcut_model, x, methods=["gradcam"], step=0)
    with pytest.raises(TypeError, match="unknown option"):
        compare_methods(shortcut_model, x, methods=["gradcam"], iterationz=3)
    with pytest.raises(ValueError, match="column"):
        compare_methods(shortcut_model, x, methods=["gradcam"], layer="features.6", step=64).best("speed")
