"""Long audits: metrics commit in small chunks with progress, Ctrl-C says what is stored, shards are found."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import camwidget
import camwidget.audit.run as run_module
from camwidget.audit.report import AuditReport
from camwidget.audit.store import shard_path, shard_stores

from .conftest import assert_rows_equal, count_rows, read_rows

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).with_name("fixtures_torchrun.py")


def run(model, data, store, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 32)
    return camwidget.audit(model, data, store=store, **kw)


class CtrlCAt:
    """Wraps the audit's insertion/deletion: a Ctrl-C arrives when the metric reaches image ``at``."""

    def __init__(self, real, at):
        self.real, self.at, self.seen, self.calls = real, at, 0, []

    def __call__(self, model, x, maps, **kw):
        self.calls.append(int(x.shape[0]))
        if self.seen + x.shape[0] > self.at:
            raise KeyboardInterrupt
        self.seen += int(x.shape[0])
        return self.real(model, x, maps, **kw)


def test_metrics_commit_in_small_chunks_and_an_interrupt_keeps_them(small, tmp_path, monkeypatch):
    model, data = small
    sub = torch.utils.data.Subset(data, range(64))
    store = tmp_path / "m.sqlite"
    metrics = ("energy", "insertion", "deletion")
    stop = CtrlCAt(run_module.insertion_deletion, at=45)
    monkeypatch.setattr(run_module, "insertion_deletion", stop)
    with pytest.raises(KeyboardInterrupt, match=r"45 of 64 images are stored in .*m\.sqlite.*resume"):
        run(model, sub, store, metrics=metrics, commit_seconds=0)
    assert count_rows(store) == 45  # every image committed on its own, not the whole batch of 32 lost
    assert max(stop.calls) == 1
    monkeypatch.undo()
    report = run(model, sub, store, metrics=metrics)
    assert len(report) == 64
    run(model, sub, tmp_path / "full.sqlite", metrics=metrics)
    assert_rows_equal(read_rows(tmp_path / "full.sqlite"), read_rows(store), rtol=1e-4, atol=1e-5)


def test_progress_moves_inside_a_batch_of_long_metrics(small, tmp_path, capsys):
    model, data = small
    sub = torch.utils.data.Subset(data, range(8))
    run(model, sub, tmp_path / "p.sqlite", metrics=("energy", "insertion"), progress=True, batch_size=8)
    err = capsys.readouterr().err
    assert "insertion/deletion" in err and "forwards" in err  # the bar reports the metric's own progress
    assert "8/8" in err


def test_python_ctrl_c_message_says_what_is_stored(small, tmp_path):
    model, data = small

    class Stop(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            if i == 71:  # not one of the items the data fingerprint reads before the audit starts
                raise KeyboardInterrupt
            return data[i]

    with pytest.raises(KeyboardInterrupt) as info:
        run(model, Stop(), tmp_path / "c.sqlite")
    message = str(info.value)
    assert message.startswith("audit interrupted: 64 of 96 images are stored in")
    assert "run the same audit again to resume" in message and "\n" not in message


def test_load_finds_the_shards_an_interrupted_torchrun_left(small, tmp_path, monkeypatch):
    from .test_audit import FakeDist, Interrupting

    model, data = small
    target = tmp_path / "t.sqlite"
    monkeypatch.setattr(run_module, "_Dist", lambda model: FakeDist(0, 3))
    with pytest.raises(KeyboardInterrupt, match="shard"):
        run(model, Interrupting(data, at=48), target, batch_size=8)
    monkeypatch.undo()
    assert not target.exists() and count_rows(shard_path(target, 0, 3)) == 16
    with pytest.warns(UserWarning, match=r"1 shard file.*python -m camwidget\.audit merge"):
        report = AuditReport.load(target)
    assert len(report) == 16 and report.to_dataframe().index.tolist() == list(range(0, 48, 3))
    assert not target.exists()  # loading reads; it does not merge behind the user's back


def _wait_for_rows(paths, at_least, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        total = 0
        for p in paths():
            try:
                conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=1)
                total += conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                conn.close()
            except sqlite3.Error:
                pass
        if total >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} rows after {timeout} s")


def _interrupt(cmd, store, paths, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group: the SIGINT below is the terminal's Ctrl-C
    )
    _wait_for_rows(paths, 8, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_cli_ctrl_c_ends_with_one_line(tmp_path):
    store = tmp_path / "cli.sqlite"
    cmd = [sys.executable, "-m", "camwidget.audit", "--model", f"{FIXTURES}:model"]
    cmd += ["--dataset", f"{FIXTURES}:slow_dataset", "--store", str(store), "--batch-size", "4"]
    cmd += ["--no-progress", "--device", "cpu"]
    code, out, err = _interrupt(cmd, store, lambda: [store], tmp_path)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 130, (out, err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("audit interrupted:") and "of 90 images are stored in" in lines[0]
    assert "to resume" in lines[0]
    rows = count_rows(store)
    assert f"{rows} of 90" in lines[0]


def test_torchrun_ctrl_c_ends_with_one_line_from_the_audit(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    store = tmp_path / "dist.sqlite"
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "camwidget.audit"]
    cmd += ["--model", f"{FIXTURES}:model", "--dataset", f"{FIXTURES}:slow_dataset"]
    cmd += ["--store", str(store), "--batch-size", "4", "--no-progress", "--device", "cpu"]
    code, out, err = _interrupt(cmd, store, lambda: shard_stores(store), tmp_path)
    text = out + err
    ours = [line for line in text.splitlines() if "audit interrupted" in line]
    assert len(ours) == 1, text[-4000:]
    assert "of 90 images are stored in" in ours[0] and "shard" in ours[0] and "torchrun" in ours[0]
    # No worker prints a traceback: whatever else appears is torchrun's own launcher output.
    assert "KeyboardInterrupt" not in text, text[-4000:]
    assert f'File "{REPO / "camwidget"}' not in text, text[-4000:]
    assert code != 0
    # The shards left behind are read by load() and merged by a rerun.
    with pytest.warns(UserWarning, match="shard"):
        partial = AuditReport.load(store)
    assert 0 < len(partial) < 90
    from . import fixtures_torchrun as fx

    full = run(fx.model(), fx.dataset(), store, batch_size=4)
    assert len(full) == 90 and shard_stores(store) == []
