"""Two models on one dataset (issue 18): where their predictions and their maps disagree, per image and
per class, and the gallery showing both maps side by side."""

from __future__ import annotations

import numpy as np
import pytest

import camwidget
from camwidget.audit.comparison import map_disagreement
from camwidget.audit.report import AuditReport
from camwidget.audit.synthetic import SmallCNN, train_classifier, watermark_dataset

from .test_audit import run


@pytest.fixture(scope="module")
def two_audits(biased, tmp_path_factory):
    """The watermark-biased model and one trained on clean images, audited on the same test set; the
    second explained at an earlier, finer layer (16x16 maps against 8x8)."""
    shortcut, data = biased
    clean = train_classifier(
        SmallCNN(num_classes=3, seed=1), watermark_dataset(600, seed=0, object_strength=0.5, p_watermark=0.0),
        epochs=4, lr=5e-3,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("compare")
    a = run(shortcut, data, folder / "a.sqlite")
    b = run(clean, data, folder / "b.sqlite", layer="features.4")
    return a, b, data


def test_map_disagreement_is_one_minus_pearson():
    rng = np.random.default_rng(0)
    a = rng.random((4, 8, 8)).astype(np.float32)
    b = rng.random((4, 8, 8)).astype(np.float32)
    b[0] = a[0] * 3 + 1  # the same map, rescaled: no disagreement
    b[1] = a[1].max() - a[1]  # its opposite
    b[3] = 0  # flat: nothing to compare
    d = map_disagreement(a, b)
    assert d[0] == pytest.approx(0, abs=1e-6) and d[1] == pytest.approx(2, abs=1e-6) and np.isnan(d[3])
    assert d[2] == pytest.approx(1 - np.corrcoef(a[2].ravel(), b[2].ravel())[0, 1], abs=1e-6)
    fine = np.kron(a, np.ones((1, 2, 2), dtype=np.float32))  # 16x16: compared at the finer shape
    assert map_disagreement(a, fine)[0] < 0.1


def test_two_models_compared_per_image_and_per_class(two_audits):
    a, b, data = two_audits
    comparison = a.compare(b, names=("shortcut", "clean"))
    images = comparison.per_image()
    assert len(images) == len(data)
    da, db = a.to_dataframe(), b.to_dataframe()
    assert (images["predicted_shortcut"] == da.loc[images.index, "predicted_name"]).all()
    assert (images["predicted_clean"] == db.loc[images.index, "predicted_name"]).all()
    assert (images["agree"] == (da.loc[images.index, "predicted"] == db.loc[images.index, "predicted"])).all()
    assert not images["agree"].iloc[0] or images["agree"].all()  # disagreements first
    i = int(images.index[3])
    hand = (
        1
        - np.corrcoef(
            np.repeat(np.repeat(np.maximum(a.maps([i], normalized=False)[0], 0), 2, 0), 2, 1).ravel(),
            np.maximum(b.maps([i], normalized=False)[0], 0).ravel(),
        )[0, 1]
    )
    # the 8x8 map is resized bilinearly to 16x16, not repeated: close to the hand figure, not equal
    assert images.loc[i, "map_disagreement"] == pytest.approx(hand, abs=0.15)
    per_class = comparison.per_class()
    acc_a, acc_b = a.accuracy_by_class(), b.accuracy_by_class()
    for name, row in per_class.iterrows():
        k = a.class_names.index(name)
        assert row["accuracy_shortcut"] == pytest.approx(acc_a.loc[k, "accuracy"])
        assert row["accuracy_clean"] == pytest.approx(acc_b.loc[k, "accuracy"])
        mine = images[images["label_name"] == name]
        assert row["agreement"] == pytest.approx(mine["agree"].mean())
        assert row["map_disagreement"] == pytest.approx(mine["map_disagreement"].mean())
        only_a = (mine["correct_shortcut"] & ~mine["correct_clean"]).sum()
        assert row["only_shortcut_right"] == only_a
    assert per_class["agreement"].is_monotonic_increasing  # where they disagree most first
    assert "accuracy shortcut" in comparison.summary()
    same = a.compare(AuditReport.load(a.path))
    assert same.agree.all() and np.nanmax(same.disagreement) < 1e-6


def test_another_dataset_is_refused(two_audits, biased):
    a, _, _ = two_audits
    other = run(biased[0], watermark_dataset(30, seed=9), ":memory:")
    with pytest.raises(ValueError, match="different data"):
        a.compare(other)


def test_the_gallery_shows_both_maps_side_by_side(two_audits):
    a, b, _ = two_audits
    gallery = camwidget.AuditExplorer(a, compare=b, names=("shortcut", "clean"), page_size=6)
    assert "compare" in gallery.panels and gallery.compare_names == ["shortcut", "clean"]
    assert {c["name"] for c in gallery.compare_classes} == set(a.class_names)
    card = gallery.items[0]
    assert len(card["map_b"]) == card["map_b_h"] * card["map_b_w"] == 16 * 16
    assert "shortcut:" in card["caption"] and "| clean:" in card["caption"]
    gallery.filters = [{"column": "agree", "op": "==", "value": "false"}]
    rows = gallery.rows()
    assert len(rows) == (~a.compare(b).agree).sum() and not rows["agree"].any()
    gallery.close()
