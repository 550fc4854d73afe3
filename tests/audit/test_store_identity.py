"""A store cannot silently mix audits: the data and the transform are fingerprinted, not just counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

import camwidget
from camwidget.audit.report import AuditReport
from camwidget.audit.store import SettingsMismatch
from camwidget.audit.synthetic import watermark_dataset

from .conftest import count_rows, read_rows


def run(model, data, store, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 32)
    return camwidget.audit(model, data, store=store, **kw)


class PilImages(Dataset):
    """The synthetic images as 32x32 PIL images (raw data that needs a transform)."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, label, _ = self.base[i]
        rgb = ((image * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(np.ascontiguousarray(rgb)), label


def test_another_dataset_of_the_same_length_is_refused(small, tmp_path):
    model, data = small
    store = tmp_path / "s.sqlite"
    run(model, data, store)
    before = read_rows(store)
    other = watermark_dataset(len(data), seed=7)  # same length, other images
    with pytest.raises(SettingsMismatch, match=r"data differs.*same length 96") as info:
        run(model, other, store)
    assert "Nothing was written" in str(info.value)
    assert read_rows(store).keys() == before.keys()


def test_a_relabelled_or_edited_dataset_is_refused(small, tmp_path):
    model, data = small
    store = tmp_path / "s.sqlite"
    run(model, data, store)
    edited = watermark_dataset(96, seed=2)
    edited.images[95, :, :4, :4] += 1.0  # one sampled image changed (the last index is always sampled)
    with pytest.raises(SettingsMismatch, match="data differs"):
        run(model, edited, store)


def test_the_same_data_with_another_transform_is_refused(small, tmp_path):
    model, data = small
    raw = PilImages(data)
    store = tmp_path / "t.sqlite"
    plain = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    run(model, raw, store, transform=plain)
    assert count_rows(store) == 96
    other = T.Compose([T.ToTensor(), T.Normalize((0.4,) * 3, (0.5,) * 3)])
    with pytest.raises(SettingsMismatch, match=r"transform differs.*Normalize") as info:
        run(model, raw, store, transform=other)
    assert "data differs" not in str(info.value)  # it says what differs, and only that
    # The same transform object again resumes (nothing to do), a fresh equal one too.
    again = run(model, raw, store, transform=T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]))
    assert len(again) == 96


def test_a_transform_with_the_same_description_but_other_output_is_refused(small, tmp_path):
    model, data = small
    raw = PilImages(data)
    store = tmp_path / "u.sqlite"

    class Scale:
        def __init__(self, k):
            self.k = k

        def __call__(self, image):
            return T.functional.to_tensor(image) * self.k

        def __repr__(self):
            return "Scale()"  # hides k: only the inputs it produces tell the transforms apart

    run(model, raw, store, transform=Scale(1.0))
    with pytest.raises(SettingsMismatch, match=r"transform differs.*other inputs"):
        run(model, raw, store, transform=Scale(2.0))


def test_normalisation_is_read_from_the_transform(small, tmp_path):
    model, data = small
    tf = T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
    report = run(model, PilImages(data), tmp_path / "n.sqlite", transform=tf)
    assert report.display["mean"] == [0.5, 0.5, 0.5] and report.display["std"] == [0.25, 0.25, 0.25]


def test_a_loaded_report_checks_the_dataset_it_is_given(small, tmp_path):
    model, data = small
    run(model, data, tmp_path / "l.sqlite")
    right = AuditReport.load(tmp_path / "l.sqlite", dataset=watermark_dataset(96, seed=2))
    assert torch.equal(right.inputs([5])[0], data[5][0])
    wrong = AuditReport.load(tmp_path / "l.sqlite", dataset=watermark_dataset(96, seed=9))
    with pytest.raises(SettingsMismatch, match="data differs"):
        wrong.inputs([5])
