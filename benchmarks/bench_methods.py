"""The new CAM methods and smoothing options against the peer that has each (issue 20): camwidget ÷ peer.

resnet18 (random init, seed 0) on two real photos (chelsea, coffee) at 128×128, the predicted classes, CPU;
ViT-B/16 at 128 px (its zero head re-initialised) for LeGrad. Each call builds its explainer afresh
(camwidget.explain; the peers' CAM objects in a ``with`` block), so no cache carries over between timed calls.

| camwidget | peer | setting |
|---|---|---|
| gradcam-elementwise, eigengradcam, kpcacam, fem, randomcam | pytorch-grad-cam's same-named class | layer4 |
| shapleycam | ShapleyCAM with ClassifierOutputReST | layer4 |
| finercam | FinerCAM (its default targets) | layer4 |
| fullgrad | FullGrad | every biased layer |
| gradcam + aug_smooth / eigen_smooth | GradCAM(aug_smooth / eigen_smooth=True) | layer4 |
| gradcam on layer3 + layer4 (mean / refine) | GradCAM([layer3, layer4]) / RefineCAM(GradCAM) | |
| sscam (2 samples), iscam (2 steps) | torchcam SSCAM / ISCAM | layer2 (128 maps: 512 masked forwards) |
| smoothgradcam++ (4 samples) | torchcam SmoothGradCAMpp (4 samples) | layer4 |
| legrad (the last 2 blocks) | torchcam LeGrad | ViT-B/16 |

Each side runs in its own process per round (the same allocator environment, alternated order), does one
warm-up call per method, then times ``--repeats`` calls and keeps their median; the report gives, per method,
the median over rounds of each side and their ratio camwidget ÷ peer (below 1: camwidget is faster), and
camwidget's time over a reference pass measured in the same processes (one forward + backward to the input).
Writes ``benchmarks/results/methods.md`` and ``methods.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

SCRIPT = Path(__file__).resolve()
SIZE = 128
IMAGES = ("chelsea", "coffee")
SIDES = ("camwidget", "peer")
# method -> (peer library, what the peer calls it)
CASES = {
    "gradcam-elementwise": ("pytorch-grad-cam", "GradCAMElementWise"),
    "eigengradcam": ("pytorch-grad-cam", "EigenGradCAM"),
    "fullgrad": ("pytorch-grad-cam", "FullGrad"),
    "kpcacam": ("pytorch-grad-cam", "KPCA_CAM"),
    "fem": ("pytorch-grad-cam", "FEM"),
    "shapleycam": ("pytorch-grad-cam", "ShapleyCAM"),
    "finercam": ("pytorch-grad-cam", "FinerCAM"),
    "randomcam": ("pytorch-grad-cam", "RandomCAM"),
    "aug_smooth": ("pytorch-grad-cam", "GradCAM aug_smooth"),
    "eigen_smooth": ("pytorch-grad-cam", "GradCAM eigen_smooth"),
    "layers-mean": ("pytorch-grad-cam", "GradCAM [layer3, layer4]"),
    "layers-refine": ("pytorch-grad-cam", "RefineCAM(GradCAM)"),
    "sscam": ("torchcam", "SSCAM"),
    "iscam": ("torchcam", "ISCAM"),
    "smoothgradcam++": ("torchcam", "SmoothGradCAMpp"),
    "legrad": ("torchcam", "LeGrad"),
}
QUICK = ("gradcam-elementwise", "fullgrad", "shapleycam", "aug_smooth", "iscam", "legrad")
SLOW = {"sscam", "iscam"}  # one timed call per round


# ------------------------------------------------------------------------------------------------------
# workers
# ------------------------------------------------------------------------------------------------------
def _inputs():
    import torch
    import torch.nn.functional as F

    x = torch.cat([C.load_image(name) for name in IMAGES])
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True)


def _vit():
    import torch
    import torchvision

    torch.manual_seed(C.SEED)
    model = torchvision.models.vit_b_16(weights=None, image_size=SIZE).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def _tokens(t):
    side = SIZE // 16
    return t[:, 1:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


VIT_BLOCKS = ["encoder.layers.encoder_layer_10", "encoder.layers.encoder_layer_11"]


def camwidget_call(method: str, model, vit, x, classes):
    import camwidget

    def explain(**kw):
        return lambda: camwidget.explain(model, x, target=classes, **kw)

    if method == "aug_smooth":
        return explain(method="gradcam", layer="layer4", aug_smooth=True)
    if method == "eigen_smooth":
        return explain(method="gradcam", layer="layer4", eigen_smooth=True)
    if method == "layers-mean":
        return explain(method="gradcam", layer=["layer3", "layer4"])
    if method == "layers-refine":
        return explain(method="gradcam", layer=["layer3", "layer4"], fusion="refine")
    if method == "fullgrad":
        return explain(method="fullgrad")
    if method == "sscam":
        return explain(method="sscam", layer="layer2", samples=2, seed=0)
    if method == "iscam":
        return explain(method="iscam", layer="layer2", samples=2)
    if method == "smoothgradcam++":
        return explain(method="smoothgradcam++", layer="layer4", samples=4, seed=0)
    if method == "legrad":
        vit_classes = classes_of(vit, x)
        return lambda: camwidget.explain(
            vit, x, method="legrad", layer=VIT_BLOCKS, target=vit_classes, reshape_transform=_tokens
        )
    options = {"seed": 0} if method == "randomcam" else {}
    return explain(method=method, layer="layer4", **options)


def classes_of(model, x):
    import torch

    with torch.no_grad():
        return model(x).argmax(1).tolist()


def pgc_call(method: str, model, x, classes):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    layer3, layer4 = model.layer3, model.layer4
    targets = [ClassifierOutputTarget(c) for c in classes]

    def run(cls, layers, targets=targets, **call):
        def call_once():
            with cls(model, layers) as cam:
                return cam(x, targets, **call)

        return call_once

    if method == "aug_smooth":
        return run(pgc.GradCAM, [layer4], aug_smooth=True)
    if method == "eigen_smooth":
        return run(pgc.GradCAM, [layer4], eigen_smooth=True)
    if method == "layers-mean":
        return run(pgc.GradCAM, [layer3, layer4])
    if method == "layers-refine":

        def refine():
            cam = pgc.RefineCAM(model, [layer3, layer4], base_method=pgc.GradCAM)
            try:
                return cam(x, targets)
            finally:
                for base in cam.base_cam_per_layer:
                    base.activations_and_grads.release()

        return refine
    if method == "fullgrad":
        return run(pgc.FullGrad, [])
    if method == "shapleycam":
        return run(pgc.ShapleyCAM, [layer4], targets=[ClassifierOutputReST(c) for c in classes])
    if method == "finercam":
        return run(pgc.FinerCAM, [layer4], targets=None)
    cls = getattr(pgc, CASES[method][1])
    return run(cls, [layer4])


def torchcam_call(method: str, model, vit, x, classes):
    import torch
    from torchcam.methods import ISCAM, SSCAM, LeGrad, SmoothGradCAMpp

    def hooked(make):
        def call_once():
            with make() as extractor:
                with torch.no_grad():
                    model(x)
                return extractor(class_idx=classes)

        return call_once

    if method == "sscam":
        return hooked(lambda: SSCAM(model, "layer2", num_samples=2, std=2.0))
    if method == "iscam":
        return hooked(lambda: ISCAM(model, "layer2", num_samples=2))
    if method == "smoothgradcam++":

        def smooth():
            with SmoothGradCAMpp(model, "layer4", num_samples=4, std=0.3) as extractor:
                model(x)
                return extractor(class_idx=classes)

        return smooth
    vit_classes = classes_of(vit, x)

    def legrad():
        with LeGrad(vit, VIT_BLOCKS) as extractor:
            vit(x)
            out = extractor(vit_classes)
        vit.zero_grad(set_to_none=True)
        return out

    return legrad


def forward_backward(model, x, classes, repeats: int) -> float:
    """Median seconds of one fp32 forward of the batch and one backward of the classes' logits to the
    input (no parameter gradients): the reference pass the report scales camwidget's times by."""
    import torch

    times = []
    for _ in range(repeats + 1):
        with C.Timer() as t:
            xx = x.detach().requires_grad_(True)
            scores = model(xx)[torch.arange(x.shape[0]), classes]
            torch.autograd.grad(scores.sum(), xx)
        times.append(t.seconds)
    return statistics.median(times[1:])


