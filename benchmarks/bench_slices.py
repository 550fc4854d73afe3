"""Slices and the embedding map at scale (issue 18): ``report.slices()`` and ``report.embedding()`` on a
synthetic audit store of 50 000 images, and what the gallery sends for it.

The store is written directly (no model runs): ``--images`` rows over ``--classes`` classes, each with a
``--dim``-long float16 penultimate embedding (its class's centre plus noise), a 7x7 float16 map (a blob
in the middle), the logit vector, and one small JPEG thumbnail. In a tenth of the classes a planted
subgroup (15% of the class) sits apart in the embedding, its maps in the top-left corner, and is
misclassified 80% of the time; elsewhere 5% of the images are wrong at random. Everything is seeded.

Timed, each round on a freshly loaded report (so reading and decoding the store is included):

- ``slices``: ``AuditReport.load(store).slices()``;
- ``embedding (computed)``: ``report.embedding()`` with the kept map deleted first (PCA, then written
  back to the store);
- ``embedding (kept)``: ``report.embedding()`` on another fresh report, read back from the store;
- ``gallery``: ``AuditExplorer(report)`` (the table, shortcuts, class maps, slices, the scatter's bytes,
  the first page), and the bytes it sends: the scatter traits and one page of cards.

Median over ``--rounds`` (default 3). The machine's load average is printed before and after: this is
a shared 2-core machine, and other jobs slow every figure down.

    python benchmarks/bench_slices.py [--images 50000] [--classes 100] [--dim 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def build_store(path: Path, n: int, classes: int, dim: int, seed: int = 0) -> np.ndarray:
    """Write the synthetic audit; returns the (n,) bool mask of the planted subgroups' images."""
    from camwidget.audit.store import AuditStore

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    centres = rng.normal(0, 1, (classes, dim)).astype(np.float32)
    direction = rng.normal(0, 1, (classes, dim)).astype(np.float32)
    planted_classes = np.arange(0, classes, 10)
    subgroup = np.isin(labels, planted_classes) & (rng.random(n) < 0.15)
    predictions = labels.copy()
    flip = subgroup & (rng.random(n) < 0.8)
    noise = ~subgroup & (rng.random(n) < 0.05)
    predictions[flip] = (labels[flip] + 1) % classes
    predictions[noise] = (labels[noise] + rng.integers(1, classes, noise.sum())) % classes
    h = w = 7
    yy, xx = np.mgrid[0:h, 0:w]
    centre_blob = np.exp(-((yy - 3) ** 2 + (xx - 3) ** 2) / 4).astype(np.float32)
    corner_blob = np.exp(-(yy**2 + xx**2) / 2).astype(np.float32)
    thumb = _jpeg()
    settings = {
        "method": "hirescam",
        "layer": "layer4",
        "model": {"class": "Synthetic", "parameters": 0, "digest": "bench"},
        "dataset": {"kind": "synthetic", "fingerprint": {"length": n, "digest": f"bench{seed}"}},
        "transform": {"description": None},
        "regions": {"top_left": {"box": [0.0, 0.0, 64.0, 64.0]}},
        "metrics": ["energy"],
    }
    with AuditStore(path) as store:
        store.init_settings(settings)
        store.set_meta("class_names", [f"class_{k}" for k in range(classes)])
        store.set_meta("num_classes", classes)
        store.set_meta("image_size", [224, 224])
        store.set_meta("display", {"mean": None, "std": None, "thumbnail": 32})
        store.set_meta("embedding", {"layer": "fc", "kind": "linear input", "dim": dim})
        for start in range(0, n, 5000):
            stop = min(n, start + 5000)
            rows = []
            emb = centres[labels[start:stop]] + rng.normal(0, 1.0, (stop - start, dim)).astype(np.float32)
            sub = subgroup[start:stop]
            emb[sub] += 3.0 * direction[labels[start:stop][sub]] / np.sqrt(dim) * np.sqrt(dim) / 4
            for j, i in enumerate(range(start, stop)):
                m = (corner_blob if subgroup[i] else centre_blob) + rng.random((h, w)).astype(
                    np.float32
                ) * 0.3
                logits = rng.normal(0, 1, classes).astype("<f4")
                logits[predictions[i]] += 4
                scale = float(np.abs(emb[j]).max())
                rows.append(
                    {
                        "idx": i,
                        "label": int(labels[i]),
                        "predicted": int(predictions[i]),
                        "probability": 0.9,
                        "correct": int(labels[i] == predictions[i]),
                        "map": (m / m.max()).astype("<f2").tobytes(),
                        "map_h": h,
                        "map_w": w,
                        "map_scale": float(m.max()),
                        "embedding": (emb[j] / scale).astype("<f2").tobytes(),
                        "embedding_scale": scale,
                        "logits": logits.tobytes(),
                        "thumb": thumb,
                        "region_top_left": float(m[:2, :2].sum() / m.sum()),
                        "object_energy": None,
                    }
                )
            store.write_rows(rows)
        store.checkpoint()
    return subgroup


def _timed(fn):
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-gallery", action="store_true", help="skip timing AuditExplorer")
    args = parser.parse_args()

    import torch

    from camwidget.audit.report import AuditReport

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); load average before: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench_slices_"))
    path = folder / "synthetic.sqlite"
    took, subgroup = _timed(lambda: build_store(path, args.images, args.classes, args.dim))
    print(
        f"store: {args.images} images, {args.classes} classes, {args.dim}-d float16 embeddings, 7x7 maps; "
        f"{path.stat().st_size / 1e6:.0f} MB, written in {took:.1f} s"
    )

    times: dict[str, list[float]] = {
        k: [] for k in ("slices", "embedding (computed)", "embedding (kept)", "gallery")
    }
    found = None
    sent = 0
    for r in range(args.rounds):
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM derived")
        t, found = _timed(lambda: AuditReport.load(path).slices())
        times["slices"].append(t)
        report = AuditReport.load(path)
        t, plane = _timed(report.embedding)
        times["embedding (computed)"].append(t)
        assert plane.shape == (args.images, 2)
        t, again = _timed(AuditReport.load(path).embedding)
        times["embedding (kept)"].append(t)
        assert np.array_equal(again, plane)
        if not args.no_gallery:
            from camwidget.audit.gallery import AuditExplorer

            t, gallery = _timed(lambda: AuditExplorer(AuditReport.load(path)))
            times["gallery"].append(t)
            sent = sum(len(getattr(gallery, k)) for k in ("scatter_xy", "scatter_class", "scatter_flags"))
            page = sum(len(c["thumb"]) + len(c["map"]) for c in gallery.items)
            gallery.close()
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v), flush=True)

    print(f"\nmedian of {args.rounds} rounds ({args.images} images):")
    for k, v in times.items():
        if v:
            print(f"  {k:22s} {statistics.median(v):7.2f} s   (min {min(v):.2f})")
    if sent:
        print(
            f"  gallery sends the scatter as {sent / 1e3:.0f} kB ({sent / args.images:.0f} bytes an image) "
            f"and one page of {len(gallery.items)} cards as {page / 1e3:.0f} kB; other thumbnails on hover"
        )
    planted = subgroup.sum()
    top = found[: args.classes // 10]
    caught = sum(subgroup[s.indices].sum() for s in top)
    print(
        f"  the {len(top)} top slices hold {caught} of the {planted} planted images "
        f"({caught / planted:.0%}); {sum(s.size for s in top)} images in them"
    )
    print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
