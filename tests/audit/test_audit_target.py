"""``audit(target=...)`` (issue 19): the stored maps explain the score the user names, through the engine's
target protocol (:mod:`camwidget.targets`), exactly as :class:`camwidget.Explainer` explains it; the
insertion/deletion curves score the same target; the target is part of the audit's settings; a per-image
target is refused before any work; the command line takes ``--target``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camwidget
from camwidget.audit.store import SettingsMismatch
from camwidget.audit.synthetic import watermark_dataset
from camwidget.metrics import insertion_deletion
from camwidget.targets import Logit, Probability, Sigmoid

from .conftest import read_rows
from .test_audit import run
from .test_cli import BASE, cli


def _inputs(data) -> torch.Tensor:
    return torch.stack([data[i][0] for i in range(len(data))])


def _stored(rows, key: str, indices, shape) -> np.ndarray:
    return np.stack([rows[int(i)][key] for i in indices]).reshape(len(indices), *shape)


def _assert_float16_close(stored: np.ndarray, want: torch.Tensor) -> None:
    """Stored float16 maps (scaled per image) against float32 ones: within one float16 step of each
    image's largest value."""
    want_np = want.numpy()
    for s, w in zip(stored, want_np, strict=True):
        np.testing.assert_allclose(s, w, rtol=0, atol=1e-3 * float(np.abs(w).max()) + 1e-12)


def test_a_sigmoid_target_is_what_the_stored_maps_explain(biased, tmp_path):
    model, _ = biased
    data = watermark_dataset(48, seed=7, object_strength=0.3)  # faint objects: the model makes mistakes
    report = run(model, data, tmp_path / "s.sqlite", target=Sigmoid(1))
    assert report.target == "sigmoid of class 1" and "sigmoid of class 1" in repr(report)
    gallery = camwidget.AuditExplorer(report, slices=False)
    assert gallery.title.endswith("maps of sigmoid of class 1")
    gallery.close()
    assert "the target <b>sigmoid of class 1</b>" in report.export_html(tmp_path / "s.html").read_text()
    rows = read_rows(tmp_path / "s.sqlite")
    x = _inputs(data)
    explainer = camwidget.Explainer(model, report.layer, report.method)
    want = explainer(x, Sigmoid(1), raw=True)
    shape = tuple(want.shape[1:])
    stored = _stored(rows, "map", range(len(data)), shape)
    _assert_float16_close(stored, want)
    # HiResCAM is linear in the gradient: the sigmoid's map is the logit's times sigmoid'(z) = s (1 - s)
    logits = explainer.predict(x)
    s = torch.sigmoid(logits[:, 1])
    by_hand = (s * (1 - s)).view(-1, 1, 1) * explainer(x, Logit(1), raw=True)
    torch.testing.assert_close(want, by_hand, rtol=1e-4, atol=1e-6 * float(by_hand.abs().max()))
    # ... and not the default, each image's predicted class's logit
    default = explainer(x, raw=True).numpy()
    assert not np.allclose(stored, default, atol=1e-3 * float(np.abs(default).max()))
    # A mistake's true-class map explains its label with the same kind of score (sigmoid)
    labels = np.array([rows[i]["label"] for i in range(len(data))])
    wrong = np.flatnonzero(labels != logits.argmax(dim=1).numpy())
    assert len(wrong) >= 3, f"the model made only {len(wrong)} mistakes: nothing to check"
    assert all(rows[int(i)]["true_map"] is not None for i in wrong)
    true_want = explainer(x[wrong], Sigmoid(labels[wrong].tolist()), raw=True)
    _assert_float16_close(_stored(rows, "true_map", wrong, shape), true_want)


def contrast(output: torch.Tensor) -> torch.Tensor:
    """Class 2's logit against class 0's: a score no class index gives."""
    return output[:, 2] - output[:, 0]


def test_a_callable_target_explains_the_maps_and_scores_the_curves(biased, tmp_path):
    model, _ = biased
    data = watermark_dataset(12, seed=8)
    report = run(
        model, data, tmp_path / "c.sqlite", target=contrast, metrics=("energy", "insertion", "deletion")
    )
    assert report.target == "contrast"
    rows = read_rows(tmp_path / "c.sqlite")
    x = _inputs(data)
    explainer = camwidget.Explainer(model, report.layer, report.method)
    want = explainer(x, contrast, raw=True)
    stored = _stored(rows, "map", range(len(data)), tuple(want.shape[1:]))
    _assert_float16_close(stored, want)
    assert not np.allclose(stored, explainer(x, raw=True).numpy(), atol=1e-3 * float(want.abs().max()))
    # the curves score the same callable (its raw value, not a class's softmax probability)
    curves = insertion_deletion(model, x, explainer(x, contrast), target=contrast)
    got = np.array([[rows[i]["insertion_auc"], rows[i]["deletion_auc"]] for i in range(len(data))])
    want_auc = np.stack([np.asarray(curves.insertion_auc), np.asarray(curves.deletion_auc)], axis=1)
    np.testing.assert_allclose(got, want_auc, rtol=1e-4, atol=1e-5)
    default = insertion_deletion(model, x, explainer(x), target=None)
    assert not np.allclose(got[:, 0], np.asarray(default.insertion_auc), atol=1e-3)


def test_the_target_is_part_of_the_audit_settings_and_bad_ones_fail_first(biased, tmp_path):
    model, _ = biased
    data = watermark_dataset(8, seed=9)
    path = tmp_path / "r.sqlite"
    run(model, data, path, target=Probability(2))
    assert len(run(model, data, path, target=Probability(2))) == 8  # resumed: nothing to do
    with pytest.raises(SettingsMismatch, match="target"):
        run(model, data, path, target=Sigmoid(2))
    with pytest.raises(SettingsMismatch, match="target"):
        run(model, data, path)  # each image's predicted class is another target
    assert camwidget.AuditReport.load(path).target == "probability of class 2"
    for bad, error, needle in (
        ([0, 1], TypeError, "pass one class index"),
        (Sigmoid([0, 1]), ValueError, "pass one class, not 2"),
        ("v_stripes", TypeError, "got str 'v_stripes'"),
        (-1, ValueError, ">= 0"),
        (lambda out: out, ValueError, "one score per image"),  # (N, K): fails on the first image
    ):
        store = tmp_path / "bad.sqlite"
        with pytest.raises(error, match=needle):
            run(model, data, store, target=bad)
        assert not store.exists()


def test_the_command_line_takes_a_target(capsys, tmp_path):
    store = tmp_path / "t.sqlite"
    code, _, err = cli(capsys, *BASE, "--store", store, "--no-progress", "--target", "sigmoid:2")
    assert code == 0, err
    assert camwidget.AuditReport.load(store).target == "sigmoid of class 2"
    code, _, err = cli(
        capsys, *BASE, "--store", tmp_path / "u.sqlite", "--no-progress", "--target", "sigmoid:cat"
    )
    assert code == 2 and len(err) == 1 and "sigmoid:3" in err[0], err
    code, _, err = cli(capsys, *BASE, "--store", tmp_path / "v.sqlite", "--no-progress", "--target", "cat")
    assert code == 2 and len(err) == 1 and "probability:C" in err[0], err
    code, out, _ = cli(capsys, "--help")
    assert "--target" in out and "sigmoid:C" in out