def worker(side: str, methods: list[str], repeats: int) -> dict:
    import torch

    model = C.load_model("resnet18")
    vit = _vit() if "legrad" in methods else None
    x = _inputs()
    classes = classes_of(model, x)
    with torch.inference_mode():
        model(x[:1])  # warm-up forward, the same for both sides
    out: dict[str, dict] = {}
    if side == "camwidget":  # the reference pass, in the same process as camwidget's calls
        out["bound"] = {"seconds": forward_backward(model, x, classes, repeats)}
        if vit is not None:
            out["bound-vit"] = {"seconds": forward_backward(vit, x, classes_of(vit, x), repeats)}
    for method in methods:
        if side == "camwidget":
            call = camwidget_call(method, model, vit, x, classes)
        elif CASES[method][0] == "pytorch-grad-cam":
            call = pgc_call(method, model, x, classes)
        else:
            call = torchcam_call(method, model, vit, x, classes)
        try:
            call()  # warm-up call
            times = []
            for _ in range(1 if method in SLOW else repeats):
                with C.Timer() as t:
                    call()
                times.append(t.seconds)
            out[method] = {"seconds": statistics.median(times)}
        except Exception as exc:  # report, do not hide: the table shows the error
            out[method] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        model.zero_grad(set_to_none=True)
    return {"methods": out, "peak_rss_mb": C.peak_rss_mb()}


# ------------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------------
def _bound(runs: dict, key: str) -> float:
    """The median over rounds of the reference pass (NaN when not measured)."""
    values = [r["methods"][key]["seconds"] for r in runs["camwidget"] if key in r.get("methods", {})]
    return C.summarize(values)[1]


