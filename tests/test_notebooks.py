"""The notebooks in ``notebooks/``: committed without outputs, and each runs top to bottom without an error.

The run test starts a fresh kernel for every notebook with nbclient. The kernel is pinned to the Python
running pytest (a ``python3`` kernelspec written to a temporary ``JUPYTER_PATH``, which takes precedence over
any user-wide or system-wide spec), and the notebook runs in ``notebooks/`` as it does in JupyterLab. Two
cells are added to the in-memory copy, never to the file: one first that refuses network connections (a
notebook must not download anything), one last that reports the kernel's ``sys.executable`` and, once their
background work is done, the state of every ``CamExplorer`` the notebook opened (an error there does not
fail a cell).

Each notebook's run time is measured here (never asserted: a shared CI box is no stopwatch) and reported
three ways: in the test's ``runtime_s`` property (JUnit XML), in a "notebook runtimes" section of pytest's
terminal summary (``tests/conftest.py``, with the CPU count and load average, so CI logs show it), and in
``artifacts/notebook-runtimes/<name>.json``. The classroom notebook states the runtime it claims on a 2-core
CPU; this is where that claim is checked.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell: generous for a shared 2-core CI box, still catches a hang
EXPLORER_TIMEOUT = 300  # seconds to wait for a widget's background work at the end

# Runs first in the kernel: any connection to a host other than this machine raises.
NO_NETWORK = """
import socket as _socket

_LOCAL = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}
_real_connect, _real_connect_ex, _real_getaddrinfo = (
    _socket.socket.connect, _socket.socket.connect_ex, _socket.getaddrinfo
)


def _check(address):
    host = address[0] if isinstance(address, tuple) else None
    if host not in _LOCAL and not str(host).startswith("127."):
        raise OSError(f"notebook tests run offline: connection to {address!r} refused")


def _connect(self, address):
    if self.family in (_socket.AF_INET, _socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    if self.family in (_socket.AF_INET, _socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)


def _getaddrinfo(host, *args, **kwargs):
    _check((host.decode() if isinstance(host, bytes) else host, 0))
    return _real_getaddrinfo(host, *args, **kwargs)


_socket.socket.connect, _socket.socket.connect_ex, _socket.getaddrinfo = _connect, _connect_ex, _getaddrinfo
"""

# Runs last: prints one JSON line for the test to check.
REPORT = f"""
import json as _json
import sys as _sys

_report = {{"executable": _sys.executable, "explorers": []}}
if "camwidget.widget.explorer" in _sys.modules:
    import ipywidgets.widgets.widget as _ipw

    from camwidget.widget.explorer import CamExplorer as _CamExplorer

    for _w in list(_ipw._instances.values()):
        if isinstance(_w, _CamExplorer):
            _idle = _w.wait({EXPLORER_TIMEOUT})
            _report["explorers"].append(
                {{"idle": _idle, "status": _w.status, "error": _w.error, "curves_status": _w.curves_status}}
            )
print("NOTEBOOK-REPORT " + _json.dumps(_report))
"""


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def test_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_classroom.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    """Committed notebooks are clean: no outputs, execution counts or saved widget state; kernel python3."""
    nb = _load(path)
    assert nb.get("nbformat") == 4, f"{path.name}: not an nbformat 4 notebook"
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{path.name}: kernelspec is {kernel!r}, expected 'python3'"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: saved widget state in the metadata"
    dirty = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            dirty.append(f"cell {i} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            dirty.append(f"cell {i} has execution_count {cell['execution_count']}")
        if "execution" in cell.get("metadata", {}):
            dirty.append(f"cell {i} has execution timing metadata")
    assert not dirty, f"{path.name} was committed with outputs; clear them:\n  " + "\n  ".join(dirty)


@pytest.fixture
def python3_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec that runs this interpreter, found before any other ``python3`` spec."""
    from ipykernel.kernelspec import write_kernel_spec

    kernels = tmp_path / "jupyter" / "kernels"
    kernels.mkdir(parents=True)
    write_kernel_spec(kernels / "python3")
    spec = json.loads((kernels / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights to lean on
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(
    path: Path, python3_kernel: str, record_property: pytest.RecordProperty, capsys: pytest.CaptureFixture
) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(NO_NETWORK))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    for i, cell in enumerate(nb.cells):  # unique ids for the two added cells
        cell["id"] = f"test-{i}"

    client = NotebookClient(
        nb,
        kernel_name=python3_kernel,
        timeout=CELL_TIMEOUT,
        allow_errors=False,  # the first error raises CellExecutionError with the cell and traceback
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    measured = {
        "notebook": path.name,
        "runtime_s": round(seconds, 1),
        "cpus": os.cpu_count(),
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }
    for key, value in measured.items():
        record_property(key, value)
    out = ROOT / "artifacts" / "notebook-runtimes"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{path.stem}.json").write_text(json.dumps(measured) + "\n", encoding="utf-8")
    with capsys.disabled():
        print(f"\n{path.name}: ran in {seconds:.1f} s", end="")

    lines = [
        line
        for output in nb.cells[-1].outputs
        if output.get("output_type") == "stream"
        for line in output["text"].splitlines()
        if line.startswith("NOTEBOOK-REPORT ")
    ]
    assert len(lines) == 1, f"no report from the last cell: {nb.cells[-1].outputs}"
    report = json.loads(lines[0].removeprefix("NOTEBOOK-REPORT "))
    assert os.path.abspath(report["executable"]) == os.path.abspath(sys.executable), (
        f"the kernel ran {report['executable']}, not the test's {sys.executable}"
    )
    for i, explorer in enumerate(report["explorers"]):
        assert explorer["idle"], f"CamExplorer #{i} still busy after {EXPLORER_TIMEOUT} s: {explorer}"
        assert explorer["status"] != "error" and not explorer["error"], f"CamExplorer #{i}: {explorer}"
        assert not explorer["curves_status"], f"CamExplorer #{i} has no curves: {explorer}"
