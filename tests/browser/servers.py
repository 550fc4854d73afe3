"""The hosts the browser tests drive: a Jupyter server (JupyterLab 4 and Notebook 7), Voilà and marimo.

Each is started on a free localhost port with its settings in a temporary folder (nothing read from or
written to the user's home), with ``PYTHONPATH`` set so the kernel imports this checkout of camwidget, and
stopped when the ``with`` block ends. The notebooks they open build a CamExplorer on scikit-image's cat
photo with the bundled SqueezeNet (``EXPLORER``) and report the explorer's threads and caches (``REPORT``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

EXPLORER = """\
import camwidget, skimage.data
from PIL import Image
from camwidget.models import squeezenet1_1_imagenet
pre = squeezenet1_1_imagenet()
w = camwidget.CamExplorer(pre.model, Image.fromarray(skimage.data.chelsea()), class_names=pre.class_names,
                          curve_steps=16)
"""

# What is left of every CamExplorer the kernel ever built: the widget threads, and each old explorer's
# cache (an explorer whose view went away keeps no cache; one whose comm was closed is garbage).
REPORT = """\
import gc as _gc, json as _json, threading as _threading
from camwidget.widget.explorer import CamExplorer as _CamExplorer
_gc.collect()
_live = [_o for _o in _gc.get_objects() if _CamExplorer in type(_o).__mro__]  # no __class__ lookups
_report = {
    "workers": sum(_t.name == "camwidget-worker" for _t in _threading.enumerate()),
    "explorers": len(_live),
    "old_caches": [_o.session.cache_size for _o in _live if _o is not w],
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@contextmanager
def _running(cmd: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[None]:
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(ready_url, proc, log)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _env(base: Path, pythonpath: Path) -> dict[str, str]:
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "XDG_CONFIG_HOME": str(base / "xdg"),
        "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]),
    }


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


@contextmanager
def jupyter_server(base: Path, notebooks: dict[str, list[str]], pythonpath: Path = ROOT) -> Iterator[dict]:
    """A Jupyter server (JupyterLab 4 at /lab, Notebook 7 at /notebooks) over ``notebooks``
    (file name -> cell sources; write more into ``root``). Yields ``{"url", "token", "root", "log"}``."""
    root = base / "root"
    root.mkdir(parents=True)
    for name, cells in notebooks.items():
        write_notebook(root / name, cells)
    (base / "config" / "labconfig").mkdir(parents=True)
    (base / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        str(BIN / "jupyter"),
        "lab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]
    url, log = f"http://127.0.0.1:{port}", base / "jupyter.log"
    with _running(cmd, _env(base, pythonpath), log, f"{url}/api/status?token={token}"):
        yield {"url": url, "token": token, "root": root, "log": log}


def kernel_idle(jupyter: dict, notebook: str) -> bool:
    """Whether the kernel of ``notebook`` (a path ending) on the ``jupyter`` server is idle."""
    url = f"{jupyter['url']}/api/sessions?token={jupyter['token']}"
    with urllib.request.urlopen(url, timeout=5) as r:
        sessions = json.load(r)
    return any(
        s.get("path", "").endswith(notebook) and (s.get("kernel") or {}).get("execution_state") == "idle"
        for s in sessions
    )


@contextmanager
def voila_server(base: Path, cells: list[str], pythonpath: Path = ROOT) -> Iterator[str]:
    """Voilà serving one notebook of ``cells``; yields the page URL (add ``?theme=dark``)."""
    base.mkdir(parents=True, exist_ok=True)
    notebook = write_notebook(base / "explorer.ipynb", cells)
    port = free_port()
    cmd = [
        str(BIN / "voila"),
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--Voila.port_retries=0",
    ]
    url = f"http://127.0.0.1:{port}"
    with _running(cmd, _env(base, pythonpath), base / "voila.log", f"{url}/voila/static/voila.js"):
        yield url


@contextmanager
def marimo_server(base: Path, app: Path, theme: str, pythonpath: Path = ROOT) -> Iterator[str]:
    """``marimo run`` of ``app`` with the user setting ``display.theme = theme`` ("light" | "dark")."""
    config = base / "xdg" / "marimo"
    config.mkdir(parents=True, exist_ok=True)
    (config / "marimo.toml").write_text(f'[display]\ntheme = "{theme}"\n')
    port = free_port()
    cmd = [
        str(BIN / "marimo"),
        "run",
        str(app),
        "--headless",
        "--no-token",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with _running(cmd, _env(base, pythonpath), base / "marimo.log", f"{url}/health"):
        yield url
