"""Stores under stress: two writers at once, a bad image of any size, unusable paths, read-only media."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import camwidget
from camwidget.audit.report import AuditReport
from camwidget.audit.store import UnusableStore
from camwidget.audit.synthetic import corner_regions

from .conftest import assert_rows_equal, count_rows, read_rows

REPO = Path(__file__).resolve().parents[2]
CORNERS = corner_regions(32, 8)


def run(model, data, store, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 32)
    return camwidget.audit(model, data, store=store, **kw)


class Replace(Dataset):
    """``base`` with some items replaced: ``{index: item}``."""

    def __init__(self, base, items):
        self.base, self.items = base, items

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.items[i] if i in self.items else self.base[i]


# -- two audits writing one store at once ---------------------------------------------------------------
WRITER = """
import os, sys, time
sys.path.insert(0, {repo!r})
import torch
torch.set_num_threads(1)
import camwidget
from camwidget.audit.synthetic import SmallCNN, watermark_dataset


class Slow:
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        time.sleep(0.01)
        return self.base[i]


model = SmallCNN(num_classes=3, seed=0).eval()
data = Slow(watermark_dataset(96, seed=2))
open(os.path.join({ready!r}, {name!r}), "w").close()
while len(os.listdir({ready!r})) < 2:  # both processes start the audit together
    time.sleep(0.005)
report = camwidget.audit(model, data, store={store!r}, batch_size=16, progress=False)
print("rows", len(report))
"""


def test_two_audits_writing_one_store_at_once_both_finish(tmp_path):
    store, ready = tmp_path / "shared.sqlite", tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.format(repo=str(REPO), ready=str(ready), name=n, store=str(store))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in ("a", "b")
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "IntegrityError" not in err and "rows 96" in out
    from camwidget.audit.synthetic import SmallCNN, watermark_dataset

    model, data = SmallCNN(num_classes=3, seed=0).eval(), watermark_dataset(96, seed=2)
    run(model, data, tmp_path / "one.sqlite", batch_size=16)
    assert_rows_equal(read_rows(tmp_path / "one.sqlite"), read_rows(store))


# -- bad images -----------------------------------------------------------------------------------------
def test_an_image_smaller_than_a_region_is_an_error_row_and_the_audit_goes_on(small, tmp_path):
    model, data = small
    tiny = (torch.zeros(3, 6, 6), 1, torch.tensor([0.0, 0.0, 3.0, 3.0]))
    narrow = (torch.zeros(3, 20, 20), 2)
    bigger = (torch.nn.functional.pad(data[42][0], (0, 16, 0, 16)), int(data[42][1]))
    odd = Replace(data, {40: tiny, 41: narrow, 42: bigger})
    store = tmp_path / "b.sqlite"
    report = run(model, odd, store, regions=CORNERS)
    errors = report.errors()
    assert list(errors.index) == [40, 41]
    assert "6x6" in errors.loc[40, "error"] and "top_left" in errors.loc[40, "error"]
    assert "20x20" in errors.loc[41, "error"] and "top_right" in errors.loc[41, "error"]
    assert len(report) == 96 and errors.loc[40, "label"] == 1
    df = report.to_dataframe()
    assert (
        report.errors().index.tolist() == [40, 41] and 0 <= df.loc[42, "region_top_left"] <= 1
    )  # 48x48 fits
    assert report.maps([42]).shape == (1, 8, 8)  # resized to the audit's map size
    rerun = run(model, odd, store, regions=CORNERS)  # nothing left to do, no error
    assert len(rerun) == 96


def test_an_image_the_model_cannot_take_is_an_error_row(small, tmp_path):
    model, data = small
    gray = (torch.zeros(1, 32, 32), 0)  # one channel: the first convolution refuses it
    report = run(model, Replace(data, {7: gray}), tmp_path / "g.sqlite")
    errors = report.errors()
    assert list(errors.index) == [7] and "(1, 32, 32)" in errors.loc[7, "error"]
    assert len(report) == 96


# -- unusable store paths ---------------------------------------------------------------------------------
def test_a_folder_as_store_says_so(small, tmp_path):
    model, data = small
    with pytest.raises(UnusableStore, match=r"is a folder.*audit\.sqlite"):
        run(model, data, tmp_path)
    with pytest.raises(UnusableStore, match="is a folder"):
        AuditReport.load(tmp_path)


def test_malformed_store_paths_say_what_to_do(small, tmp_path):
    model, data = small
    with pytest.raises(UnusableStore, match="empty"):
        run(model, data, "")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnusableStore, match=r"notes\.txt.*is a file, not a folder"):
        run(model, data, tmp_path / "notes.txt" / "audit.sqlite")
    damaged = tmp_path / "damaged.sqlite"
    run(model, data, damaged)
    raw = bytearray(damaged.read_bytes())
    raw[100:4096] = b"\x00" * (4096 - 100)  # wreck the schema page
    damaged.write_bytes(bytes(raw))
    with pytest.raises(UnusableStore, match=r"damaged\.sqlite.*damaged|not an SQLite"):
        run(model, data, damaged)
    with pytest.raises(UnusableStore, match=r"damaged\.sqlite"):
        AuditReport.load(damaged)


# -- read-only stores -------------------------------------------------------------------------------------
READ_ONLY = """
import sys
sys.path.insert(0, {repo!r})
import torch
torch.set_num_threads(1)
import camwidget
from camwidget.audit.report import AuditReport
from camwidget.audit.store import UnusableStore
from camwidget.audit.synthetic import SmallCNN, watermark_dataset

