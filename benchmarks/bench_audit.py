"""Audit throughput against the explainer's own: what does the audit's bookkeeping cost? (issue 6)

Contenders, on the same data and model, alternated over rounds in one process:

- ``explain``: ``Explainer(model, layer, "hirescam")`` called on each batch of a ``DataLoader`` over the
  dataset -- the explainer's own throughput, what a user's loop would get;
- ``audit``: ``camwidget.audit(model, dataset, method="hirescam", layer=layer, ...)`` into a fresh SQLite
  store each run: the same explainer calls plus the logits, softmax, the [0, 1] maps, energy shares
  in one region and in each image's object box, float16 maps, JPEG thumbnails, one SQLite transaction per
  batch, and the per-run setup (probe forward, model fingerprint, store creation).

Default: torchvision resnet18 (random init, seed 0, no download) at 224x224, layer4, 64 images, batch 16,
fp32 on CPU. The glibc allocator is pinned (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_) for both
contenders alike, as benchmarks/ does elsewhere; one untimed warm-up run each; median of ``--rounds``.

    python benchmarks/bench_audit.py [--images 64] [--batch-size 16] [--rounds 3] [--model resnet18]

Prints both throughputs (images/s, wall clock) and their ratio (audit / explain; the goal is >= 0.90),
and the same ratio by process CPU time, which a machine shared with other jobs disturbs far less (with
``--threads 1``, where no OpenMP thread spins while waiting for a core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


def _pin_allocator() -> None:
    """Re-run this script with the allocator settings unless they are already in effect."""
    if any(os.environ.get(k) != v for k, v in _ALLOCATOR.items()):
        os.environ.update(_ALLOCATOR)
        os.execv(sys.executable, [sys.executable, *sys.argv])


def _setup(model_name: str, n: int, size: int):
    import torch
    from torch.utils.data import Dataset

    torch.manual_seed(0)
    if model_name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(weights=None).eval()
        layer = "layer4"
    elif model_name == "smallcnn":
        from camwidget.audit.synthetic import SmallCNN

        model = SmallCNN(num_classes=10, seed=0).eval()
        layer = "features"
    else:
        raise SystemExit(f"unknown --model {model_name!r}; use resnet18 or smallcnn")
    images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[size // 4, size // 4, 3 * size // 4, 3 * size // 4]] * n, dtype=torch.float32)

    class Images(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return images[i], int(labels[i]), boxes[i]

    return model, layer, Images()


def _time_explain(model, layer, dataset, batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for the explainer loop."""
    from torch.utils.data import DataLoader

    from camwidget import Explainer

    start, cpu = time.perf_counter(), time.process_time()
    explainer = Explainer(model, layer, "hirescam")
    for images, _, _ in DataLoader(dataset, batch_size=batch_size):
        explainer(images)
    return time.perf_counter() - start, time.process_time() - cpu


def _time_audit(
    model, layer, dataset, batch_size: int, folder: Path, run: int, thumbnail: int = 64
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one audit into a fresh store."""
    import camwidget

    size = dataset[0][0].shape[-1]
    start, cpu = time.perf_counter(), time.process_time()
    camwidget.audit(
        model,
        dataset,
        method="hirescam",
        layer=layer,
        store=folder / f"bench{run}.sqlite",
        regions={"top_left": (0, 0, size // 4, size // 4)},
        batch_size=batch_size,
        thumbnail=thumbnail,
        progress=False,
    )
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", help="resnet18 (224x224) or smallcnn (32x32)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--thumbnail", type=int, default=64, help="audit thumbnail side (0: none)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    _pin_allocator()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    size = 224 if args.model == "resnet18" else 32
    model, layer, dataset = _setup(args.model, args.images, size)
    n = len(dataset)
    times: dict[str, list[float]] = {"explain": [], "audit": []}
    cpu: dict[str, list[float]] = {"explain": [], "audit": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _time_explain(model, layer, dataset, args.batch_size)  # warm-up (not timed)
        _time_audit(model, layer, dataset, args.batch_size, folder, -1, args.thumbnail)
        for r in range(args.rounds):
            order = ("explain", "audit") if r % 2 == 0 else ("audit", "explain")
            for name in order:
                if name == "explain":
                    wall, used = _time_explain(model, layer, dataset, args.batch_size)
                else:
                    wall, used = _time_audit(
                        model, layer, dataset, args.batch_size, folder, r, args.thumbnail
                    )
                times[name].append(wall)
                cpu[name].append(used)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    cpu_rate = {k: n / statistics.median(v) for k, v in cpu.items()}
    print(
        f"{args.model} {size}x{size}, {n} images, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, audit thumbnails {args.thumbnail or 'off'}, "
        f"median of {args.rounds}"
    )
    for name in ("explain", "audit"):
        runs = ", ".join(f"{n / t:.1f}" for t in times[name])
        print(
            f"  {name:<8} {rate[name]:7.1f} img/s wall   (runs: {runs});  {cpu_rate[name]:7.1f} img per CPU-s"
        )
    print(f"  ratio audit/explain: {rate['audit'] / rate['explain']:.3f} wall-clock  (goal >= 0.90)")
    print(
        f"  ratio audit/explain: {cpu_rate['audit'] / cpu_rate['explain']:.3f} by CPU time "
        "(robust to a busy machine)"
    )


if __name__ == "__main__":
    main()
