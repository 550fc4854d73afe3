"""camwidget.audit: planted bias found, crash + resume, torchrun shards, corrupt images, bad input."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import camwidget
from camwidget.audit.report import AuditReport
from camwidget.audit.run import shard_path, shard_stores
from camwidget.audit.store import AuditStore, SettingsMismatch, merge_stores
from camwidget.audit.synthetic import corner_regions

from .conftest import assert_rows_equal, count_rows, read_rows

REPO = Path(__file__).resolve().parents[2]
CORNERS = corner_regions(32, 8)


def run(model, data, store, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 32)
    return camwidget.audit(model, data, store=store, **kw)


# -- the planted bias ---------------------------------------------------------------------------------
def test_planted_watermark_is_the_first_shortcut(biased, tmp_path):
    model, test = biased
    report = run(model, test, tmp_path / "a.sqlite", regions=CORNERS, batch_size=64)
    shortcuts = report.shortcuts()
    assert shortcuts, "no shortcut found"
    first = shortcuts[0]
    assert (first.class_name, first.kind, first.region) == ("h_stripes", "region", "top_left")
    assert first.score > 0.2 and first.share > 2 * first.others
    assert len(first.examples) == 6
    # The examples carry the watermark; the other corners are not reported for any class.
    assert all(bool(test.watermarked[i]) for i in first.examples)
    assert not any(s.region in ("top_right", "bottom_left", "bottom_right") for s in shortcuts)
    # The same story from the other views.
    mean_maps = report.class_mean_maps()
    assert set(mean_maps) == {"h_stripes", "v_stripes", "checks"}
    assert mean_maps["h_stripes"].shape == (8, 8)
    assert np.isclose(mean_maps["h_stripes"].sum(), 1.0, atol=1e-4)
    peak = np.unravel_index(mean_maps["h_stripes"].argmax(), (8, 8))
    assert max(peak) <= 1, peak  # the watermark covers pixels 0-4, the cells (0..1, 0..1)
    # The watermark pulls energy off the object: class-0 images carrying it have less on their object.
    df = report.to_dataframe()
    cls0 = df[df["label"] == 0]
    marked0 = test.watermarked.numpy()[cls0.index]
    assert cls0["object_energy"][marked0].mean() < cls0["object_energy"][~marked0].mean() - 0.15
    outside = report.outside_object(0.5)
    assert len(outside) and (outside["object_energy"] < 0.5).all()
    assert outside["object_energy"].is_monotonic_increasing
    marked = {int(i) for i in np.flatnonzero(test.watermarked.numpy())}
    hits = report.in_region("top_left", 0.3)
    assert len(hits) and set(hits.index) <= marked | set(hits.index[hits["predicted"] == 0])
    acc = report.accuracy_by_class()
    assert list(acc.index) == [0, 1, 2] and (acc["images"] == 80).all()
    assert str(first).startswith("'h_stripes' -> top_left")
    assert "h_stripes" in repr(shortcuts)


def test_shortcuts_without_regions_find_the_fixed_location(biased, tmp_path):
    model, test = biased
    report = run(model, test, ":memory:", batch_size=64)
    first = report.shortcuts()[0]
    assert first.class_name == "h_stripes" and first.kind == "hotspot"
    x0, y0, x1, y1 = first.box
    assert x0 < 8 and y0 < 8 and x1 <= 16 and y1 <= 16  # a compact spot on the watermark's corner


# -- crash and resume ---------------------------------------------------------------------------------
class Interrupting(Dataset):
    """Raises KeyboardInterrupt (a Ctrl-C) when item ``at`` is read, once."""

    def __init__(self, base, at):
        self.base, self.at, self.fired = base, at, False

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i == self.at and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return self.base[i]


def test_ctrl_c_then_rerun_equals_uninterrupted(small, tmp_path):
    model, data = small
    run(model, data, tmp_path / "full.sqlite")
    flaky = Interrupting(data, at=71)  # not one of the 16 items the data fingerprint reads first
    with pytest.raises(KeyboardInterrupt):
        run(model, flaky, tmp_path / "resumed.sqlite")
    assert count_rows(tmp_path / "resumed.sqlite") == 64  # two batches of 32 committed, the third lost
    run(model, flaky, tmp_path / "resumed.sqlite")
    assert count_rows(tmp_path / "resumed.sqlite") == len(data)
    assert_rows_equal(
        read_rows(tmp_path / "full.sqlite"), read_rows(tmp_path / "resumed.sqlite"), rtol=0, atol=0
    )


def test_model_crash_mid_batch_then_rerun(small, tmp_path):
    model, data = small
    calls = {"n": 0}

    def crash_on_third_batch(module, args, out):
        if args[0].shape[0] > 1:  # not the one-image probe forwards
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("CUDA error: an illegal memory access (simulated)")

    handle = model.register_forward_hook(crash_on_third_batch)
    with pytest.raises(RuntimeError, match="simulated"):
        run(model, data, tmp_path / "s.sqlite")
    handle.remove()
    assert count_rows(tmp_path / "s.sqlite") == 64
    report = run(model, data, tmp_path / "s.sqlite")
    assert len(report) == len(data) == count_rows(tmp_path / "s.sqlite")
    run(model, data, tmp_path / "full.sqlite")
    assert_rows_equal(read_rows(tmp_path / "full.sqlite"), read_rows(tmp_path / "s.sqlite"), rtol=0, atol=0)
    assert model._forward_hooks == {}


def test_killed_process_loses_at_most_one_batch(small, tmp_path):
    """SIGKILL (a killed kernel) in the middle of the audit; a rerun completes it without duplicates."""
    model, data = small
    store = tmp_path / "killed.sqlite"
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        import torch
        import camwidget
        from camwidget.audit.synthetic import SmallCNN, watermark_dataset

        class Killer:
            def __init__(self, base):
                self.base = base
            def __len__(self):
                return len(self.base)
            def __getitem__(self, i):
                if i == 50:
                    os.kill(os.getpid(), signal.SIGKILL)
                return self.base[i]

        model = SmallCNN(num_classes=3).eval()
        model.load_state_dict(torch.load({str(tmp_path / "weights.pt")!r}))
        camwidget.audit(model, Killer(watermark_dataset(96, seed=2)), store={str(store)!r}, batch_size=16,
                        progress=False)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert count_rows(store) == 48  # batches 0-15, 16-31, 32-47 committed
    run(model, data, store, batch_size=16)
    run(model, data, tmp_path / "full.sqlite", batch_size=16)
    assert count_rows(store) == len(data)
    assert_rows_equal(read_rows(tmp_path / "full.sqlite"), read_rows(store))


# -- torchrun -----------------------------------------------------------------------------------------
def test_two_torchrun_processes_give_the_rows_of_one(tmp_path):
    from . import fixtures_torchrun as fx

    torchrun = Path(sys.executable).with_name("torchrun")
    assert torchrun.exists(), f"torch's torchrun launcher is missing next to {sys.executable}"
    fixtures = Path(fx.__file__)
    store = tmp_path / "dist.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "camwidget.audit",
        "--model",
        f"{fixtures}:model",
        "--dataset",
        f"{fixtures}:dataset",
        "--store",
        str(store),
        "--batch-size",
        "16",
        "--region",
        "top_left=0,0,8,8",
        "--device",
        "cpu",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "AuditReport" in proc.stdout
    assert not list(tmp_path.glob("dist.rank*")), "shards were not merged and removed"
    run(
        fx.model(),
        fx.dataset(),
        tmp_path / "single.sqlite",
        batch_size=16,
        regions={"top_left": (0, 0, 8, 8)},
    )
    assert count_rows(store) == fx.N_IMAGES
    assert_rows_equal(read_rows(tmp_path / "single.sqlite"), read_rows(store))
    with AuditStore(store, readonly=True) as a, AuditStore(tmp_path / "single.sqlite", readonly=True) as b:
        assert a.settings == b.settings


class FakeDist:
    """Stands in for torch.distributed: this process plays rank ``rank`` of ``world_size``."""

    def __init__(self, rank, world_size):
        self.rank, self.world_size, self.active = rank, world_size, True

    def barrier(self):
        pass

    def close(self):
        pass


def test_ranks_write_shards_that_merge_into_the_single_run(small, tmp_path, monkeypatch):
    """Both ranks of a 2-process audit, played one after the other in this process."""
    import camwidget.audit.run as run_module

    model, data = small
    target = tmp_path / "t.sqlite"
    monkeypatch.setattr(run_module, "_Dist", lambda model: FakeDist(1, 2))
    run(model, data, target)  # rank 1: the odd indices, into its shard; only rank 0 merges
    assert not target.exists() and count_rows(shard_path(target, 1, 2)) == 48
    shutil.copy(shard_path(target, 1, 2), tmp_path / "copy.sqlite")
    monkeypatch.setattr(run_module, "_Dist", lambda model: FakeDist(0, 2))
    # Rank 0 merges rank 1's finished shard at its start (played in turn, rank 1 ran first), does the
    # even indices, merges its own shard, and warns that rank 1's shard is gone from the disk.
    with pytest.warns(UserWarning, match="not visible from rank 0"):
        run(model, data, target)
    assert shard_stores(target) == []
    monkeypatch.undo()
    run(model, data, tmp_path / "full.sqlite")
    # The true-class maps of misclassified images are made on each batch's misclassified images
    # together, whose number differs between a shard and the single run: the CPU kernels for another
    # batch size may differ in the last bits (~1e-8 here), which can move a float16 value by one step.
    assert_rows_equal(
        read_rows(tmp_path / "full.sqlite"), read_rows(target), rtol=0, atol=0, loose=("true_map",)
    )
    # Every rank recorded the embeddings (and the embedding map was computed once, after the merge).
    merged = AuditReport.load(target)
    assert np.isfinite(merged.embeddings()).all() and merged.embeddings().shape == (len(data), 16)
    assert merged.embedding_source == {"dim": 16, "kind": "linear input", "layer": "head"}
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT key FROM derived").fetchall() == [("embedding_2d:pca",)]
    # Merging again adds nothing (INSERT OR IGNORE), so an interrupted merge can be rerun.
    assert merge_stores(target, [tmp_path / "copy.sqlite"]) == 0


def test_leftover_shards_are_merged_before_a_rerun(small, tmp_path, monkeypatch):
    """A torchrun audit killed mid-way leaves shards; a later single-process call picks them up."""
    import camwidget.audit.run as run_module

    model, data = small
    target = tmp_path / "t.sqlite"
    monkeypatch.setattr(run_module, "_Dist", lambda model: FakeDist(0, 3))
    with pytest.raises(KeyboardInterrupt):  # rank 0 of 3 stopped in its third batch of 8
        run(model, Interrupting(data, at=48), target, batch_size=8)
    assert count_rows(shard_path(target, 0, 3)) == 16
    monkeypatch.undo()
    with sqlite3.connect(shard_path(target, 0, 3)) as conn:
        in_shard = {i for (i,) in conn.execute("SELECT idx FROM results")}
    seen = []  # every image forwarded in a batch, by its pixel sum (the one-image probes left out)
    handle = model.register_forward_hook(
        lambda m, args, out: seen.extend(args[0].flatten(1).sum(1).tolist()) if args[0].shape[0] > 1 else None
    )
    report = run(model, data, target)
    handle.remove()
    assert len(report) == len(data) and shard_stores(target) == []
    sums = data.images.flatten(1).sum(1).tolist()
    assert not {sums[i] for i in in_shard} & set(seen)  # the shard's rows were not redone
    assert {sums[i] for i in range(len(data)) if i not in in_shard} <= set(seen)  # the others were
    run(model, data, tmp_path / "full.sqlite")
    assert_rows_equal(read_rows(tmp_path / "full.sqlite"), read_rows(target))


# -- corrupt images -----------------------------------------------------------------------------------
def _folder(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs", "fish"):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "dogs" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    good = (root / "fish" / "0.png").read_bytes()
    (root / "fish" / "truncated.png").write_bytes(good[: len(good) // 2])
    return root


def test_corrupt_images_become_error_rows(tmp_path):
    from torchvision import transforms

    from camwidget.audit.synthetic import SmallCNN

    root = _folder(tmp_path)
    model = SmallCNN(num_classes=3, seed=0).eval()
    report = run(
        model, root, tmp_path / "f.sqlite", transform=transforms.ToTensor(), num_workers=1, batch_size=8
    )
    df = report.to_dataframe()
    assert len(df) == 17
    errors = report.errors()
    assert sorted(Path(p).name for p in errors["path"]) == ["corrupt.png", "truncated.png"]
    assert errors["label"].tolist() == [1, 2]  # labels come from the folder even when the image fails
    assert errors["error"].str.len().gt(10).all()
    good = df[df["error"].isna()]
    assert len(good) == 15 and good["predicted"].notna().all() and good["probability"].between(0, 1).all()
    assert report.class_names == ["cats", "dogs", "fish"]
    assert report.accuracy_by_class()["errors"].tolist() == [0, 1, 1]
    assert report.thumbnail(int(errors.index[0])) is None
    assert report.maps(errors.index).max() == 0


class Flaky(Dataset):
    """Every 10th item raises OSError, as a network filesystem might."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i % 10 == 3:
            raise OSError(f"read error on item {i}")
        return self.base[i]


