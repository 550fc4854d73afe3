"""The true class of a misclassified image (issue 13), kernel side: ``labels=`` and the ``labels`` trait,
the ``true_class`` toggle switching the map and the curves, and the error-understanding figures of the
map shown, equal to :func:`camwidget.metrics.error_understanding` on the same map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traitlets import TraitError

from camwidget.metrics import error_understanding
from camwidget.widget.map_key import MapKey


def key(w) -> MapKey:
    return MapKey.decode(w.maps[0]["key"])


def predictions(w) -> list[int]:
    with torch.no_grad():
        return w.session.model(w.inputs).argmax(1).tolist()


def test_the_toggle_explains_the_true_class_and_the_figures_follow_the_map(make_explorer, model) -> None:
    w = make_explorer(curves=True)
    pred = predictions(w)
    wrong = (pred[0] + 3) % 10  # image 0 is misclassified, image 1 is right
    w.labels = [wrong, pred[1], -1]
    assert w.wait(60)
    assert w.class_index == pred[0] and not w.true_class
    figures = w.understanding
    assert figures["label"] == wrong and figures["explained"] == pred[0] and figures["prediction"] == pred[0]
    cam = torch.from_numpy(w.heatmap_array())[None]
    expected = error_understanding(model, w.inputs[:1], [wrong], cam, ranges=(0.25, 0.5, 1.0))
    assert figures["highest"] == pytest.approx(
        [float(expected.highest(p)[0]) for p in (0.25, 0.5, 1.0)], abs=1e-6
    )
    assert figures["area"] == pytest.approx(
        [float(expected.area_at_highest(p)[0]) for p in (0.25, 0.5, 1.0)], abs=1e-6
    )
    assert figures["insertion_auc"] == pytest.approx(float(expected.insertion_auc[0]), abs=1e-6)

    w.true_class = True  # the toggle: the true class's map, curves and figures
    assert w.class_index == wrong
    assert w.wait(60) and key(w).target == wrong and MapKey.decode(w.curves[0]["key"]).target == wrong
    assert w.understanding["explained"] == wrong and w.understanding["explained_name"] == f"class {wrong}"
    cam = torch.from_numpy(w.heatmap_array())[None]
    expected = error_understanding(model, w.inputs[:1], [wrong], cam, ranges=(0.25, 0.5, 1.0))
    assert w.understanding["insertion_auc"] == pytest.approx(float(expected.insertion_auc[0]), abs=1e-6)

    w.image_index = 1  # it stays on: the true class of the next image, which is right: no figures
    assert w.wait(60) and w.true_class and w.class_index == pred[1] and w.understanding == {}
    w.image_index = 2  # no label: the prediction
    assert w.wait(60) and w.class_index == pred[2]
    w.image_index = 0
    assert w.wait(60) and w.class_index == wrong
    other = next(c for c in range(10) if c not in (wrong, pred[0]))
    w.class_index = other  # a class picked by hand turns the toggle off
    assert not w.true_class and w.class_index == other
    w.class_index = wrong  # and picking the true class turns it on
    assert w.true_class
    w.true_class = False
    assert w.class_index == pred[0]


def test_labels_are_checked_and_may_be_names(make_explorer) -> None:
    names = [f"thing {i}" for i in range(10)]
    w = make_explorer(class_names=names, labels=["thing 3", None, 7], curves=False)
    assert w.labels == [3, -1, 7]
    with pytest.raises(TraitError, match=r"labels has 2 entries for 3 images"):
        w.labels = [1, 2]
    with pytest.raises(TraitError, match=r"target 10 is out of range: the model has 10 classes"):
        w.labels = [10, 1, 1]
    with pytest.raises(ValueError, match=r"no class is called 'zebra'"):
        make_explorer(class_names=names, labels=["zebra", 1, 1])
    w.labels = []  # clearing: every label unknown
    assert w.labels == [-1, -1, -1] and w.understanding == {}


def test_no_figures_for_a_correct_image_or_without_curves_of_its_own(make_explorer) -> None:
    w = make_explorer(curves=False)
    pred = predictions(w)
    w.labels = pred  # all right
    assert w.wait(30) and w.understanding == {}
    assert not any(np.asarray(w.session.labels) != np.asarray(pred))
    w.labels = [(pred[0] + 1) % 10, pred[1], pred[2]]
    assert w.wait(60) and w.understanding["label"] == (pred[0] + 1) % 10  # figures need no curves
