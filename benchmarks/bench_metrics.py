"""Insertion + deletion speed: camwidget.metrics against a plain loop and torchcam's metric (issue 3).

resnet18 (random init, fixed seed), CPU, step = 224 pixels on 224×224 inputs: n = 224 steps, 225 points
per curve, 450 perturbed forwards per image. The same maps (camwidget Grad-CAM at ``layer4``) and images
(real photos: chelsea, coffee, astronaut) for every contender:

- ``camwidget``: ``camwidget.metrics.insertion_deletion(model, x, maps, step=224)`` (deletion substrate
  zeros, insertion from RISE's blur), all images in one call;
- ``loop``: the same two curves with one plain fp32 forward per point, image by image, under
  ``inference_mode`` -- what a straightforward implementation does;
- ``torchcam``: ``torchcam.metrics.DeletionInsertionMetric(steps=224)`` at its defaults otherwise (batch 32;
  zeros for insertion too), with a stub extractor returning the same maps, so only the metric is timed.

Each contender runs twice in its own process (first call: includes camwidget's precision/batch-size
measurement; second call), with the same allocator environment, alternated over rounds. Reported per image.
Writes ``benchmarks/results/metrics.md`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

SCRIPT = Path(__file__).resolve()
MODEL = "resnet18"
STEP = 224
IMAGES = ("chelsea", "coffee", "astronaut")
CONTENDERS = ("camwidget", "loop", "torchcam")
LABELS = {
    "camwidget": "camwidget.metrics.insertion_deletion",
    "loop": "plain loop, one fp32 forward per point",
    "torchcam": "torchcam DeletionInsertionMetric (batch 32)",
}


# ------------------------------------------------------------------------------------------------------
# workers
# ------------------------------------------------------------------------------------------------------
def _setup(n_images: int):
    import torch

    from camwidget import explain

    model = C.load_model(MODEL)
    x = torch.cat([C.load_image(name) for name in IMAGES[:n_images]])
    maps = explain(model, x, method="gradcam", layer="layer4")  # (N, H, W), fixed for every contender
    with torch.inference_mode():
        model(x[:1])  # warm-up, the same for every contender
    return model, x, maps


def loop_curves(model, x, maps, step: int = STEP):
    """Insertion and deletion curves the plain way: one forward per point, image by image.

    Deletion replaces the most salient pixels by zeros (of the normalised input); insertion restores them
    over a blurred copy (camwidget's RISE blur, so the curves are comparable). Scores are the softmax
    probability of the class predicted on the original image.
    """
    import torch

    from camwidget.metrics import blur_images

    n, _, h, w = x.shape
    steps = math.ceil(h * w / step)
    deletion = torch.empty(n, steps + 1)
    insertion = torch.empty(n, steps + 1)
    with torch.inference_mode():
        for i in range(n):
            image = x[i : i + 1]
            target = int(model(image).argmax())
            order = torch.argsort(maps[i].flatten(), descending=True, stable=True)
            blurred = blur_images(image)
            for s in range(steps + 1):
                changed = torch.zeros(h * w, dtype=torch.bool)
                changed[order[: s * step]] = True
                changed = changed.view(1, 1, h, w)
                deleted = torch.where(changed, torch.zeros_like(image), image)
                inserted = torch.where(changed, image, blurred)
                deletion[i, s] = torch.softmax(model(deleted), dim=1)[0, target]
                insertion[i, s] = torch.softmax(model(inserted), dim=1)[0, target]
    return insertion, deletion


class _StubExtractor:
    """What torchcam's metric needs from a CAM extractor, returning fixed maps (so only the metric is
    timed, not a CAM method)."""

    def __init__(self, model, maps) -> None:
        self.model = model
        self.maps = maps

    def __call__(self, class_idx=None, scores=None, normalized=True, *, targets=None, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def worker(contender: str, n_images: int, curves_path: str | None) -> dict:
    import functools

    import numpy as np
    import torch

    model, x, maps = _setup(n_images)
    base = C.rss_mb()
    if contender == "camwidget":
        from camwidget.metrics import insertion_deletion

        def call():
            curves = insertion_deletion(model, x, maps, step=STEP)
            return curves.insertion, curves.deletion

    elif contender == "loop":

        def call():
            return loop_curves(model, x, maps)

    else:
        from torchcam.metrics import DeletionInsertionMetric

        metric = DeletionInsertionMetric(
            _StubExtractor(model, maps), functools.partial(torch.softmax, dim=-1), steps=STEP
        )

        def call():
            metric.reset()
            metric.update(x)
            return metric.summary()

    times = []
    result = None
    for _ in range(2):
        with C.Timer() as t:
            result = call()
        times.append(t.seconds / x.shape[0])
    out = {"first": times[0], "second": times[1], "base_rss_mb": base, "peak_rss_mb": C.peak_rss_mb()}
    if isinstance(result, dict):
        out["auc"] = result
    elif curves_path is not None:
        np.save(curves_path, torch.stack([result[0], result[1]]).float().cpu().numpy())
    if contender == "camwidget":
        out["plan"] = [{"precision": getattr(result, "precision", None)}]
    return out


# ------------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------------
def build_report(runs: dict, meta: dict, agreement: str) -> str:
    def col(name, key):
        return [r[key] for r in runs[name] if "error" not in r]

    lines = [
        "# Insertion + deletion benchmark (CPU)",
        "",
        f"- machine: {meta['machine']}",
        f"- peers: {', '.join(f'{k} {v}' for k, v in meta['peers'].items())}",
        f"- {MODEL} (random init, seed {C.SEED}), {meta['images']} image(s) of 224×224, step {STEP} "
        f"(224 steps, 2 × 225 points = 450 forwards per image); rounds: {meta['rounds']}"
        f"{' (--quick)' if meta['quick'] else ''}; contenders alternated, each in its own process with "
        f"`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000`; {meta['when']}",
        "",
        "| contender (time per image) | first call min | first median | second call min | second median | "
        "loop ÷ this (second) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    loop = C.summarize(col("loop", "second"))[1]
    for name in CONTENDERS:
        f_lo, f_mid = C.summarize(col(name, "first"))
        s_lo, s_mid = C.summarize(col(name, "second"))
        mem = C.summarize(col(name, "peak_rss_mb"))[1]
        errors = [r["error"] for r in runs[name] if "error" in r]
        lines.append(
            f"| {LABELS[name]} | {C.fmt_s(f_lo)} | {C.fmt_s(f_mid)} | {C.fmt_s(s_lo)} | {C.fmt_s(s_mid)} | "
            f"{C.fmt_x(loop / s_mid)} | {'–' if mem != mem else f'{mem:.0f}'} |"
            + (f" error: {errors[0]}" if errors else "")
        )
    cw = C.summarize(col("camwidget", "second"))[1]
    cw_first = C.summarize(col("camwidget", "first"))[1]
    speedup = loop / cw
    plans = [r["plan"] for r in runs["camwidget"] if r.get("plan")]
    lines += [
        "",
        "| goal | measured (medians) | met |",
        "|---|---:|:-:|",
        f"| ≥ 5× faster than the one-forward-per-step loop | {C.fmt_x(speedup)} second call, "
        f"{C.fmt_x(C.summarize(col('loop', 'first'))[1] / cw_first)} first call | "
        f"{'yes' if speedup >= 5 else '**no**'} |",
        "",
        agreement,
    ]
    if plans:
        lines.append(f"camwidget's chosen plan: {plans[-1]}.")
    return "\n".join(lines) + "\n"


def compare_curves(tmp: Path, runs: dict) -> str:
    import numpy as np

    from camwidget.metrics import auc

    cw, lp = tmp / "camwidget.npy", tmp / "loop.npy"
    if not (cw.exists() and lp.exists()):
        return "Curve agreement: not available (a contender failed)."
    import torch

    a, b = np.load(cw), np.load(lp)
    auc_a, auc_b = auc(torch.from_numpy(a)), auc(torch.from_numpy(b))
    tc = next((r["auc"] for r in runs["torchcam"] if "auc" in r), None)
    text = (
        f"Curve agreement, camwidget vs the fp32 loop: max |Δ probability| {np.abs(a - b).max():.2e}; "
        f"insertion AUC {auc_a[0].mean():.4f} vs {auc_b[0].mean():.4f}, deletion AUC "
        f"{auc_a[1].mean():.4f} vs {auc_b[1].mean():.4f}."
    )
    if tc:
        text += (
            f" torchcam (zeros for insertion too, so its insertion AUC differs by design): insertion "
            f"{tc['insertion_auc']:.4f}, deletion {tc['deletion_auc']:.4f}."
        )
    return text


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        p = argparse.ArgumentParser()
        p.add_argument("contender")
        p.add_argument("--images", type=int, default=len(IMAGES))
        p.add_argument("--curves")
        a = p.parse_args(sys.argv[2:])
        C.add_peers_to_path()
        C.emit(worker(a.contender, a.images, a.curves))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 round, 1 image")
    p.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--images", type=int, default=None, help=f"images per call, 1..{len(IMAGES)}")
    p.add_argument("--models", default=None, help="ignored (resnet18 only); accepted for run.sh")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", type=Path, default=C.RESULTS / "metrics.md")
    a = p.parse_args()
    rounds = a.rounds or (1 if a.quick else 3)
    n_images = max(1, min(len(IMAGES), a.images or (1 if a.quick else len(IMAGES))))
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = list(CONTENDERS[r % 3 :] + CONTENDERS[: r % 3])
            if r % 2:
                order.reverse()
            for name in order:
                args = [name, "--images", str(n_images)]
                if r == 0:
                    args += ["--curves", str(Path(tmp) / f"{name}.npy")]
                start = time.perf_counter()
                out = C.run_worker(SCRIPT, args, timeout=a.timeout)
                runs[name].append(out)
                brief = {k: v for k, v in out.items() if k in ("error", "first", "second", "peak_rss_mb")}
                print(
                    f"[round {r + 1}/{rounds}] {name:10s} {time.perf_counter() - start:7.1f} s  "
                    f"{json.dumps(brief)}",
                    flush=True,
                )
        agreement = compare_curves(Path(tmp), runs)
    meta = {
        "machine": C.machine(),
        "peers": C.peer_versions(),
        "rounds": rounds,
        "quick": a.quick,
        "images": n_images,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    report = build_report(runs, meta, agreement)
    print()
    print(report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    print(f"written: {a.out} and {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
