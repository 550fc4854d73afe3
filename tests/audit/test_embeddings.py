"""What slicing needs, recorded by the audit: the penultimate embedding (float16), the logit vector, the
true class's map for a mistake; the store's schema version; the 2-D embedding map kept in the store."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

import camwidget
import camwidget.audit.slices as slices_module
from camwidget.audit.report import AuditReport
from camwidget.audit.store import SCHEMA_VERSION, UnusableStore
from camwidget.engine.explainer import Explainer

from .test_audit import Interrupting, run


def test_the_store_records_embeddings_logits_and_true_class_maps(small, tmp_path):
    model, data = small
    hooks_before = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    report = run(model, data, tmp_path / "e.sqlite")
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()) == hooks_before
    assert report.embedding_source == {"dim": 16, "kind": "linear input", "layer": "head"}
    x = data.images
    with torch.no_grad():
        pooled = model.features(x).mean(dim=(2, 3))  # SmallCNN: what its linear head reads
        logits = model(x)
    emb = report.embeddings()
    assert emb.shape == (len(data), 16) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, pooled.numpy(), rtol=2e-3, atol=2e-3 * float(pooled.abs().max()))
    np.testing.assert_allclose(report.logits(), logits.numpy(), rtol=1e-5, atol=1e-5)
    with sqlite3.connect(tmp_path / "e.sqlite") as conn:
        blob, logit_blob = conn.execute("SELECT embedding, logits FROM results WHERE idx = 0").fetchone()
        schema = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0])
    assert len(blob) == 16 * 2 and len(logit_blob) == 3 * 4  # float16 embedding, float32 logits
    assert schema == SCHEMA_VERSION == 2

    # A misclassified image also gets the map of its TRUE class; a correct one does not need it.
    df = report.to_dataframe()
    wrong = df.index[df["correct"] == False].tolist()  # noqa: E712 (a pandas mask)
    right = df.index[df["correct"] == True].tolist()  # noqa: E712
    assert len(wrong) >= 3, "the fixture model should make a few mistakes on this set"
    true_maps = report.maps(wrong, which="true", normalized=False)
    predicted_maps = report.maps(wrong, which="predicted", normalized=False)
    labels = df.loc[wrong, "label"].astype(int).tolist()
    expected = Explainer(model, report.layer, "hirescam", warn=False)(x[wrong], labels, raw=True)
    scale = float(expected.abs().max())
    np.testing.assert_allclose(true_maps, expected.numpy(), atol=2e-3 * scale)
    assert not np.allclose(true_maps, predicted_maps, atol=1e-3 * scale)  # another class, another map
    assert np.array_equal(report.maps(right[:5], which="true"), report.maps(right[:5]))
    with sqlite3.connect(tmp_path / "e.sqlite") as conn:
        stored = {i for (i,) in conn.execute("SELECT idx FROM results WHERE true_map IS NOT NULL")}
    assert stored == set(wrong)


class ConvHead(nn.Module):
    """No linear layer: a 1x1 convolution to the classes, then global pooling (like SqueezeNet)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))
        self.classifier = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return self.classifier(torch.relu(self.features(x))).mean(dim=(2, 3))


def test_without_a_linear_head_the_explained_layer_pooled_is_the_embedding(small, tmp_path):
    _, data = small
    model = ConvHead().eval()
    report = run(model, data, ":memory:", layer="features.2")
    assert report.embedding_source == {"dim": 6, "kind": "pooled activations", "layer": "features.2"}
    with torch.no_grad():
        expected = model.features(data.images).mean(dim=(2, 3))
    np.testing.assert_allclose(report.embeddings(), expected.numpy(), atol=2e-3 * float(expected.abs().max()))


def _schema_1_store(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE results (idx INTEGER PRIMARY KEY, label INTEGER, map BLOB)")
    conn.execute("INSERT INTO meta VALUES ('schema', '1')")
    conn.commit()
    conn.close()


def test_a_store_of_the_old_schema_is_refused_with_what_to_do(small, tmp_path):
    model, data = small
    old = tmp_path / "old.sqlite"
    _schema_1_store(old)
    with pytest.raises(UnusableStore, match=r"schema 1 .*embeddings.*new store= path.*overwrite=True"):
        AuditReport.load(old)
    with pytest.raises(UnusableStore, match="schema 1"):
        run(model, data, old)
    report = run(model, data, old, overwrite=True)  # the way out the message names
    assert len(report) == len(data) and report.has_embeddings()


def test_the_embedding_map_is_computed_once_and_kept_in_the_store(small, tmp_path, monkeypatch):
    model, data = small
    calls = []
    real = slices_module.embedding_2d
    monkeypatch.setattr(
        slices_module, "embedding_2d", lambda x, method="pca", **kw: calls.append(len(x)) or real(x, method)
    )
    path = tmp_path / "m.sqlite"
    with pytest.raises(KeyboardInterrupt):
        run(model, Interrupting(data, at=71), path)  # 64 rows stored, no embedding map yet
    assert calls == []
    partial = AuditReport.load(path).embedding()
    assert calls == [64] and partial.shape == (64, 2) and np.isfinite(partial).all()
    again = AuditReport.load(path).embedding()  # a reloaded report reads it back (kept by the first)
    assert calls == [64] and np.array_equal(again, partial)
    full = run(model, data, path).embedding()  # the resumed audit added rows: computed again, once
    assert calls == [64, 96] and full.shape == (96, 2)
    run(model, data, path)  # a rerun with nothing to do does not recompute
    assert calls == [64, 96]
    reloaded = AuditReport.load(path)  # no model, no dataset
    assert np.array_equal(reloaded.embedding(), full) and calls == [64, 96]
    # PCA of the embeddings, as camwidget.audit.slices computes it
    np.testing.assert_allclose(full, real(reloaded.embeddings()), atol=1e-5)


def test_slices_and_the_map_need_neither_model_nor_dataset(minority, tmp_path):
    model, data = minority
    live = run(model, data, tmp_path / "s.sqlite")
    reloaded = AuditReport.load(tmp_path / "s.sqlite")
    assert reloaded.dataset is None
    got, want = reloaded.slices(), live.slices()
    assert got and [s.indices.tolist() for s in got] == [s.indices.tolist() for s in want]
    assert [s.description for s in got] == [s.description for s in want]
    assert np.array_equal(reloaded.embedding(), live.embedding())
    assert camwidget.AuditReport is AuditReport
