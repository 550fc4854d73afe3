"""camwidget.show: the static matplotlib figure."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from tests.widget.conftest import random_images, small_preprocess


def test_show_builds_a_figure(model, tmp_path) -> None:
    import camwidget

    fig = camwidget.show(
        model,
        random_images(1)[0],
        methods=("hirescam", "scorecam"),
        preprocess=small_preprocess(),
        curve_steps=8,
    )
    assert isinstance(fig, Figure)
    titles = [a.get_title() for a in fig.axes]
    assert "HiResCAM" in titles and "Score-CAM" in titles
    assert any(t.startswith("Insertion") for t in titles) and any(t.startswith("Deletion") for t in titles)
    out = tmp_path / "show.png"
    fig.savefig(out, dpi=60)
    assert out.stat().st_size > 5_000


def test_show_without_curves_and_with_a_named_target(model) -> None:
    import camwidget

    names = [f"thing {i}" for i in range(10)]
    fig = camwidget.show(
        model,
        random_images(1)[0],
        methods="gradcam",
        target="thing 3",
        class_names=names,
        preprocess=small_preprocess(),
        curves=False,
    )
    assert fig.axes[0].get_title().startswith("thing 3")
    assert len([a for a in fig.axes if a.get_title() == "Grad-CAM"]) == 1


def test_show_rejects_bad_arguments(model) -> None:
    import camwidget

    img = random_images(1)[0]
    with pytest.raises(ValueError, match="unknown method"):
        camwidget.show(model, img, methods=("nocam",), preprocess=small_preprocess())
    with pytest.raises(ValueError, match="explains one image"):
        camwidget.show(model, random_images(2), preprocess=small_preprocess())
    with pytest.raises(ValueError, match="colormap"):
        camwidget.show(model, img, colormap="hot", preprocess=small_preprocess())
