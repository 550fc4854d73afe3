"""Reproducible explanations: a record round-trips through a file, replays to the same maps, and is refused
against any other model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

import camwidget
from camwidget.engine.explainer import Explainer
from camwidget.record import Record, RecordMismatch, model_fingerprint


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def test_a_record_round_trips_and_replays(model, tmp_path) -> None:
    with Explainer(model, ["layer3", "layer4"], "smoothgradcam++", samples=2) as explainer:
        record = explainer.record(X, aug_smooth=True)
        seed = explainer.seed_used
    meta = record.meta
    assert meta["method"] == "smoothgradcam++" and meta["layers"] == ["layer3", "layer4"]
    assert meta["options"] == {"samples": 2, "noise": 0.3, "seed": seed} and meta["seed"] == seed
    assert meta["aug_smooth"] is True and meta["eigen_smooth"] is False and meta["fusion"] == "mean"
    assert meta["target"]["type"] == "ClassIndex" and len(meta["target"]["classes"]) == 2
    assert meta["input_shape"] == [2, 3, 64, 64] and meta["precision_used"] in ("fp32", "bf16", "fp16")
    assert set(meta["versions"]) >= {"camwidget", "torch", "torchvision", "numpy", "python"}
    assert meta["fingerprint"] == model_fingerprint(model) and len(meta["fingerprint"]) == 64

    path = record.save(tmp_path / "explanation")
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as data:  # plain arrays and a JSON string: nothing to unpickle
        assert set(data.files) == {"maps", "inputs", "meta"} and data["meta"].dtype.kind == "U"
        assert json.loads(str(data["meta"]))["method"] == "smoothgradcam++"
    back = Record.load(path, model)
    assert torch.equal(back.maps, record.maps) and torch.equal(back.inputs, X) and back.meta == meta
    assert torch.allclose(back.replay(model), record.maps, atol=1e-6)  # the recorded seed reproduces it


def test_a_record_is_refused_against_another_model(model, tmp_path) -> None:
    record = camwidget.explain(model, X, method="gradcam", layer="layer4", target=5, record=True)
    assert isinstance(record, Record) and record.meta["target"]["classes"] == [5, 5]
    path = record.save(tmp_path / "r.npz")
    other = torchvision.models.resnet18(weights=None).eval()  # same architecture, other weights
    with pytest.raises(RecordMismatch, match=r"another model .*Pass the model the record was made with"):
        Record.load(path, other)
    changed = torchvision.models.resnet18(weights=None).eval()
    changed.load_state_dict(model.state_dict())
    assert model_fingerprint(changed) == model_fingerprint(model)
    with torch.no_grad():
        changed.layer2[1].bn2.running_var[7] += 1e-3  # one buffer element, deep inside: every byte counts
    with pytest.raises(RecordMismatch):
        Record.load(path, changed)
    with pytest.raises(RecordMismatch):
        record.replay(changed)
    read = Record.load(path)  # without a model: readable
    assert torch.equal(read.maps, record.maps)
    assert torch.allclose(read.replay(model), record.maps, atol=1e-6)


def test_files_that_are_not_records_are_refused(tmp_path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match="is not a camwidget record"):
        Record.load(path)
    model = torchvision.models.resnet18(weights=None).eval()
    record = camwidget.explain(model, X[:1], method="hirescam", record=True)
    kept = Record(record.maps, None, record.meta)
    with pytest.raises(ValueError, match="kept no inputs"):
        kept.replay(model)