def test_loading_exceptions_become_error_rows(small, tmp_path):
    model, data = small
    report = run(model, Flaky(data), tmp_path / "e.sqlite")
    errors = report.errors()
    assert list(errors.index) == list(range(3, 96, 10))
    assert errors["error"].iloc[0] == "OSError: read error on item 3"
    assert len(report) == len(data)


# -- bad input ----------------------------------------------------------------------------------------
class WrongAt(Dataset):
    def __init__(self, base, at, value):
        self.base, self.at, self.value = base, at, value

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.value if i == self.at else self.base[i]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not an image", "dataset item 70 is a builtins.str"),
        ((np.zeros((32, 32, 3), np.uint8), 1), "dataset item 70: the image is a ndarray"),
        ((torch.zeros(3, 32, 32), 1.5), "dataset item 70: the label is a builtins.float"),
        ((torch.zeros(3, 32, 32), 1, "box"), "dataset item 70: the third element"),
    ],
)
def test_wrong_types_stop_with_a_clear_error_and_keep_stored_rows(small, tmp_path, value, message):
    model, data = small
    with pytest.raises(TypeError, match=message) as info:
        run(model, WrongAt(data, 70, value), tmp_path / "w.sqlite")
    assert "64 rows already stored are kept" in str(info.value)
    assert count_rows(tmp_path / "w.sqlite") == 64


