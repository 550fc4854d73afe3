"""Score-CAM speed and memory: camwidget against the forward bound, pytorch-grad-cam and torchcam (issue 2).

For resnet18 and resnet50 (random init, fixed seed; Score-CAM's work hardly depends on the weights) at
``layer4``, and the bundled trained ImageNet SqueezeNet 1.1 at ``features.12`` (where trained weights give
many constant maps, which camwidget skips), on the CPU, with one real photo (scikit-image's "chelsea",
224×224):

- forward bound: C (the number of maps at the layer) ÷ the best images/s of plain batched inference
  (batch 8/16/32 × channels_last on/off × fp32/bf16 autocast, under ``inference_mode``): the least time any
  Score-CAM needs for its C masked forwards;
- camwidget Score-CAM at default options: the first call (``camwidget.explain``, a fresh Explainer in a
  fresh process: includes building and checking the private copy) and the steady state (a fresh Explainer
  on the same model: the copy is reused after its check against the live model); then a second class of
  the same image on that Explainer (a cache hit: one plain forward, no masked forward);
- pytorch-grad-cam's ``ScoreCAM`` and torchcam's ``ScoreCAM`` at their defaults;
- Grad-CAM / HiResCAM of camwidget and pytorch-grad-cam, torchcam's Grad-CAM (first call and median of 5);
- peak resident memory (``ru_maxrss``) of each, every contender in its own subprocess with the same
  allocator environment, contenders alternated round by round; min and median over rounds are reported;
- agreement of the maps: camwidget's "pytorch-grad-cam" / "torchcam" presets against the peers' maps
  (Pearson correlation at 224×224), and the default "paper" preset against both, for information.

Run ``python benchmarks/bench_scorecam.py [--quick] [--rounds N] [--models M1,M2]`` (models: resnet18,
resnet50, squeezenet1_1-imagenet), normally through ``bash benchmarks/run.sh`` (which installs the
peers). Writes ``benchmarks/results/scorecam.md`` and ``scorecam.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

SCRIPT = Path(__file__).resolve()
LAYERS = {"resnet18": "layer4", "resnet50": "layer4", C.SQUEEZENET: "features.12"}


def layer_of(model_name: str) -> str:
    """The layer every contender explains: ``layer4`` for resnets, the last Fire module for SqueezeNet."""
    return LAYERS.get(model_name, "layer4")


SCORECAM = ("cw-scorecam", "pgc-scorecam", "tc-scorecam")
FAST = ("cw-gradcam", "pgc-gradcam", "tc-gradcam", "cw-hirescam", "pgc-hirescam")
LABELS = {
    "bound": "forward bound (C ÷ best img/s)",
    "cw-first": "camwidget Score-CAM, first call",
    "cw-steady": "camwidget Score-CAM, steady state",
    "cw-class2": "camwidget Score-CAM, 2nd class (cache hit)",
    "pgc-scorecam": "pytorch-grad-cam ScoreCAM",
    "tc-scorecam": "torchcam ScoreCAM",
    "cw-gradcam": "camwidget Grad-CAM",
    "pgc-gradcam": "pytorch-grad-cam GradCAM",
    "tc-gradcam": "torchcam GradCAM",
    "cw-hirescam": "camwidget HiResCAM",
    "pgc-hirescam": "pytorch-grad-cam HiResCAM",
}


# ------------------------------------------------------------------------------------------------------
# workers: each runs in its own process, prints one JSON line
# ------------------------------------------------------------------------------------------------------
def _setup(model_name: str):
    import torch

    C.add_peers_to_path()
    model = C.load_model(model_name)
    x = C.load_image()
    with torch.inference_mode():
        logits = model(x)  # warm-up, the same for every contender
    order = logits[0].argsort(descending=True)
    return model, x, int(order[0]), int(order[1])


def _save(path: str | None, cam) -> None:
    import numpy as np
    import torch

    if path is None:
        return
    cam = torch.as_tensor(np.asarray(cam)).float().squeeze()
    if cam.shape != (224, 224):  # torchcam: feature resolution -> input resolution
        cam = torch.nn.functional.interpolate(cam[None, None], size=(224, 224), mode="bilinear")[0, 0]
    np.save(path, cam.numpy())


def _channels(model, x, model_name: str) -> tuple[int, int]:
    """(number of maps at the layer, how many of them are constant for this image)."""
    import torch

    seen = {}

    def hook(module, args, output) -> None:
        flat = output[0].flatten(1)
        seen["c"] = output.shape[1]
        seen["constant"] = int((flat.amax(1) <= flat.amin(1)).sum())

    handle = model.get_submodule(layer_of(model_name)).register_forward_hook(hook)
    with torch.inference_mode():
        model(x)
    handle.remove()
    return int(seen["c"]), seen["constant"]


def _hopeless(configs: list[dict], ips: float) -> bool:
    """A configuration running at under a third of the best rate so far cannot be the bound."""
    return bool(configs) and ips * 3 < max(c["ips"] for c in configs)


def worker_bound(model_name: str, quick: bool) -> dict:
    """Best images/s of plain batched inference over batch size × layout × precision."""
    import torch

    model, x, _, _ = _setup(model_name)
    channels, _ = _channels(model, x, model_name)
    base = C.rss_mb()
    configs = []
    images = 24 if quick else 64
    for channels_last in (False, True):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        for precision in ("fp32", "bf16"):
            for batch in (8, 16, 32):
                xb = x.expand(batch, -1, -1, -1).contiguous(memory_format=fmt)
                ctx = (
                    torch.autocast("cpu", dtype=torch.bfloat16)
                    if precision == "bf16"
                    else torch.autocast("cpu", enabled=False)
                )
                times = []
                with torch.inference_mode(), ctx:
                    model(xb)  # warm-up: first-shape allocations, kernel selection
                    for _ in range(max(2, math.ceil(images / batch))):
                        with C.Timer() as t:
                            model(xb)
                        times.append(t.seconds)
                        if _hopeless(configs, batch / t.seconds):
                            break
                per_batch = sorted(times)[len(times) // 2]  # median
                configs.append(
                    {
                        "batch": batch,
                        "channels_last": channels_last,
                        "precision": precision,
                        "ips": batch / per_batch,
                    }
                )
                if _hopeless(configs[:-1], configs[-1]["ips"]):
                    break  # e.g. bf16 emulated on a CPU without native bf16: 10x slower, minutes per try
    best = max(configs, key=lambda c: c["ips"])
    return {
        "channels": channels,
        "configs": configs,
        "best": best,
        "seconds": channels / best["ips"],
        "base_rss_mb": base,
        "peak_rss_mb": C.peak_rss_mb(),
    }


def worker_cw_scorecam(model_name: str, map_path: str | None) -> dict:
    from camwidget import Explainer, explain

    model, x, _, second = _setup(model_name)
    base = C.rss_mb()
    with C.Timer() as first:
        cam = explain(model, x, method="scorecam", layer=layer_of(model_name))
    explainer = Explainer(model, layer_of(model_name))
    with C.Timer() as steady:
        explainer(x, method="scorecam")
    plan = [{"precision": explainer.precision_used, "copy": _copy_kind(model)}]
    class2 = []
    for _ in range(3):
        with C.Timer() as t:
            explainer(x, second, method="scorecam")
        class2.append(t.seconds)
    _save(map_path, cam)
    return {
        "skipped": _channels(model, x, model_name)[1],
        "first": first.seconds,
        "steady": steady.seconds,
        "class2": class2[0],
        "class2_median": sorted(class2)[1],
        "plan": plan,
        "base_rss_mb": base,
        "peak_rss_mb": C.peak_rss_mb(),
    }


def _copy_kind(model) -> str:
    """Which private copy the engine keeps for ``model`` ("folded", "unfolded" or "none": live model)."""
    from camwidget.engine.twin import twins

    entries = list(twins(model).entries.values())
    return "none" if not entries else ("folded" if entries[0].folded else "unfolded")


def worker_cw_variants(model_name: str, map_dir: str | None) -> dict:
    """camwidget's peer presets, for the agreement check (not part of the timing table)."""
    from camwidget import explain

    model, x, _, _ = _setup(model_name)
    out = {}
    for variant in ("pytorch-grad-cam", "torchcam"):
        with C.Timer() as t:
            cam = explain(model, x, method="scorecam", layer=layer_of(model_name), variant=variant)
        out[variant] = t.seconds
        _save(map_dir and str(Path(map_dir) / f"cw-{variant}.npy"), cam)
    return out


