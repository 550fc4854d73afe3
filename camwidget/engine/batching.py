"""Many forward passes, fast: batched, without hooks, under ``inference_mode``, at the best precision.

Score-CAM, Ablation-CAM and the perturbation metrics all need logits for a long stream of synthetic
inputs. :class:`ForwardRunner` builds those inputs chunk by chunk through a callback (never all at once:
pytorch-grad-cam materialises B x C x 3 x H x W, over 1 GB for one ResNet-50 image) and chooses, by
measurement on the first chunks of the real work:

- the precision: fp32, or bf16/fp16 autocast where it is clearly faster (>= 1.25x) *and* its logits
  agree with fp32 (Pearson correlation >= 0.999 on the same chunk; each precision timed twice on real
  work, the faster timing counting, so one disturbed timing cannot flip the choice); the weighting
  math downstream stays fp32. bf16 probabilities differ from fp32 by up to a few hundredths: pass
  ``precision="fp32"`` where numbers must be reproducible to the last digit across machines and runs;
- the batch size on CPU (8 or 16 by measurement, the best of two timings each; 32 and more cost memory
  for little or no speed on 2-core machines); on CUDA the largest that fits, halving and retrying after
  ``torch.OutOfMemoryError``.

Decisions are remembered per (model, device, input shape) for the life of the model object.

Convolutional models run these passes on a *layout twin*: a private deep copy in eval mode with
channels_last weights and each BatchNorm folded into the convolution before it (:mod:`.folding`).
bf16 + channels_last ran 2-3x faster than plain fp32 on an AVX-512 CPU, fp32 channels_last 1.3-2x on an
AVX2 one. The caller's model is never converted; the twin is rebuilt when the caller's parameters or
buffers change (in-place version counters) or are replaced, and costs one extra copy of the weights.
"""

from __future__ import annotations

import contextlib
import copy
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from camwidget.engine.folding import fold_batchnorm
from camwidget.engine.validation import PRECISIONS, check_logits, check_runner_options

__all__ = ["PRECISIONS", "Cancelled", "ForwardRunner", "autocast", "layout_twin", "model_device"]

_AGREEMENT = 0.999
_CLEARLY_FASTER = 1.25  # low precision must beat fp32 by this factor, so timing noise cannot flip the choice
_PROBE = 8  # items per precision timing
# CPU batch sizes to try. 32 is left out on purpose: on 2-core machines it was at best ~4% faster than 16
# (resnet50) and slower elsewhere (SqueezeNet 122 vs 139 img/s), and each extra 16 images of SqueezeNet
# cost ~90 MB of peak memory; 64 and above were slower still (cache-bound).
_CPU_BATCH_SIZES = (8, 16)
_ROUNDS = 2  # each candidate timed twice (on real work), the faster timing counts


class Cancelled(Exception):
    """Raise from a ``progress`` callback to abort long work; the model is restored as usual."""


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameterless model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """An autocast context for ``precision`` in ("fp32", "bf16", "fp16") on ``device``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# model -> {modules kept whole: (fingerprint of the model's parameters, twin)}
_TWINS: weakref.WeakKeyDictionary[nn.Module, dict[frozenset[str], tuple[tuple[object, ...], nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def _fingerprint(model: nn.Module) -> tuple[object, ...]:
    from camwidget.engine.cache import parameter_version

    return (tuple(id(t) for t in model.parameters()), parameter_version(model))


def layout_twin(model: nn.Module, keep: frozenset[str] = frozenset()) -> nn.Module:
    """A channels_last eval-mode copy of ``model``, BatchNorm folded where the graph allows
    (:func:`~camwidget.engine.folding.fold_batchnorm`), for hook-free batched inference; or ``model``
    itself when a copy would not help (no 2-D convolution) or is impossible (it cannot be deep-copied).

    ``keep``: dotted names of modules that must stay hookable under the same name in the copy (nothing
    is folded at or inside them). Copies are cached per model and ``keep``, rebuilt when the model's
    parameters or buffers change."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model
    key = _fingerprint(model)
    twins = _TWINS.setdefault(model, {})
    cached = twins.get(keep)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with torch.no_grad():
            twin = copy.deepcopy(model).eval()
    except Exception:  # un-copyable modules: use the model itself
        return model
    for module in twin.modules():  # hooks the caller put on their model must not run twice
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            getattr(module, name).clear()
    with torch.no_grad():
        twin = fold_batchnorm(twin, keep).to(memory_format=torch.channels_last)
    twin.requires_grad_(False)
    if keep:  # at most one special copy besides the plain one: a widget user trying Ablation-CAM on
        # layer after layer must not pile up a copy of the weights per layer
        for other in [k for k in twins if k]:
            del twins[other]
    twins[keep] = (key, twin)
    return twin


