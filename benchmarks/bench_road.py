"""ROAD speed: camwidget.metrics.road against pytorch-grad-cam's ROAD at its defaults (issue 20).

resnet18 (random init, fixed seed), CPU, 224×224 real photos (chelsea, coffee, astronaut), the same maps
for both contenders (camwidget Grad-CAM at ``layer4``), the target = the predicted class, both orders at
the default percentiles 10, 20, ..., 90 with noise 0.01 (18 imputations and 20 forwards per image):

- ``camwidget``: ``road(model, x, maps, order=o)`` for o in ("most", "least"), all images in one call each
  (SuperLU in a thread pool, one batched ForwardRunner stream);
- ``pytorch-grad-cam``: ``ROADMostRelevantFirstAverage()`` and ``ROADLeastRelevantFirstAverage()`` (its
  defaults: the same percentiles and noise) with ``ClassifierOutputSoftmaxTarget``, all images in one call
  each (``ROADCombined`` runs exactly these two).

Each contender runs once per round in its own process (same allocator environment, one warm-up forward
before the clock), alternated over rounds; reported per image. The camwidget worker also times the N·20
forwards alone (the same count, batched, fp32, under ``inference_mode``): the share of its time that is the
model rather than the imputation. Writes ``benchmarks/results/road.md`` and ``road.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

SCRIPT = Path(__file__).resolve()
MODEL = "resnet18"
LAYER = "layer4"
IMAGES = ("chelsea", "coffee", "astronaut")
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
CONTENDERS = ("camwidget", "pytorch-grad-cam")
LABELS = {
    "camwidget": "camwidget.metrics.road, most + least",
    "pytorch-grad-cam": "pytorch-grad-cam ROAD{Most,Least}RelevantFirstAverage",
}


# ------------------------------------------------------------------------------------------------------
# workers
# ------------------------------------------------------------------------------------------------------
def _setup(n_images: int):
    import torch

    from camwidget import explain

    model = C.load_model(MODEL)
    x = torch.cat([C.load_image(name) for name in IMAGES[:n_images]])
    maps = explain(model, x, method="gradcam", layer=LAYER)  # (N, H, W), the same for both contenders
    with torch.inference_mode():
        model(x[:1])  # warm-up, the same for every contender
    return model, x, maps


def forward_bound(model, x, forwards_per_image: int) -> float:
    """Seconds for N·forwards_per_image plain fp32 forwards in batches of 16 (no imputation)."""
    import torch

    n = x.shape[0] * forwards_per_image
    batch = x.repeat((16 + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:16]
    start = time.perf_counter()
    with torch.inference_mode():
        for done in range(0, n, 16):
            model(batch[: min(16, n - done)])
    return time.perf_counter() - start


def worker(contender: str, n_images: int) -> dict:
    import numpy as np
    import torch

    model, x, maps = _setup(n_images)
    base = C.rss_mb()
    if contender == "camwidget":
        from camwidget.metrics import road

        def call():
            return {order: road(model, x, maps, order=order).mean(1).tolist() for order in ("most", "least")}

    else:
        from pytorch_grad_cam.metrics.road import (
            ROADLeastRelevantFirstAverage,
            ROADMostRelevantFirstAverage,
        )
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

        with torch.no_grad():
            classes = model(x).argmax(1).tolist()
        targets = [ClassifierOutputSoftmaxTarget(c) for c in classes]
        cams = maps.numpy()

        def call():
            most = ROADMostRelevantFirstAverage()(x, cams, targets, model)
            least = ROADLeastRelevantFirstAverage()(x, cams, targets, model)
            return {"most": np.asarray(most).tolist(), "least": np.asarray(least).tolist()}

    with C.Timer() as t:
        scores = call()
    out = {
        "seconds": t.seconds / x.shape[0],
        "scores": scores,
        "base_rss_mb": base,
        "peak_rss_mb": C.peak_rss_mb(),
    }
    if contender == "camwidget":
        out["forwards_only"] = forward_bound(model, x, 2 * (len(PERCENTILES) + 1)) / x.shape[0]
    return out


# ------------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------------
def build_report(runs: dict, meta: dict) -> str:
    def col(name, key):
        return [r[key] for r in runs[name] if "error" not in r and key in r]

    lines = [
        "# ROAD benchmark (CPU)",
        "",
        f"- machine: {meta['machine']}",
        f"- peers: {', '.join(f'{k} {v}' for k, v in meta['peers'].items())}",
        f"- {MODEL} (random init, seed {C.SEED}), {meta['images']} image(s) of 224×224, Grad-CAM maps at "
        f"`{LAYER}`, both orders × percentiles 10..90, noise 0.01 (18 imputations, 20 forwards per image); "
        f"rounds: {meta['rounds']}; contenders alternated, each in its own process with "
        f"`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000`; {meta['when']}",
        "",
        "| contender (time per image) | min | median | pytorch-grad-cam ÷ this (medians) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    peer = C.summarize(col("pytorch-grad-cam", "seconds"))[1]
    for name in CONTENDERS:
        lo, mid = C.summarize(col(name, "seconds"))
        mem = C.summarize(col(name, "peak_rss_mb"))[1]
        errors = [r["error"] for r in runs[name] if "error" in r]
        lines.append(
            f"| {LABELS[name]} | {C.fmt_s(lo)} | {C.fmt_s(mid)} | {C.fmt_x(peer / mid)} | "
            f"{'–' if mem != mem else f'{mem:.0f}'} |" + (f" error: {errors[0]}" if errors else "")
        )
    bound_lo, bound = C.summarize(col("camwidget", "forwards_only"))
    lines.append(
        f"| the 20 forwards alone (fp32, batch 16) | {C.fmt_s(bound_lo)} | {C.fmt_s(bound)} | – | – |"
    )
    cw = C.summarize(col("camwidget", "seconds"))[1]
    ratio = peer / cw
    lines += [
        "",
        "| goal | measured (medians) | met |",
        "|---|---:|:-:|",
        f"| not slower than pytorch-grad-cam | {C.fmt_x(ratio)} | {'yes' if ratio >= 1 else '**no**'} |",
        "",
        f"camwidget's forwards are {bound / cw:.0%} of its time; the rest is the imputation (sparse solves).",
    ]
    a = next((r["scores"] for r in runs["camwidget"] if "scores" in r), None)
    b = next((r["scores"] for r in runs["pytorch-grad-cam"] if "scores" in r), None)
    if a and b:
        lines.append(
            "Mean ROAD score per image (noise 0.01 in both, different draws), camwidget vs pytorch-grad-cam: "
            + "; ".join(
                f"{order} " + ", ".join(f"{u:+.4f}/{v:+.4f}" for u, v in zip(a[order], b[order], strict=True))
                for order in ("most", "least")
            )
            + ". At noise 0 they agree to 1e-4 (tests/metrics/test_road.py)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        p = argparse.ArgumentParser()
        p.add_argument("contender")
        p.add_argument("--images", type=int, default=2)
        a = p.parse_args(sys.argv[2:])
        C.add_peers_to_path()
        C.emit(worker(a.contender, a.images))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 round, 1 image")
    p.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--images", type=int, default=None, help=f"images per call, 1..{len(IMAGES)} (default 2)")
    p.add_argument("--models", default=None, help="ignored (resnet18 only); accepted for run.sh")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", type=Path, default=C.RESULTS / "road.md")
    a = p.parse_args()
    rounds = a.rounds or (1 if a.quick else 3)
    n_images = max(1, min(len(IMAGES), a.images or (1 if a.quick else 2)))
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for r in range(rounds):
        order = list(CONTENDERS if r % 2 == 0 else CONTENDERS[::-1])
        for name in order:
            start = time.perf_counter()
            out = C.run_worker(SCRIPT, [name, "--images", str(n_images)], timeout=a.timeout)
            runs[name].append(out)
            brief = {
                k: v for k, v in out.items() if k in ("error", "seconds", "forwards_only", "peak_rss_mb")
            }
            took = time.perf_counter() - start
            print(f"[round {r + 1}/{rounds}] {name:16s} {took:6.1f} s {json.dumps(brief)}", flush=True)
    meta = {
        "machine": C.machine(),
        "peers": {"grad-cam": C.peer_versions()["grad-cam"]},
        "rounds": rounds,
        "quick": a.quick,
        "images": n_images,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    report = build_report(runs, meta)
    print()
    print(report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    print(f"written: {a.out} and {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
