"""Misclassifications explained (issue 13): a small trained model that makes mistakes, audited with
error understanding: the true class's map beside the prediction's, the per-class table, the confusion
pairs, and the shareable JSON report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from camwidget.audit.report import AuditReport
from camwidget.audit.store import AuditStore, merge_stores
from camwidget.audit.synthetic import corner_regions
from camwidget.engine.explainer import Explainer
from camwidget.metrics import error_understanding

from .test_audit import run

NORM = {"mean": (0.5,) * 3, "std": (0.5,) * 3}


@pytest.fixture(scope="module")
def audited(minority, tmp_path_factory):
    """The minority model (a stamp on a quarter of h_stripes) audited with error understanding."""
    model, data = minority
    path = tmp_path_factory.mktemp("mistakes") / "m.sqlite"
    report = run(
        model, data, path, regions=corner_regions(32, 8), metrics=("energy", "error_understanding"), **NORM
    )
    return model, data, report, path


def test_error_understanding_table_equals_the_metric_on_both_maps(audited):
    model, data, report, _ = audited
    df = report.to_dataframe()
    wrong = np.array(df.index[df["correct"] == False])  # noqa: E712 (a pandas mask)
    assert 10 <= len(wrong) <= 40, "the model should make a few mistakes"
    table = report.error_understanding()
    print("\n" + table.round(3).to_string())
    labels = df.loc[wrong, "label"].astype(int).to_numpy()
    classes = [report.class_names[c] for c in sorted(set(labels.tolist()))]
    assert list(table.index) == [(c, m) for c in [*classes, "all"] for m in ("true", "predicted")]
    for c in classes:
        assert table.loc[(c, "true"), "images"] == (df.loc[wrong, "label_name"] == c).sum()
    assert table.loc[("all", "true"), "images"] == len(wrong)

    # The same figures from the metric itself, on the audited inputs and the explainer's two maps.
    x = data.images[wrong]
    explainer = Explainer(model, report.layer, "hirescam", warn=False)
    maps = {"true": explainer(x, labels.tolist()), "predicted": explainer(x)}
    for which, m in maps.items():
        eu = error_understanding(model, x, labels.tolist(), m, **NORM)
        for key, value in eu.summary().items():
            assert table.loc[("all", which), key] == pytest.approx(value, abs=2e-3), (which, key)
        first = classes[0]
        mine = torch.as_tensor(np.flatnonzero(labels == report.class_names.index(first)))
        for key, value in eu.summary_of(mine).items():
            assert table.loc[(first, which), key] == pytest.approx(value, abs=2e-3), (first, which, key)
    # The map of the true class finds more of the true class than the map of the wrong prediction.
    assert (
        table.loc[("all", "true"), "insertion_auc"] > table.loc[("all", "predicted"), "insertion_auc"] + 0.05
    )
    assert (
        table.loc[("all", "true"), "average_highest_confidence@25%"]
        > table.loc[("all", "predicted"), "average_highest_confidence@25%"]
    )
    # Each misclassified image's confidence paths are kept for the gallery.
    paths = report.confidence_paths(int(wrong[0]))
    assert paths["kept"].shape == paths["true"].shape == paths["predicted"].shape == (24,)
    assert report.confidence_paths(int(df.index[df["correct"] == True][0])) is None  # noqa: E712


def test_without_the_recorded_curves_the_model_computes_them_from_the_stored_maps(audited, minority):
    model, data, recorded_report, _ = audited
    plain = run(model, data, ":memory:", **NORM)  # no error_understanding metric
    with pytest.raises(ValueError, match="did not record error understanding; pass model="):
        plain.error_understanding()
    computed = plain.error_understanding(model=model)
    recorded = recorded_report.error_understanding()
    assert list(computed.index) == list(recorded.index)
    # from the float16 maps at the layer's resolution, resized as the report does: close, not identical
    np.testing.assert_allclose(computed.to_numpy(), recorded.to_numpy(), atol=0.05)


def test_confusion_matrix_and_pairs_equal_a_hand_count(audited):
    _, _, report, _ = audited
    df = report.to_dataframe()
    matrix = report.confusion()
    hand = pd.crosstab(df["label_name"], df["predicted_name"]).reindex(
        index=matrix.index, columns=matrix.columns, fill_value=0
    )
    assert (matrix.to_numpy() == hand.to_numpy()).all()
    assert np.trace(matrix.to_numpy()) == df["correct"].sum()
    pairs = report.confusion_pairs(examples=4)
    off = [(a, b, n) for (a, b), n in hand.stack().items() if a != b and n > 0]
    assert sorted(zip(pairs["label_name"], pairs["predicted_name"], pairs["count"], strict=True)) == sorted(
        off
    )
    assert pairs["count"].is_monotonic_decreasing
    for row in pairs.itertuples():
        members = df[(df["label_name"] == row.label_name) & (df["predicted_name"] == row.predicted_name)]
        assert row.share == pytest.approx(row.count / (df["label_name"] == row.label_name).sum())
        expected = members.sort_values("probability", ascending=False, kind="stable").index[:4].tolist()
        assert row.examples == expected  # the most confident mistakes first


def test_the_json_report_carries_every_finding(audited, tmp_path):
    model, _, report, _ = audited
    found = report.shortcuts(model=model)  # tested: flip rates
    path = report.export_json(tmp_path / "r.json", shortcuts=found)
    data = json.loads(path.read_text("utf-8"))
    assert data["audit"]["images"] == len(report) and data["audit"]["method"] == "hirescam"
    assert set(data["class_mean_maps"]) == set(report.class_mean_maps())
    h_stripes = np.array(data["class_mean_maps"]["h_stripes"]["map"])
    assert h_stripes.shape == report.maps_shape() and h_stripes.sum() == pytest.approx(1, abs=1e-4)
    first = data["shortcuts"][0]
    assert first["class"] == "h_stripes" and first["where"].startswith("top_left")
    cf = found[0].counterfactual
    assert first["counterfactual"]["paste_flip_rate"] == pytest.approx(cf.paste_flip_rate)
    assert first["counterfactual"]["pasted"] == cf.pasted and first["examples"] == found[0].examples
    assert data["confusion"]["matrix"] == report.confusion().to_numpy().tolist()
    assert [(p["label"], p["predicted"], p["count"]) for p in data["confusion_pairs"]] == list(
        zip(*(report.confusion_pairs()[c] for c in ("label_name", "predicted_name", "count")), strict=True)
    )
    slices = report.slices()
    assert [s["description"] for s in data["slices"]] == [s.description for s in slices[:8]]
    assert data["slices"][0]["indices"] == slices[0].indices.tolist()
    rows = {(r["class"], r["map"]): r for r in data["error_understanding"]}
    table = report.error_understanding()
    assert rows[("all", "true")]["insertion_auc"] == pytest.approx(
        table.loc[("all", "true"), "insertion_auc"]
    )
    assert data["error_understanding_source"] == "recorded by the audit"


def test_a_reloaded_report_exports_without_model_or_dataset(audited, tmp_path):
    _, _, _, path = audited
    report = AuditReport.load(path)
    out = report.export_json(tmp_path / "r.json")
    data = json.loads(out.read_text("utf-8"))
    assert all(s["counterfactual"] is None for s in data["shortcuts"])  # untested without the model
    assert data["error_understanding"] and data["slices"]
    html = report.export_html(tmp_path / "r.html").read_text("utf-8")
    assert html.count('src="data:image/jpeg;base64,') >= 20
    assert "<script" not in html and "http://" not in html and "https://" not in html
    for text in ("Confusion matrix", "Slices", "Error understanding", "not tested by the counterfactual"):
        assert text in html


class Agreeing(Dataset):
    """The images of ``data`` labelled with what ``model`` predicts: an audit without a mistake."""

    def __init__(self, model, data, n=48):
        self.images = data.images[:n]
        with torch.no_grad():
            self.labels = model(self.images).argmax(dim=1).tolist()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def test_an_audit_without_mistakes_reports_zero_images(minority, tmp_path):
    model, data = minority
    report = run(model, Agreeing(model, data), ":memory:", metrics=("energy", "error_understanding"), **NORM)
    for table in (report.error_understanding(), report.error_understanding(model=model)):
        assert list(table.index) == [("all", "true"), ("all", "predicted")]
        assert (table["images"] == 0).all() and table.drop(columns="images").isna().all().all()
    assert report.confusion_pairs().empty and np.trace(report.confusion().to_numpy()) == 48
    assert "No misclassified image" in report.export_html(tmp_path / "r.html").read_text("utf-8")


def test_merged_shards_keep_what_either_measured(tmp_path):
    settings = {"method": "hirescam", "layer": "features", "regions": {}, "metrics": ["error_understanding"]}
    first, second = AuditStore(tmp_path / "a.sqlite"), AuditStore(tmp_path / "b.sqlite")
    for store, meta in ((first, {"steps": 25}), (second, {"kept": [0.04, 0.08], "steps": 25})):
        store.init_settings(settings)
        store.set_meta("error_understanding", meta)  # rank 0 had no mistake; rank 1 measured the path
        store.close()
    merge_stores(tmp_path / "t.sqlite", [tmp_path / "a.sqlite", tmp_path / "b.sqlite"])
    with AuditStore(tmp_path / "t.sqlite", readonly=True) as merged:
        assert merged.get_meta("error_understanding") == {"kept": [0.04, 0.08], "steps": 25}