def test_wrong_type_first_item_writes_nothing(small, tmp_path):
    model, data = small
    with pytest.raises(TypeError, match=r"PIL\.Image"):
        run(model, WrongAt(data, 0, (Image.new("RGB", (32, 32)), 0)), tmp_path / "p.sqlite")
    assert not (tmp_path / "p.sqlite").exists()


def test_store_of_another_audit_is_refused_untouched(small, tmp_path):
    model, data = small
    store = tmp_path / "s.sqlite"
    run(model, data, store)
    before = read_rows(store)
    with pytest.raises(
        SettingsMismatch, match=r"method: stored \"hirescam\", now \"gradcam\".*Nothing was written"
    ):
        run(model, data, store, method="gradcam")
    other = type(model)(num_classes=3, seed=99).eval()
    with pytest.raises(SettingsMismatch, match="model"):
        run(other, data, store)
    with pytest.raises(SettingsMismatch, match="regions"):
        run(model, data, store, regions=CORNERS)
    assert_rows_equal(before, read_rows(store), rtol=0, atol=0)
    # overwrite=True starts over on purpose.
    report = run(model, data, store, method="gradcam", overwrite=True)
    assert report.method == "gradcam" and len(report) == len(data)


def test_region_outside_the_image_is_refused_untouched(small, tmp_path):
    model, data = small
    store = tmp_path / "r.sqlite"
    run(model, data, store, regions=CORNERS)
    before = read_rows(store)
    with pytest.raises(ValueError, match="outside the 32x32"):
        run(model, data, store, regions={**CORNERS, "far": (30, 30, 40, 40)})
    with pytest.raises(ValueError, match="not a box inside the image"):
        run(model, data, store, regions={"neg": (-4, 0, 8, 8)})
    with pytest.raises(ValueError, match="must be an identifier"):
        run(model, data, store, regions={"top left": (0, 0, 8, 8)})
    with pytest.raises(ValueError, match="mask but the images are 32x32"):
        run(model, data, store, regions={"m": torch.ones(16, 16, dtype=torch.bool)})
    assert_rows_equal(before, read_rows(store), rtol=0, atol=0)