@dataclass
class _Plan:
    """What "auto" settled on for one (model, device, input shape). ``None`` = not measured yet (too
    few items so far); only measured values are remembered, and only by runs that asked for "auto"."""

    precision: str | None = None
    batch_size: int | None = None


_PLANS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], _Plan]] = weakref.WeakKeyDictionary()


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten().double()
    b = b.flatten().double()
    a = a - a.mean()
    b = b - b.mean()
    denom = a.norm() * b.norm()
    return 1.0 if denom == 0 else float((a @ b) / denom)


def _low_precision_candidate(device: torch.device) -> str | None:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        return "bf16" if capability in ("AVX512", "AVX512_BF16", "AMX") or "AVX512" in capability else None
    return None


class ForwardRunner:
    """Logits of the model for a stream of inputs built on demand.

    Args:
        model: the classifier, already in the mode it should run in (the caller holds
            :func:`~camwidget.engine.hooks.preserved_state`).
        precision: "auto" (measure, see module doc), "fp32", "bf16" or "fp16".
        batch_size: "auto" or a fixed number of inputs per forward.
        progress: called as ``progress(done, total)`` after each chunk; raise :class:`Cancelled` to stop.
        twin: run on :func:`layout_twin` (default True). Set False when hooks on the model itself must
            fire during these passes.
        keep: dotted module names that must stay whole and hookable in the twin (see :func:`layout_twin`);
            hook them through ``runner.forward_model``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        precision: str = "auto",
        batch_size: int | str = "auto",
        progress: Callable[[int, int], None] | None = None,
        twin: bool = True,
        keep: tuple[str, ...] = (),
    ) -> None:
        check_runner_options(precision, batch_size)
        self.model = model
        self.forward_model = layout_twin(model, frozenset(keep)) if twin else model
        self.channels_last = self.forward_model is not model
        self.device = model_device(model)
        self.precision = precision
        self.batch_size = batch_size
        self.progress = progress
        self.chosen: _Plan | None = None
        self._remembered: _Plan | None = None

    def _forward(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, precision):
            out = self.forward_model(x)
        return check_logits(out).float()

    def _timed(self, x: torch.Tensor, precision: str) -> tuple[torch.Tensor, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = self._forward(x, precision)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out, time.perf_counter() - start

    def logits(self, make_batch: Callable[[int, int], torch.Tensor], total: int) -> torch.Tensor:
        """Run ``model(make_batch(start, stop))`` over ``range(total)`` in chunks.

        Args:
            make_batch: returns the (stop - start, 3, H, W) inputs for items ``start:stop``.
            total: number of items.

        Returns:
            (total, K) float32 logits on the model's device.
        """
        chunks: list[torch.Tensor] = []
        done = 0
        with torch.inference_mode():
            for out in self._chunks(make_batch, total):
                chunks.append(out)
                done += out.shape[0]
                if self.progress is not None:
                    self.progress(done, total)
        if not chunks:
            return torch.empty(0, 0, device=self.device)
        return torch.cat(chunks)

    def _key(self, x: torch.Tensor) -> tuple[object, ...]:
        return (self.device.type, self.device.index, x.dtype, tuple(x.shape[1:]))

    def _chunks(self, make_batch: Callable[[int, int], torch.Tensor], total: int) -> Iterator[torch.Tensor]:
        start = 0
        if self.chosen is None and total:
            probe = make_batch(0, min(total, _PROBE))
            remembered = _PLANS.setdefault(self.model, {}).setdefault(self._key(probe), _Plan())
            for out in self._measure(probe, make_batch, total, remembered):
                start += out.shape[0]
                yield out
        plan = self.chosen or _Plan("fp32", 1)
        size = plan.batch_size or 8
        while start < total:
            stop = min(total, start + size)
            try:
                out = self._forward(make_batch(start, stop), plan.precision or "fp32")
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                size = max(1, size // 2)
                plan.batch_size = size
                if self.batch_size == "auto" and self._remembered is not None:
                    self._remembered.batch_size = size  # the next call on this model starts there
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start = stop
            yield out

    def _measure(
        self,
        probe: torch.Tensor,
        make_batch: Callable[[int, int], torch.Tensor],
        total: int,
        remembered: _Plan,
    ) -> list[torch.Tensor]:
        """Settle precision and batch size for this run, measuring on the first chunks of the real work
        where "auto" has nothing remembered yet. Returns the outputs already computed, in order."""
        self._remembered = remembered
        outputs: list[torch.Tensor] = []
        precision = self.precision if self.precision != "auto" else remembered.precision
        if precision is None:
            precision, outputs = self._measure_precision(probe, make_batch, total)
            remembered.precision = precision
        done = sum(out.shape[0] for out in outputs)
        if self.batch_size != "auto":
            size: int | None = int(self.batch_size)
        elif remembered.batch_size is not None:
            size = remembered.batch_size
        elif self.device.type != "cpu":
            size = remembered.batch_size = 64
        else:
            # CPU: per-image time at each candidate size on the next real chunks, the best of two rounds
            # (one timing can be spoiled by another process); remember only a complete measurement.
            rates: dict[int, float] = {}
            for _ in range(_ROUNDS):
                for candidate in _CPU_BATCH_SIZES:
                    if done + candidate > total:
                        break
                    out, seconds = self._timed(make_batch(done, done + candidate), precision)
                    outputs.append(out)
                    done += candidate
                    rates[candidate] = min(rates.get(candidate, float("inf")), seconds / candidate)
            size = min(rates, key=rates.__getitem__) if rates else None
            if len(rates) == len(_CPU_BATCH_SIZES):
                remembered.batch_size = size
        self.chosen = _Plan(precision, size or 8)
        return outputs

    def _measure_precision(
        self, probe: torch.Tensor, make_batch: Callable[[int, int], torch.Tensor], total: int
    ) -> tuple[str, list[torch.Tensor]]:
        """fp32, or the device's low precision if it is clearly faster and agrees with fp32, and the
        outputs of the real work done while measuring (items ``0:k``, in order).

        Each precision is timed on the first chunk and, where there are enough items, once more on a
        further real chunk; the faster of its two timings counts, so one disturbed timing cannot flip
        the choice. ``probe`` holds items ``0:n``."""
        n = probe.shape[0]
        self._forward(probe[:1], "fp32")  # warm-up: first-call allocations, kernel selection
        reference, t32 = self._timed(probe, "fp32")
        candidate = _low_precision_candidate(self.device)
        if candidate is None:
            return "fp32", [reference]
        try:
            self._forward(probe[:1], candidate)
            low, tlow = self._timed(probe, candidate)
        except RuntimeError:  # no such kernel on this device
            return "fp32", [reference]
        if _correlation(low, reference) < _AGREEMENT:
            return "fp32", [reference]
        outputs, done = [reference], n
        second: dict[str, tuple[int, int]] = {}
        for precision in ("fp32", candidate):
            if done + n > total:
                break
            out, seconds = self._timed(make_batch(done, done + n), precision)
            second[precision] = (done, done + n)
            outputs.append(out)
            done += n
            if precision == "fp32":
                t32 = min(t32, seconds)
            else:
                tlow = min(tlow, seconds)
        chosen = candidate if tlow * _CLEARLY_FASTER < t32 else "fp32"
        if chosen == "fp32" and candidate in second:  # keep the run all fp32: redo the low-precision chunk
            start, stop = second[candidate]
            outputs[-1] = self._forward(make_batch(start, stop), "fp32")
        return chosen, outputs
