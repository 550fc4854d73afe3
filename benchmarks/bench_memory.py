"""Score-CAM's memory on one large image: camwidget against pytorch-grad-cam and torchcam (issue 10).

One photo (scikit-image's "chelsea") resized to 2048×2048, ImageNet-normalised, through a random-init
torchvision resnet18 (seed 0) explained at ``layer4`` (512 maps) on the CPU. Every contender runs Score-CAM
at its defaults in its own fresh process, with the default glibc allocator (as a user's kernel runs) and
with the allocator settings the speed benchmarks use, and reports:

- **peak extra memory**: peak resident memory (``ru_maxrss``) minus the resident memory just before the call
  (model, image and libraries already loaded);
- **retained**: resident memory after the call minus before.

A full 512-map run at 2048×2048 takes ~10 minutes per contender on a 2-core CPU, and every contender's
memory reaches its plateau within its first batch of masked forwards. So each run stops once the model has
seen 1 + 64 images (one plain forward, then 64 masked inputs: two full batches of torchcam's 32, four of
pytorch-grad-cam's 16): a counter inside the model raises, the same for every contender. A contender that
cannot allocate what it asks for fails with an out-of-memory error, reported as such: each process's data
segment is capped (``RLIMIT_DATA``, default 12 GiB), so a contender that would take more fails cleanly
instead of pushing the machine into swapping or the kernel's OOM killer.

Run ``python benchmarks/bench_memory.py [--rounds N] [--size 2048]`` (normally through
``bash benchmarks/run.sh``, which installs the peers). Writes ``benchmarks/results/memory.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

SCRIPT = Path(__file__).resolve()
CONTENDERS = ("camwidget", "pytorch-grad-cam", "torchcam")
SEEN = 1 + 64  # images the model sees before the run is stopped (see the module doc)
ALLOCATORS = {"default": {}, "benchmark": C.ALLOCATOR_ENV}


class Stop(Exception):
    """Raised inside the model once it has seen ``SEEN`` images."""


def _model(limit: int):
    import torch
    import torchvision

    count = {"images": 0}

    class Counted(torch.nn.Module):
        """resnet18 that counts the images it sees (in any copy of it: the count is shared)."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(C.SEED)
            self.net = torchvision.models.resnet18(weights=None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            count["images"] += x.shape[0]
            if count["images"] > limit:
                raise Stop(f"stopped after {count['images'] - x.shape[0]} images")
            return self.net(x)

    return Counted().eval(), count


def worker(contender: str, size: int) -> dict:
    import torch

    C.add_peers_to_path()
    model, count = _model(SEEN)
    x = torch.nn.functional.interpolate(C.load_image(), size=(size, size), mode="bilinear")
    layer = model.net.layer4
    if contender == "pytorch-grad-cam":
        from pytorch_grad_cam import ScoreCAM

        cam = ScoreCAM(model, target_layers=[layer])

        def run() -> None:
            cam(input_tensor=x, targets=None)

    elif contender == "torchcam":
        from torchcam.methods import ScoreCAM

        def run() -> None:
            with ScoreCAM(model, "net.layer4") as extractor:
                with torch.inference_mode():
                    out = model(x)
                extractor(out[0].argmax().item(), out)

    else:
        import camwidget

        def run() -> None:
            camwidget.explain(model, x, method="scorecam", layer="net.layer4")

    base = C.rss_mb()
    outcome = "stopped"
    start = time.perf_counter()
    try:
        run()
        outcome = "finished"
    except Stop:
        pass
    except (MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and "memory" not in text:
            raise
        outcome = "out of memory: " + text.splitlines()[0][:160]
    seconds = time.perf_counter() - start
    return {
        "outcome": outcome,
        "images": count["images"],
        "seconds": seconds,
        "base_rss_mb": base,
        "peak_extra_mb": C.peak_rss_mb() - base,
        "retained_mb": C.rss_mb() - base,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        p = argparse.ArgumentParser()
        p.add_argument("contender")
        p.add_argument("--size", type=int, default=2048)
        p.add_argument("--data-limit-gb", type=float, default=12.0)
        a = p.parse_args(sys.argv[2:])
        limit = int(a.data_limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        C.emit(worker(a.contender, a.size))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--quick", action="store_true", help="1 round")
    p.add_argument("--out", type=Path, default=C.RESULTS / "memory.md")
    a = p.parse_args()
    rounds = 1 if a.quick else a.rounds
    runs: dict[str, dict[str, list[dict]]] = {al: {c: [] for c in CONTENDERS} for al in ALLOCATORS}
    for r in range(rounds):
        for allocator, env in ALLOCATORS.items():
            order = list(CONTENDERS) if r % 2 == 0 else list(reversed(CONTENDERS))
            for contender in order:
                out = _run(contender, a.size, env)
                runs[allocator][contender].append(out)
                print(
                    f"[round {r + 1}/{rounds}] {allocator:9s} {contender:16s} {json.dumps(out)}", flush=True
                )
    meta = {
        "machine": C.machine(),
        "peers": C.peer_versions(),
        "rounds": rounds,
        "size": a.size,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    report = build_report(runs, meta)
    print(report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")


def _run(contender: str, size: int, env: dict[str, str]) -> dict:
    import subprocess

    full = {k: v for k, v in os.environ.items() if k not in C.ALLOCATOR_ENV}
    full.update(env, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(SCRIPT), "--worker", contender, "--size", str(size)]
    proc = subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        return {"outcome": f"crashed (exit {proc.returncode}): " + " | ".join(tail)}
    return json.loads(lines[-1])


def build_report(runs: dict, meta: dict) -> str:
    lines = [
        "# Score-CAM memory on one large image (CPU)",
        "",
        f"- machine: {meta['machine']}",
        f"- peers: {', '.join(f'{k} {v}' for k, v in meta['peers'].items())}",
        f"- input: one {meta['size']}×{meta['size']} photo (chelsea), resnet18 (random init, seed {C.SEED}) "
        f"at `layer4` (512 maps); each run stopped after the model saw {SEEN} images (see the script's doc); "
        f"{meta['rounds']} round(s), contenders alternated, each in a fresh process; {meta['when']}",
        "",
        "| allocator | contender | peak extra memory (MB, median) | retained after (MB) | outcome |",
        "|---|---|---:|---:|---|",
    ]
    for allocator, by_contender in runs.items():
        for contender, results in by_contender.items():
            peaks = [r["peak_extra_mb"] for r in results if "peak_extra_mb" in r]
            kept = [r["retained_mb"] for r in results if "retained_mb" in r]
            outcomes = sorted({r["outcome"] for r in results})
            lines.append(
                f"| {allocator} | {contender} | {_mb(C.summarize(peaks)[1])} | {_mb(C.summarize(kept)[1])} "
                f"| {'; '.join(outcomes)} |"
            )
    cw = [r["peak_extra_mb"] for r in runs["default"]["camwidget"] if "peak_extra_mb" in r]
    peak = C.summarize(cw)[1]
    lines += [
        "",
        f"Goal: camwidget's peak extra memory ≤ 1 GB (1024 MB) with the default allocator: "
        f"{_mb(peak)} MB, {'met' if peak <= 1024 else '**not met**'}.",
        "",
    ]
    return "\n".join(lines)


def _mb(value: float) -> str:
    return "–" if value != value else f"{value:.0f}"


if __name__ == "__main__":
    main()