def test_bad_arguments(small, tmp_path):
    model, data = small
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        run("model", data, tmp_path / "x.sqlite")
    with pytest.raises(TypeError, match="dataset must be"):
        run(model, 42, tmp_path / "x.sqlite")
    with pytest.raises(TypeError, match="TensorDataset"):
        run(model, torch.zeros(4, 3, 32, 32), tmp_path / "x.sqlite")
    with pytest.raises(ValueError, match="not a folder"):
        run(model, str(tmp_path / "nowhere"), tmp_path / "x.sqlite")
    with pytest.raises(ValueError, match="unknown metric"):
        run(model, data, tmp_path / "x.sqlite", metrics=("energy", "iou"))
    with pytest.raises(ValueError, match="unknown method"):
        run(model, data, tmp_path / "x.sqlite", method="nocam")
    with pytest.raises(ValueError, match="class_names has 2 names"):
        run(model, data, tmp_path / "x.sqlite", class_names=["a", "b"])
    with pytest.raises(ValueError, match="batch_size"):
        run(model, data, tmp_path / "x.sqlite", batch_size=0)
    (tmp_path / "junk.sqlite").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ValueError, match="not an SQLite audit store"):
        run(model, data, tmp_path / "junk.sqlite")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE people (name TEXT)").connection.commit()
    with pytest.raises(ValueError, match="not a camwidget audit store"):
        run(model, data, other)
    assert not (tmp_path / "x.sqlite").exists() or count_rows(tmp_path / "x.sqlite") == 0
    with pytest.raises(FileNotFoundError, match=r"run camwidget\.audit"):
        AuditReport.load(tmp_path / "missing.sqlite")