def worker_pgc_scorecam(model_name: str, map_path: str | None) -> dict:
    from pytorch_grad_cam import ScoreCAM

    model, x, _, _ = _setup(model_name)
    base = C.rss_mb()
    with C.Timer() as t:
        cam = ScoreCAM(model, target_layers=[model.get_submodule(layer_of(model_name))])
        result = cam(input_tensor=x, targets=None)
    _save(map_path, result)
    return {"first": t.seconds, "base_rss_mb": base, "peak_rss_mb": C.peak_rss_mb()}


def worker_tc_scorecam(model_name: str, map_path: str | None) -> dict:
    import torch
    from torchcam.methods import ScoreCAM

    model, x, _, _ = _setup(model_name)
    base = C.rss_mb()
    with C.Timer() as t, ScoreCAM(model, layer_of(model_name)) as extractor:
        with torch.inference_mode():
            out = model(x)
        cams = extractor(out[0].argmax().item(), out)
    _save(map_path, cams[0])
    return {"first": t.seconds, "base_rss_mb": base, "peak_rss_mb": C.peak_rss_mb()}


def worker_fast(contender: str, model_name: str) -> dict:
    """Grad-CAM-family methods: first call and the median of the next five."""
    model, x, _, _ = _setup(model_name)
    lib, method = contender.split("-", 1)
    if lib == "cw":
        from camwidget import explain

        def call():
            return explain(model, x, method=method, layer=layer_of(model_name))

    elif lib == "pgc":
        import pytorch_grad_cam

        cls = {"gradcam": pytorch_grad_cam.GradCAM, "hirescam": pytorch_grad_cam.HiResCAM}[method]
        cam = cls(model, target_layers=[model.get_submodule(layer_of(model_name))])

        def call():
            return cam(input_tensor=x, targets=None)

    else:
        from torchcam.methods import GradCAM

        extractor = GradCAM(model, layer_of(model_name))

        def call():
            out = model(x)
            return extractor(out[0].argmax().item(), out)

    base = C.rss_mb()
    times = []
    for _ in range(6):
        with C.Timer() as t:
            call()
        times.append(t.seconds)
    return {
        "first": times[0],
        "steady": sorted(times[1:])[2],
        "base_rss_mb": base,
        "peak_rss_mb": C.peak_rss_mb(),
    }


