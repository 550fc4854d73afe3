"""What the private copy's per-call check costs, against the Score-CAM call it guards (issue 10).

On every call the engine's private copy must reproduce the live model's fp32 logits: one live forward of
the first perturbed input and two forwards on the copy (that input, and the unperturbed inputs, whose live
logits the call computes anyway). This measures those three forwards (one image, medians of 7) against a
whole Score-CAM call (a fresh ``Explainer`` on the same model, medians of 3) for a random-init resnet18 at
``layer4`` and the bundled trained SqueezeNet 1.1 at ``features.12``, on the CPU, one 224×224 photo.

Run ``python benchmarks/bench_copy_check.py``. Writes ``benchmarks/results/copy_check.md``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import _common as C
import numpy as np
import torch
import torchvision

import camwidget
from camwidget.data import sample_image
from camwidget.engine.twin import build_twin
from camwidget.models import squeezenet1_1_imagenet


def _median_seconds(f: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(model: torch.nn.Module, layer: str, x: torch.Tensor) -> tuple[float, float, float, float]:
    """Seconds of: a live forward, a copy forward, the check (1 live + 2 copy), a Score-CAM call."""
    copy_, _ = build_twin(model, x, fold=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        live = _median_seconds(lambda: model(x), 7)
        on_copy = _median_seconds(lambda: copy_(x_cl), 7)
    camwidget.Explainer(model, layer=layer)(x, method="scorecam")  # warm-up
    call = _median_seconds(lambda: camwidget.Explainer(model, layer=layer)(x, method="scorecam"), 3)
    return live, on_copy, live + 2 * on_copy, call


def main() -> None:
    torch.manual_seed(0)
    photo = sample_image("chelsea")
    pixels = np.asarray(photo.resize((224, 224)), dtype=np.float32) / 255
    plain = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    net = squeezenet1_1_imagenet()
    cases = [
        ("resnet18 (random init)", torchvision.models.resnet18().eval(), "layer4", plain),
        ("SqueezeNet 1.1 (trained)", net.model.eval(), "features.12", net.transform(photo)[None]),
    ]
    rows = [(name, *_measure(model, layer, x)) for name, model, layer, x in cases]
    for name, _, _, check, call in rows:
        print(f"{name}: check {check * 1e3:.0f} ms = {100 * check / call:.2f}% of a {call:.2f} s Score-CAM")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# The private copy's per-call check (CPU)",
        "",
        f"- machine: {C.machine()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()})"
        + (f", load average {load}" if load else ""),
        "- command: `python benchmarks/bench_copy_check.py`; forwards: medians of 7; Score-CAM: median of 3",
        "",
        "| model | live forward | copy forward | check (1 live + 2 copy) | Score-CAM call | check share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, live, on_copy, check, call in rows:
        lines.append(
            f"| {name} | {live * 1e3:.1f} ms | {on_copy * 1e3:.1f} ms | {check * 1e3:.1f} ms | {call:.2f} s "
            f"| {100 * check / call:.2f}% |"
        )
    out = C.RESULTS / "copy_check.md"
    out.write_text("\n".join(lines) + "\n")
    print("written:", out)


if __name__ == "__main__":
    main()