model = SmallCNN(num_classes=3, seed=0).eval()
data = watermark_dataset(96, seed=2)
report = AuditReport.load({complete!r})
print("loaded", len(report), report.shortcuts().__class__.__name__)
again = camwidget.audit(model, data, store={complete!r}, batch_size=32, progress=False)
print("rerun", len(again))
for store in ({partial!r}, {new!r}):
    try:
        camwidget.audit(model, data, store=store, batch_size=32, progress=False)
    except UnusableStore as exc:
        print("refused", exc)
"""


def _as_other_user(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as an unprivileged user when the tests run as root (root ignores file modes)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root, the read-only test needs util-linux's setpriv"
        return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return cmd


def test_read_only_stores_are_read_and_refused_with_the_fix(small):
    from camwidget.audit.synthetic import SmallCNN, watermark_dataset

    model, data = SmallCNN(num_classes=3, seed=0).eval(), watermark_dataset(96, seed=2)
    base = Path(tempfile.mkdtemp(prefix="camwidget-ro-"))
    try:
        shelf = base / "shelf"
        shelf.mkdir()
        run(model, data, shelf / "complete.sqlite")

        class StopAt(Dataset):
            def __len__(self):
                return len(data)

            def __getitem__(self, i):
                if i == 40:
                    raise KeyboardInterrupt
                return data[i]

        with pytest.raises(KeyboardInterrupt):
            run(model, StopAt(), shelf / "partial.sqlite")
        assert count_rows(shelf / "partial.sqlite") == 32
        home = base / "home"
        home.mkdir()
        for path in (shelf / "complete.sqlite", shelf / "partial.sqlite"):
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        shelf.chmod(0o555)
        base.chmod(0o755)
        home.chmod(0o777)
        script = READ_ONLY.format(
            repo=str(REPO),
            complete=str(shelf / "complete.sqlite"),
            partial=str(shelf / "partial.sqlite"),
            new=str(shelf / "new.sqlite"),
        )
        env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            _as_other_user([sys.executable, "-c", textwrap.dedent(script)]),
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=str(home),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.splitlines()
        assert "loaded 96 Shortcuts" in lines and "rerun 96" in lines
        refused = [line for line in lines if line.startswith("refused")]
        assert len(refused) == 2, proc.stdout
        assert "partial.sqlite" in refused[0] and "read-only" in refused[0] and "32 of 96" in refused[0]
        assert "new.sqlite" in refused[1] and "read-only" in refused[1] and "store=" in refused[1]
    finally:
        for p in (base, base / "shelf"):
            if p.exists():
                p.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