def run_worker_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("contender")
    p.add_argument("model")
    p.add_argument("--map")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    C.add_peers_to_path()
    if a.contender == "bound":
        result = worker_bound(a.model, a.quick)
    elif a.contender == "cw-scorecam":
        result = worker_cw_scorecam(a.model, a.map)
    elif a.contender == "cw-variants":
        result = worker_cw_variants(a.model, a.map)
    elif a.contender == "pgc-scorecam":
        result = worker_pgc_scorecam(a.model, a.map)
    elif a.contender == "tc-scorecam":
        result = worker_tc_scorecam(a.model, a.map)
    else:
        result = worker_fast(a.contender, a.model)
    C.emit(result)


# ------------------------------------------------------------------------------------------------------
# parent: alternate, repeat, summarise
# ------------------------------------------------------------------------------------------------------
def correlation(a, b) -> float:
    import numpy as np

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float("nan") if denom == 0 else float(a @ b / denom)


def collect(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs if "error" not in r and key in r]


def build_report(results: dict, meta: dict) -> str:
    lines = [
        "# Score-CAM benchmark (CPU)",
        "",
        f"- machine: {meta['machine']}",
        f"- peers: {', '.join(f'{k} {v}' for k, v in meta['peers'].items())}",
        f"- rounds: {meta['rounds']}{' (--quick)' if meta['quick'] else ''}; contenders alternated; every "
        f"contender in its own process with `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000`",
        f"- input: one 224×224 photo (chelsea); random-init torchvision resnets (seed {C.SEED}) at "
        f"`layer4`, the bundled trained ImageNet SqueezeNet 1.1 at `features.12`; {meta['when']}",
        "",
    ]
    for model_name, res in results.items():
        runs = res["runs"]
        bound = runs["bound"]
        channels = next((r["channels"] for r in bound if "channels" in r), "?")
        lines += [f"## {model_name} ({channels} maps at {layer_of(model_name)})", ""]
        skipped = next((r["skipped"] for r in runs["cw-scorecam"] if "skipped" in r), None)
        if skipped is not None:
            lines += [
                f"camwidget's default preset skips {skipped} of the {channels} maps as constant "
                "(no forward pass); the peers run them all.",
                "",
            ]
        lines += [
            "| contender | time min | time median | ÷ camwidget steady | peak RSS (MB) "
            "| Δ RSS over idle (MB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        source = {"cw-first": "cw-scorecam", "cw-steady": "cw-scorecam", "cw-class2": "cw-scorecam"}
        rows: dict[str, tuple[list[float], list[dict]]] = {
            "bound": (collect(bound, "seconds"), bound),
            "cw-first": (collect(runs["cw-scorecam"], "first"), runs["cw-scorecam"]),
            "cw-steady": (collect(runs["cw-scorecam"], "steady"), runs["cw-scorecam"]),
            "cw-class2": (collect(runs["cw-scorecam"], "class2"), []),
            "pgc-scorecam": (collect(runs["pgc-scorecam"], "first"), runs["pgc-scorecam"]),
            "tc-scorecam": (collect(runs["tc-scorecam"], "first"), runs["tc-scorecam"]),
        }
        for name in FAST:
            rows[name] = (collect(runs[name], "steady"), runs[name])
        med = {name: C.summarize(v)[1] for name, (v, _) in rows.items()}
        mem = {name: C.summarize(collect(r, "peak_rss_mb"))[1] for name, (_, r) in rows.items()}
        delta = {
            name: C.summarize([x["peak_rss_mb"] - x["base_rss_mb"] for x in r if "error" not in x])[1]
            for name, (_, r) in rows.items()
        }
        steady = med["cw-steady"]
        for name, (values, _) in rows.items():
            lo, mid = C.summarize(values)
            ratio = math.nan if name in FAST else mid / steady
            label = LABELS[name] + (" (median of 5 warm calls)" if name in FAST else "")
            errors = [r["error"] for r in runs[source.get(name, name)] if "error" in r]
            lines.append(
                f"| {label} | {C.fmt_s(lo)} | {C.fmt_s(mid)} | {C.fmt_x(ratio)} | {_mb(mem[name])} | "
                f"{_mb(delta[name])} |" + (f" error: {errors[0]}" if errors else "")
            )
        first_fast = {name: C.summarize(collect(runs[name], "first"))[1] for name in FAST}
        lines += [
            "",
            "Grad-CAM family, first call in a fresh process (median): "
            + ", ".join(f"{LABELS[n]} {C.fmt_s(first_fast[n])}" for n in FAST)
            + ".",
        ]
        best = [r["best"] for r in bound if "best" in r]
        if best:
            b = best[-1]
            lines.append(
                f"Best plain-inference configuration (last round): batch {b['batch']}, "
                f"{'channels_last' if b['channels_last'] else 'contiguous'}, {b['precision']}, "
                f"{b['ips']:.1f} img/s."
            )
            configs = next(r["configs"] for r in reversed(bound) if "configs" in r)
            lines.append(
                "Plain inference img/s (last round; batch 8/16/32; –: not tried, under 1/3 of the best): "
                + "; ".join(
                    f"{p} {'CL' if cl else 'NCHW'}: "
                    + "/".join(
                        next(
                            (
                                f"{c['ips']:.0f}"
                                for c in configs
                                if (c["precision"], c["channels_last"], c["batch"]) == (p, cl, b)
                            ),
                            "–",
                        )
                        for b in (8, 16, 32)
                    )
                    for cl in (False, True)
                    for p in ("fp32", "bf16")
                )
                + "."
            )
        plans = [r["plan"] for r in runs["cw-scorecam"] if r.get("plan")]
        if plans:
            lines.append(f"camwidget's chosen plan(s): {plans[-1]}.")
        # goals
        pgc, tc = med["pgc-scorecam"], med["tc-scorecam"]
        speedup = pgc / steady
        to_bound = steady / med["bound"]
        class2 = steady / med["cw-class2"]
        lines += [
            "",
            "| goal | measured (medians) | met |",
            "|---|---:|:-:|",
            f"| ≥ 3× faster than pytorch-grad-cam ScoreCAM | {C.fmt_x(speedup)} steady, "
            f"{C.fmt_x(pgc / med['cw-first'])} first call | {_ok(speedup >= 3)} |",
            f"| within 1.15× of the forward bound | {C.fmt_x(to_bound)} steady, "
            f"{C.fmt_x(med['cw-first'] / med['bound'])} first call | {_ok(to_bound <= 1.15)} |",
            f"| lower peak memory than pytorch-grad-cam / torchcam | {mem['cw-steady']:.0f} MB vs "
            f"{mem['pgc-scorecam']:.0f} / {mem['tc-scorecam']:.0f} MB | "
            f"{_ok(mem['cw-steady'] < min(mem['pgc-scorecam'], mem['tc-scorecam']))} |",
            f"| 2nd class ≥ 50× faster (cache hit) | {C.fmt_x(class2)} vs steady, "
            f"{C.fmt_x(med['cw-first'] / med['cw-class2'])} vs first | {_ok(class2 >= 50)} |",
            f"| (for information) torchcam ScoreCAM ÷ camwidget steady | {C.fmt_x(tc / steady)} | |",
            "",
        ]
        agree = res.get("agreement", {})
        if agree:
            lines.append(
                "Map agreement (Pearson r at 224×224): "
                + ", ".join(f"{k} {v:.4f}" for k, v in agree.items())
                + "."
            )
            lines.append("")
    return "\n".join(lines) + "\n"


def _mb(value: float) -> str:
    return "–" if value != value else f"{value:.0f}"


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        run_worker_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="resnet18 and SqueezeNet only, 1 round, shorter bound search"
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds per model (default 3, 1 with --quick)")
    p.add_argument(
        "--models", default=None, help=f"comma-separated (default resnet18,resnet50,{C.SQUEEZENET})"
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per contender process")
    p.add_argument("--out", type=Path, default=C.RESULTS / "scorecam.md")
    a = p.parse_args()
    rounds = a.rounds or (1 if a.quick else 3)
    default = ["resnet18", C.SQUEEZENET] if a.quick else ["resnet18", "resnet50", C.SQUEEZENET]
    models = a.models.split(",") if a.models else default
    contenders = ["bound", *SCORECAM, *FAST]
    results: dict[str, dict] = {m: {"runs": {c: [] for c in contenders}} for m in models}
    extra = ["--quick"] if a.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for model_name in models:
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                if r % 2:
                    order.reverse()
                for name in order:
                    args = [name, model_name, *extra]
                    if r == 0 and name in SCORECAM:
                        args += ["--map", str(Path(tmp) / f"{model_name}-{name}.npy")]
                    start = time.perf_counter()
                    out = C.run_worker(SCRIPT, args, timeout=a.timeout)
                    results[model_name]["runs"][name].append(out)
                    print(
                        f"[round {r + 1}/{rounds}] {model_name:9s} {name:13s} "
                        f"{time.perf_counter() - start:7.1f} s  {json.dumps(_brief(out))}",
                        flush=True,
                    )
        for model_name in models:
            vdir = Path(tmp) / f"{model_name}-variants"
            vdir.mkdir()
            out = C.run_worker(SCRIPT, ["cw-variants", model_name, "--map", str(vdir)], timeout=a.timeout)
            print(f"[agreement] {model_name} camwidget presets: {json.dumps(out)}", flush=True)
            results[model_name]["variants"] = out
            results[model_name]["agreement"] = agreement(Path(tmp), model_name, vdir)
    meta = {
        "machine": C.machine(),
        "peers": C.peer_versions(),
        "rounds": rounds,
        "quick": a.quick,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    report = build_report(results, meta)
    print()
    print(report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(f"written: {a.out} and {a.out.with_suffix('.json')}")


def _brief(out: dict) -> dict:
    keep = ("error", "seconds", "first", "steady", "class2", "peak_rss_mb")
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items() if k in keep}


def agreement(tmp: Path, model_name: str, vdir: Path) -> dict[str, float]:
    import numpy as np

    def load(path: Path):
        return np.load(path) if path.exists() else None

    maps = {
        "paper": load(tmp / f"{model_name}-cw-scorecam.npy"),
        "cw-pgc": load(vdir / "cw-pytorch-grad-cam.npy"),
        "cw-tc": load(vdir / "cw-torchcam.npy"),
        "pgc": load(tmp / f"{model_name}-pgc-scorecam.npy"),
        "tc": load(tmp / f"{model_name}-tc-scorecam.npy"),
    }
    pairs = {
        'camwidget "pytorch-grad-cam" vs pytorch-grad-cam': ("cw-pgc", "pgc"),
        'camwidget "torchcam" vs torchcam': ("cw-tc", "tc"),
        'camwidget "paper" (default) vs pytorch-grad-cam': ("paper", "pgc"),
        'camwidget "paper" (default) vs torchcam': ("paper", "tc"),
    }
    return {
        name: correlation(maps[a], maps[b])
        for name, (a, b) in pairs.items()
        if maps[a] is not None and maps[b] is not None
    }


if __name__ == "__main__":
    main()