# -- inputs, report API, progress -----------------------------------------------------------------------
def test_dataloader_masks_and_mask_regions(small, tmp_path):
    model, data = small

    class WithMasks(Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            image, label, box = data[i]
            mask = torch.zeros(32, 32, dtype=torch.bool)
            x0, y0, x1, y1 = (int(v) for v in box)
            mask[y0:y1, x0:x1] = True
            return image, torch.tensor(label), mask

    corner = torch.zeros(32, 32, dtype=torch.bool)
    corner[:8, :8] = True
    loader = DataLoader(WithMasks(), batch_size=32, shuffle=True)
    a = run(model, loader, tmp_path / "m.sqlite", regions={"top_left": corner})
    b = run(model, data, tmp_path / "b.sqlite", regions={"top_left": (0, 0, 8, 8)})
    da, db = a.to_dataframe(), b.to_dataframe()
    np.testing.assert_allclose(da["object_energy"], db["object_energy"], atol=1e-5)
    np.testing.assert_allclose(da["region_top_left"], db["region_top_left"], atol=1e-5)
    assert (da["object_box"] == "mask").all() and db["object_box"].iloc[0].startswith("[")
    assert a.regions["top_left"]["bbox"] == [0, 0, 8, 8]


def test_report_tables_and_maps(small, tmp_path):
    model, data = small
    report = run(model, data, tmp_path / "r.sqlite", regions=CORNERS)
    df = report.to_dataframe()
    assert df.index.name == "index" and list(df.index) == list(range(96))
    expected_columns = ["label", "label_name", "predicted", "predicted_name", "probability", "correct"]
    expected_columns += ["error", "object_energy", "region_top_left", "object_box"]
    assert set(expected_columns) <= set(df.columns)
    assert "insertion_auc" not in df
    assert (df["correct"] == (df["label"] == df["predicted"])).all()
    shares = df[[f"region_{k}" for k in CORNERS]]
    assert ((shares >= 0) & (shares <= 1)).all().all()
    maps = report.maps([3, 5])
    assert maps.shape == (2, 8, 8) and maps.min() >= 0 and maps.max() <= 1
    raw = report.maps([3], normalized=False, size=(32, 32))
    assert raw.shape == (1, 32, 32)
    ex = camwidget.Explainer(model, report.layer, report.method)
    expected = ex(data[3][0][None], raw=True)[0].numpy()
    np.testing.assert_allclose(
        report.maps([3], normalized=False)[0], expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max()
    )
    with pytest.raises(KeyError, match="not in this audit"):
        report.maps([1000])
    with pytest.raises(KeyError, match="its regions are: bottom_left, bottom_right, top_left"):
        report.in_region("centre")
    with pytest.raises(ValueError, match="between 0 and 1"):
        report.outside_object(2)
    jpeg = report.thumbnail(0)
    assert jpeg[:2] == b"\xff\xd8"
    assert "96 images, 0 errors" in repr(report)
    loaded = AuditReport.load(tmp_path / "r.sqlite")
    assert loaded.settings == report.settings and len(loaded) == 96
    assert camwidget.AuditReport is AuditReport


def test_progress_bar_shows_images_per_second(small, tmp_path, capsys):
    model, data = small
    run(model, data, tmp_path / "p.sqlite", progress=True)
    err = capsys.readouterr().err
    assert "img/s" in err and "96/96" in err


def test_rerun_of_a_finished_audit_does_no_work(small, tmp_path):
    model, data = small
    run(model, data, tmp_path / "d.sqlite")
    batches = []
    handle = model.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    report = run(model, data, tmp_path / "d.sqlite")
    handle.remove()
    assert len(report) == 96 and set(batches) == {1}  # the one-image probe forwards only


def test_cli_merge(small, tmp_path):
    model, data = small
    run(model, data, tmp_path / "a.sqlite")
    shutil.copy(tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    from camwidget.audit.__main__ import main

    assert (
        main(["merge", str(tmp_path / "c.sqlite"), str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")])
        == 0
    )
    assert count_rows(tmp_path / "c.sqlite") == 96


def test_insertion_deletion_when_the_metrics_module_has_it(small, tmp_path):
    model, data = small
    sub = torch.utils.data.Subset(data, range(8))
    report = run(model, sub, tmp_path / "i.sqlite", metrics=("energy", "insertion", "deletion"))
    df = report.to_dataframe()
    assert df["insertion_auc"].between(0, 1).all() and df["deletion_auc"].between(0, 1).all()


def test_box_masks_follow_the_metrics_convention():
    from camwidget.audit.run import box_masks
    from camwidget.metrics import region_masks

    g = torch.Generator().manual_seed(0)
    corners = torch.rand(40, 2, generator=g) * 30 - 3
    sizes = torch.rand(40, 2, generator=g) * 20
    boxes = torch.cat([corners, corners + sizes], dim=1)
    boxes[0] = torch.tensor([0, 0, 0, 0])  # empty
    assert torch.equal(box_masks(boxes, 24, 32), region_masks(boxes, 40, 24, 32))


def test_nan_images_become_error_rows(small, tmp_path):
    model, data = small
    bad = torch.full((3, 32, 32), float("nan"))
    report = run(model, WrongAt(data, 5, (bad, 1)), tmp_path / "n.sqlite")
    errors = report.errors()
    assert list(errors.index) == [5] and "NaN" in errors["error"].iloc[0] and errors["label"].iloc[0] == 1
    assert len(report) == 96 and report.to_dataframe()["predicted"].notna().sum() == 95