def build_report(runs: dict, methods: list[str], meta: dict) -> str:
    lines = [
        "# New methods against their peers (CPU)",
        "",
        f"- machine: {meta['machine']}",
        f"- peers: {', '.join(f'{k} {v}' for k, v in meta['peers'].items())}",
        f"- resnet18 (random init, seed {C.SEED}), {len(IMAGES)} photos at {SIZE}×{SIZE}, predicted classes; "
        f"ViT-B/16 at {SIZE} px for LeGrad; rounds: {meta['rounds']}, repeats per round: {meta['repeats']} "
        "(SS-CAM, IS-CAM: 1); each side in its own process with "
        f"`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000`, alternated; {meta['when']}",
        f"- command: `{meta['command']}`",
        "",
        f"- load average (1, 5, 15 min) before / after: {meta['load_before']} / {meta['load_after']} "
        "(2 cores shared with other developers: absolute times are noisy, the ratios less so)",
        "",
        "The reference pass: one fp32 forward of the 2 images and one backward of the explained logits "
        f"all the way to the input (no parameter gradients): {C.fmt_s(_bound(runs, 'bound'))} on "
        f"resnet18, {C.fmt_s(_bound(runs, 'bound-vit'))} on ViT-B/16 (medians, in camwidget's processes). "
        "It is not a lower bound for a layer4 method, whose backward stops at layer4; it scales the last "
        "column: a method that needs one pass should sit near or under 1×, Smooth Grad-CAM++ near its "
        "sample count, the Score-CAM family at its masked forwards.",
        "",
        "| method | peer | camwidget (median) | peer (median) | camwidget ÷ peer | not slower "
        "| camwidget ÷ reference pass |",
        "|---|---|---:|---:|---:|:-:|---:|",
    ]
    for method in methods:
        cols = {}
        errors = []
        for side in SIDES:
            values = []
            for run in runs[side]:
                entry = run.get("methods", {}).get(method, {})
                if "seconds" in entry:
                    values.append(entry["seconds"])
                elif "error" in entry or "error" in run:
                    errors.append(f"{side}: {entry.get('error') or run.get('error')}")
            cols[side] = C.summarize(values)[1]
        ratio = cols["camwidget"] / cols["peer"] if cols["peer"] == cols["peer"] else float("nan")
        met = "–" if ratio != ratio else ("yes" if ratio <= 1 else "**no**")
        library, name = CASES[method]
        bound = _bound(runs, "bound-vit" if method == "legrad" else "bound")
        lines.append(
            f"| {method} | {library} {name} | {C.fmt_s(cols['camwidget'])} | {C.fmt_s(cols['peer'])} | "
            f"{'–' if ratio != ratio else f'{ratio:.2f}'} | {met} | {C.fmt_x(cols['camwidget'] / bound)} |"
            + (f" {errors[0]}" if errors else "")
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        p = argparse.ArgumentParser()
        p.add_argument("side")
        p.add_argument("--methods", required=True)
        p.add_argument("--repeats", type=int, default=3)
        a = p.parse_args(sys.argv[2:])
        C.add_peers_to_path()
        C.emit(worker(a.side, a.methods.split(","), a.repeats))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"1 round, 1 repeat, methods {', '.join(QUICK)}")
    p.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per method and round (default 3)")
    p.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(CASES))
    p.add_argument("--models", default=None, help="ignored (resnet18 and a ViT); accepted for run.sh")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", type=Path, default=C.RESULTS / "methods.md")
    a = p.parse_args()
    rounds = a.rounds or (1 if a.quick else 3)
    repeats = a.repeats or (1 if a.quick else 3)
    methods = a.methods.split(",") if a.methods else list(QUICK if a.quick else CASES)
    unknown = set(methods) - set(CASES)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(CASES)}")
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    for r in range(rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            start = time.perf_counter()
            args = [side, "--methods", ",".join(methods), "--repeats", str(repeats)]
            out = C.run_worker(SCRIPT, args, timeout=a.timeout)
            runs[side].append(out)
            brief = {m: round(v["seconds"], 3) for m, v in out.get("methods", {}).items() if "seconds" in v}
            failed = [m for m, v in out.get("methods", {}).items() if "error" in v] + (
                ["(worker) " + out["error"]] if "error" in out else []
            )
            took = time.perf_counter() - start
            print(
                f"[round {r + 1}/{rounds}] {side:9s} {took:6.1f} s {json.dumps(brief)} {failed or ''}",
                flush=True,
            )
    meta = {
        "machine": C.machine(),
        "peers": C.peer_versions(),
        "rounds": rounds,
        "repeats": repeats,
        "quick": a.quick,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": load_before,
        "load_after": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        "command": "python benchmarks/bench_methods.py " + " ".join(sys.argv[1:]),
    }
    report = build_report(runs, methods, meta)
    print()
    print(report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    print(f"written: {a.out} and {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
