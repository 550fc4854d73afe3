"""Shared fixtures for the audit tests: a planted-bias model trained once, small datasets, row helpers."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
import torch

from camwidget.audit.synthetic import SmallCNN, train_classifier, watermark_dataset


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids spinning threads (restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def biased():
    """(model, test set): SmallCNN trained on data where 90% of class 0 carry a top-left watermark."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # this fixture may be set up before the module's one_thread fixture
    try:
        train = watermark_dataset(600, seed=0, object_strength=0.5)
        model = train_classifier(SmallCNN(num_classes=3, seed=0), train, epochs=4, lr=5e-3, seed=0)
    finally:
        torch.set_num_threads(before)
    test = watermark_dataset(240, seed=1, object_strength=0.5)
    return model, test


@pytest.fixture
def small(biased):
    """(the trained model, a 96-image dataset) for fast mechanics tests."""
    return biased[0], watermark_dataset(96, seed=2)


def read_rows(path, exclude=()):
    """All result rows of a store as {idx: {column: value}}, with maps, embeddings, logits and curves
    decoded to float arrays."""
    conn = sqlite3.connect(str(path))
    try:
        cur = conn.execute("SELECT * FROM results ORDER BY idx")
        names = [d[0] for d in cur.description]
        rows = {}
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            for blob, scale in (
                ("map", "map_scale"),
                ("true_map", "true_map_scale"),
                ("embedding", "embedding_scale"),
            ):
                if row.get(blob) is not None:
                    row[blob] = np.frombuffer(row[blob], dtype=np.float16).astype(np.float32) * row[scale]
            for blob in (
                "logits",
                "eu_true_path",
                "eu_true_insertion",
                "eu_predicted_path",
                "eu_predicted_insertion",
            ):
                if row.get(blob) is not None:
                    row[blob] = np.frombuffer(row[blob], dtype="<f4").copy()
            for key in exclude:
                row.pop(key, None)
            rows[row["idx"]] = row
        return rows
    finally:
        conn.close()


def assert_rows_equal(a, b, *, rtol=1e-3, atol=1e-4, loose=()):
    """Same indices, same values (floats and maps within tolerance, everything else exactly); the
    float16 arrays named in ``loose`` within one float16 step of their largest value, and their
    scales within 1e-5, even when rtol = atol = 0."""
    assert sorted(a) == sorted(b)
    for idx in a:
        ra, rb = a[idx], b[idx]
        assert ra.keys() == rb.keys(), idx
        for key in ra:
            va, vb = ra[key], rb[key]
            if isinstance(va, np.ndarray):
                tol = atol * max(1.0, float(np.abs(va).max()))
                if key in loose:  # one float16 step of the array's largest value
                    tol = max(tol, 1e-3 * float(np.abs(va).max()))
                np.testing.assert_allclose(va, vb, rtol=rtol, atol=tol, err_msg=f"#{idx} {key}")
            elif isinstance(va, float) and isinstance(vb, float):
                tol = max(rtol, 1e-5) if key.removesuffix("_scale") in loose else rtol
                assert math.isclose(va, vb, rel_tol=tol, abs_tol=atol), (idx, key, va, vb)
            elif key == "thumb":
                continue  # JPEG bytes of identical pixels; decoded equality is implied by the inputs
            else:
                assert va == vb, (idx, key, va, vb)


def count_rows(path) -> int:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        conn.close()


MINORITY = {"object_strength": 0.4, "p_watermark": 0.25}
"""A planted minority shortcut: a quarter of class 0's images carry the stamp, faint objects."""


@pytest.fixture(scope="session")
def minority():
    """(model, test set): SmallCNN trained where only 25% of class 0 carry the top-left stamp.

    The stamp drives the model (pasted onto other classes it flips their predictions) but the class's
    mean map barely shows it: the shortcut of a minority.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = watermark_dataset(600, seed=0, **MINORITY)
        model = train_classifier(SmallCNN(num_classes=3, seed=0), train, epochs=6, lr=5e-3, seed=0)
    finally:
        torch.set_num_threads(before)
    test = watermark_dataset(240, seed=1, **MINORITY)
    return model, test
