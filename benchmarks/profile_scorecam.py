"""Where camwidget's Score-CAM spends its time: a breakdown, not a race.

Wraps the engine's pieces with timers (masked-input building, the batched forwards, the rest) for one
steady-state call (plan already cached), then compares with plain batched inference at the same plan, and
optionally prints ``torch.profiler``'s top operators. Run in the bench environment, e.g.::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 python benchmarks/profile_scorecam.py resnet50

Fractions are meaningful on a busy machine too; absolute times are not.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


def _channels(model, x) -> int:
    import torch

    seen = {}

    def hook(module, args, output) -> None:
        seen["c"] = output.shape[1]

    handle = model.get_submodule("layer4").register_forward_hook(hook)
    with torch.inference_mode():
        model(x)
    handle.remove()
    return int(seen["c"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default="resnet18")
    p.add_argument("--profiler", action="store_true", help="also print torch.profiler's top operators")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", default="auto", help="Explainer precision (default auto)")
    a = p.parse_args()

    import torch

    from camwidget import Explainer
    from camwidget.engine import batching
    from camwidget.engine.precision import autocast
    from camwidget.methods import score

    if a.threads:
        torch.set_num_threads(a.threads)
    model = C.load_model(a.model)
    x = C.load_image()
    Explainer(model, "layer4", precision=a.precision)(x, method="scorecam")  # plan measured, cached

    spent: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
                counts[name] += 1

        return wrapper

    score.channel_masks = timed("channel masks (upsample + min-max)", score.channel_masks)
    forward = batching.ForwardRunner._forward
    batching.ForwardRunner._forward = timed("batched forwards (incl. layout copy)", forward)
    runners: list[batching.ForwardRunner] = []
    logits = batching.ForwardRunner.logits

    def recorded(self, make_batch, total):
        runners.append(self)
        return logits(self, make_batch, total)

    batching.ForwardRunner.logits = recorded
    explainer = Explainer(model, "layer4", precision=a.precision)
    start = time.perf_counter()
    explainer(x, method="scorecam")
    total = time.perf_counter() - start
    runner = runners[-1]
    plan = {
        "precision": runner.precision_used,
        "batch_size": runner.batch_size_used,
        "runs on": runner.executor,
    }
    print(f"{a.model}: steady-state Score-CAM {total:.2f} s; plan {plan}")
    accounted = 0.0
    for name, seconds in spent.items():
        accounted += seconds
        print(f"  {name:42s} {seconds:7.2f} s  {100 * seconds / total:5.1f}%  ({counts[name]} calls)")
    # make_batch = masks + the index/gather/multiply around them; the remainder is everything else
    print(f"  {'other (capture forward, mul, cache, weights)':42s} {total - accounted:7.2f} s")

    # plain inference at the same plan, on the same private copy, same number of images
    batching.ForwardRunner._forward = forward
    batching.ForwardRunner.logits = logits
    twin = runner._module
    n_maps = _channels(model, x)
    size = plan["batch_size"]
    xb = x.expand(size, -1, -1, -1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(torch.device("cpu"), plan["precision"]):
        twin(xb)
        start = time.perf_counter()
        for _ in range(-(-n_maps // size)):
            twin(xb)
        plain = time.perf_counter() - start
    print(f"  plain inference of {n_maps} images at that plan: {plain:.2f} s ({n_maps / plain:.1f} img/s)")

    if a.profiler:
        from torch.profiler import ProfilerActivity, profile

        explainer = Explainer(model, "layer4", precision=a.precision)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            explainer(x, method="scorecam")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
