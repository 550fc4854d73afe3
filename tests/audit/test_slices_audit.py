"""Slices of real audits (issue 18): a planted subgroup that flips a trained CNN is the top slice, found
from what the audit recorded alone (no feature, no group label, no model), also when its mistakes are
not one cell of the confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camwidget.audit.report import AuditReport
from camwidget.audit.synthetic import SmallCNN, corner_regions, train_classifier, watermark_dataset

from .test_audit import run

STAMP = 5  # the synthetic watermark's side in pixels


def stamp(dataset, members: np.ndarray, corner: str, value: float = 2.0) -> None:
    """Paint the 5x5 stamp into ``corner`` ("tl" or "br") of the images ``members`` (a bool mask)."""
    n = dataset.images.shape[-1]
    ys = slice(0, STAMP) if corner[0] == "t" else slice(n - STAMP, n)
    xs = slice(0, STAMP) if corner[1] == "l" else slice(n - STAMP, n)
    dataset.images[torch.from_numpy(members), :, ys, xs] = value


def subgroup_of(labels: np.ndarray, cls: int, share: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    members = np.flatnonzero(labels == cls)
    chosen = rng.choice(members, int(share * len(members)), replace=False)
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return mask


def caught(top, subgroup: np.ndarray) -> tuple[float, float]:
    """(share of the subgroup in the slice, share of the slice from the subgroup)."""
    inside = subgroup[top.indices].sum()
    return inside / subgroup.sum(), inside / top.size


def test_the_top_slice_of_a_real_audit_is_the_planted_subgroup(biased, tmp_path):
    """The model learnt the top-left stamp as 'h_stripes' (90% of that class carry it in training).
    In the audited set, 20% of 'v_stripes' images carry the stamp too: they flip."""
    model, _ = biased
    data = watermark_dataset(360, seed=1, object_strength=0.5)
    labels = data.labels.numpy()
    subgroup = subgroup_of(labels, cls=1, share=0.2, seed=0)
    stamp(data, subgroup, "tl")
    report = run(model, data, tmp_path / "p.sqlite", regions=corner_regions(32, 8))
    df = report.to_dataframe()
    assert (df["predicted"][subgroup] == 0).mean() > 0.8  # the stamp flips them to h_stripes
    assert df["correct"][~subgroup & (labels == 1)].mean() > 0.9  # the rest of the class is fine

    # Found from the stored embeddings, maps, labels and predictions, by a report that has no model.
    slices = AuditReport.load(tmp_path / "p.sqlite").slices()
    top = slices[0]
    recall, precision = caught(top, subgroup)
    print(
        f"planted subgroup: {subgroup.sum()} images; top slice {top.size}: "
        f"recall {recall:.2f}, precision {precision:.2f}"
    )
    assert recall >= 0.8 and precision >= 0.5, (recall, precision, top.description)
    assert top.label_name == "v_stripes" and top.accuracy < 0.2 < 0.9 < top.baseline_accuracy
    assert top.region == "top_left" and top.location == "top-left"  # where the maps sit, named
    assert "'v_stripes'" in top.description and "'h_stripes'" in top.description
    assert "top_left" in top.description


@pytest.fixture(scope="module")
def two_shortcuts():
    """A 4-class SmallCNN that learnt two stamps: top-left means 'h_stripes', bottom-right 'checks'."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = watermark_dataset(800, seed=0, object_strength=0.5, num_classes=4)  # class 0: top-left
        rng = np.random.default_rng(5)
        labels = train.labels.numpy()
        stamp(train, (labels == 2) & (rng.random(len(labels)) < 0.9), "br")
        model = train_classifier(SmallCNN(num_classes=4, seed=0), train, epochs=4, lr=5e-3, seed=0)
    finally:
        torch.set_num_threads(before)
    return model


def test_a_subgroup_whose_mistakes_spread_over_two_classes_is_one_slice(two_shortcuts, tmp_path):
    """20% of 'v_stripes' carry both stamps, each fainter: the model takes some for 'h_stripes' and
    some for 'checks'. No single confusion cell holds the subgroup; the top slice does."""
    model = two_shortcuts
    data = watermark_dataset(480, seed=1, object_strength=0.5, num_classes=4)
    labels = data.labels.numpy()
    rng = np.random.default_rng(1)
    stamp(data, (labels == 2) & (rng.random(len(labels)) < 0.9), "br")
    subgroup = subgroup_of(labels, cls=1, share=0.2, seed=2)
    stamp(data, subgroup, "tl", 1.0)
    stamp(data, subgroup, "br", 1.3)
    report = run(model, data, tmp_path / "q.sqlite")
    predicted = report.to_dataframe()["predicted"].to_numpy()
    cells = np.bincount(predicted[subgroup], minlength=4)
    assert cells[1] == 0 and cells[0] >= 3 and cells[2] >= 3, cells  # wrong, two ways
    assert cells.max() < 0.8 * subgroup.sum()  # the biggest confusion cell holds < 80% of it

    top = report.slices()[0]
    recall, precision = caught(top, subgroup)
    print(
        f"split subgroup: cells {cells.tolist()}; top slice {top.size}: "
        f"recall {recall:.2f}, precision {precision:.2f}"
    )
    assert recall >= 0.8 and precision >= 0.5, (recall, precision, top.description)
    assert top.label_name == "v_stripes" and set(top.predictions) >= {0, 2}
