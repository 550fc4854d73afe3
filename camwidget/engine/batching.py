"""Many forward passes, fast and provably the live model's: batched, hook-free, memory-bounded.

Score-CAM, Ablation-CAM and the perturbation metrics need logits for a long stream of synthetic inputs
(512 masked images per ResNet-18 image, 900 perturbed ones per insertion/deletion curve pair). A
:class:`ForwardRunner` builds them chunk by chunk through a ``make_batch(start, stop)`` callback (never all
at once) and runs them under ``inference_mode``:

- **where**: on a private channels_last copy with BatchNorm folded (:mod:`.twin`) when the stream is long
  enough to pay for it, the model has 2-D convolutions and carries no hooks; the copy must reproduce the
  live model's fp32 logits on the call's unperturbed inputs and on its first perturbed input, on every call,
  or the call runs on the live model (:attr:`ForwardRunner.executor` says which ran);
- **precision** by rule (:mod:`.precision`): the device's native low precision if it has one and its
  logits agree with fp32 on this call's inputs, else fp32 (:attr:`ForwardRunner.precision_used`);
- **chunk size** from bytes (:mod:`.memory`): as many items as fit the memory budget, at most 16 on CPU
  (more buys no speed on 2-core machines) and 64 on CUDA; an out-of-memory error (CPU or CUDA) halves the
  chunk and retries, and the halved size is remembered for the model and input shape.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import torch
from torch import nn

from camwidget.engine.memory import is_out_of_memory, item_bytes, memory_budget
from camwidget.engine.precision import PRECISIONS, agrees, autocast, native_low_precision
from camwidget.engine.twin import build_twin, has_hooks, same_logits, twins
from camwidget.engine.validation import check_runner_options
from camwidget.targets import as_logits

__all__ = ["PRECISIONS", "Cancelled", "ForwardRunner", "LayerHook", "model_device"]

LayerHook = tuple[str, Callable[[nn.Module, tuple[object, ...], torch.Tensor], torch.Tensor | None]]
"""``(dotted layer name, forward hook)``: a hook the stream needs on one layer (Ablation-CAM's)."""

_TWIN_MIN_ITEMS = 32  # shorter streams run on the live model: a copy would not pay for itself
_REFERENCE_ROWS = 2  # unperturbed inputs the copy is checked on (besides the first perturbed one)
_PRECISION_PROBE = 8  # items on which a native low precision must agree with fp32
_MAX_CHUNK = {"cpu": 16, "cuda": 64}
_DEFAULT_MAX_CHUNK = 16

# model -> {(device, input shape, dtype): chunk size that fit after an out-of-memory error}
_LEARNED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], int]] = weakref.WeakKeyDictionary()
_LEARNED_GUARD = threading.Lock()


class Cancelled(Exception):
    """Raise from a ``progress`` callback to abort long work; the model is restored as usual."""


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameterless model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


class ForwardRunner:
    """Outputs of the model for a stream of inputs built on demand (see the module doc).

    Args:
        model: the model, already in the mode it should run in: the caller holds
            :func:`~camwidget.engine.hooks.preserved_state` (its lock and eval mode).
        precision: "auto" (by rule, see :mod:`.precision`), "fp32", "bf16" or "fp16".
        batch_size: "auto" (from the memory budget) or a fixed number of inputs per forward.
        progress: called as ``progress(done, total)`` after each chunk; raise :class:`Cancelled` to stop.
        reference: ``(inputs, logits)``: the call's unperturbed inputs (N, C, H, W) and the live model's
            fp32 (N, K) logits on them, which the caller has computed anyway. The private copy must
            reproduce them. Without it, only the first perturbed input is checked.
        layer_hook: a forward hook to put on one layer of whatever module runs the stream (the copy keeps
            that layer unfolded), see :data:`LayerHook`.
        memory_budget: "auto" (see :func:`~camwidget.engine.memory.memory_budget`) or bytes per chunk.
        reduce: ``reduce(output, start, stop)`` turns the model's output for items ``start:stop`` into a
            (B, ...) float tensor: (B, K) logits, or (B,) target scores. Default: the output's logits
            (:func:`camwidget.targets.as_logits`).

    Attributes (set by :meth:`logits`):
        executor: "copy" (folded private copy), "copy-unfolded", or "live" (the caller's model).
        precision_used: "fp32", "bf16" or "fp16".
        batch_size_used: the chunk size the stream ran at (after any out-of-memory halving).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        precision: str = "auto",
        batch_size: int | str = "auto",
        progress: Callable[[int, int], None] | None = None,
        reference: tuple[torch.Tensor, torch.Tensor] | None = None,
        layer_hook: LayerHook | None = None,
        memory_budget: int | str = "auto",
        reduce: Callable[[object, int, int], torch.Tensor] | None = None,
    ) -> None:
        check_runner_options(precision, batch_size)
        if memory_budget != "auto" and (
            isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1
        ):
            raise ValueError(
                f"memory_budget must be 'auto' or a positive number of bytes; got {memory_budget!r}"
            )
        self.model = model
        self.device = model_device(model)
        self.precision = precision
        self.batch_size = batch_size
        self.progress = progress
        self.reference = reference
        self.layer_hook = layer_hook
        self.memory_budget = memory_budget
        self.reduce = reduce or (lambda out, start, stop: as_logits(out))
        self.executor: str | None = None
        self.precision_used: str | None = None
        self.batch_size_used: int | None = None
        self._module: nn.Module = model
        self._item_bytes: dict[int, int] = {}  # id(module) -> measured bytes per item

    # -- public ------------------------------------------------------------------------------------------
    @property
    def channels_last(self) -> bool:
        """Whether the stream runs on a channels_last copy (inputs built channels_last save a conversion)."""
        return self._module is not self.model

    def logits(self, make_batch: Callable[[int, int], torch.Tensor], total: int) -> torch.Tensor:
        """Run the model over ``make_batch(start, stop)`` for ``range(total)`` in chunks.

        Args:
            make_batch: returns the (stop - start, C, H, W) inputs for items ``start:stop`` (or a single
                input that a ``layer_hook`` expands to that many rows).
            total: number of items.

        Returns:
            (total, K) float32 outputs on the model's device, in item order.
        """
        if total <= 0:
            return torch.empty(0, 0, device=self.device)
        with torch.inference_mode():
            first = make_batch(0, 1)
            chunks = [self._settle(first, make_batch, total)]
            done = chunks[0].shape[0]
            self._report(done, total)
            size = self._chunk_size(first)
            while done < total:
                stop = min(total, done + size)
                try:
                    batch = make_batch(done, stop)
                    out = self._forward(self._module, batch, self.precision_used or "fp32", rows=(done, stop))
                except Exception as exc:
                    if not is_out_of_memory(exc) or size == 1:
                        raise
                    size = self._learn_smaller(first, size)
                    continue
                if out.shape[0] != stop - done:
                    raise RuntimeError(
                        f"the model returned {out.shape[0]} rows for a batch of {stop - done} inputs"
                    )
                chunks.append(out)
                done = stop
                self._report(done, total)
        self.batch_size_used = size
        return torch.cat(chunks)

    # -- the copy and its proof ------------------------------------------------------------------------
    def _settle(
        self, first: torch.Tensor, make_batch: Callable[[int, int], torch.Tensor], total: int
    ) -> torch.Tensor:
        """Choose, once per runner, what runs the stream and in which precision; return the outputs of
        the first items (item 0, or the first few where the precision was being decided)."""
        if self.executor is not None:
            return self._forward(self._module, first, self.precision_used or "fp32")
        live0 = self._forward(self.model, first, "fp32", measure=True)
        self.executor = "live"
        copy = self._verified_copy(first, live0, total)
        if copy is not None:
            self._module, self.executor, live0 = copy
        low = native_low_precision(self.device) if self.precision == "auto" else None
        if low is None:
            self.precision_used = "fp32" if self.precision == "auto" else self.precision
            if self.precision_used == "fp32":
                return live0
            return self._forward(self._module, first, self.precision_used)
        # Native low precision: take it only if it agrees with fp32 on the first few items of this call.
        probe_rows = (0, min(total, _PRECISION_PROBE))
        probe = make_batch(*probe_rows)
        exact = self._forward(self._module, probe, "fp32", rows=probe_rows)
        try:
            fast = self._forward(self._module, probe, low, rows=probe_rows)
        except RuntimeError:  # no such kernel for this model on this device
            fast = None
        self.precision_used = low if fast is not None and agrees(fast, exact) else "fp32"
        return fast if self.precision_used == low and fast is not None else exact

    def _verified_copy(
        self, first: torch.Tensor, live0: torch.Tensor, total: int
    ) -> tuple[nn.Module, str, torch.Tensor] | None:
        """A private copy that reproduces the live model on this call's inputs, its output on ``first``;
        or None (the live model runs): see :mod:`.twin` for the order in which copies are tried."""
        if (
            total < _TWIN_MIN_ITEMS
            or first.ndim != 4
            or not any(isinstance(m, nn.Conv2d) for m in self.model.modules())
            or has_hooks(self.model)
        ):
            return None
        store = twins(self.model)
        if store.is_refused(self.model):
            return None
        hooked = self.layer_hook[0] if self.layer_hook else None
        cached = store.lookup(self.model, hooked)
        if cached is not None:
            key, entry = cached
            out = self._checked(entry.twin, first, live0)
            if out is not None:
                return entry.twin, "copy" if entry.folded else "copy-unfolded", out
            store.drop(key)  # stale: the model changed in a way its version counters did not show
        key = frozenset({hooked}) if hooked else frozenset()
        folded_failed = False
        for fold in (False,) if store.fold_fails else (True, False):
            try:
                twin, folded = build_twin(self.model, first, fold=fold, exclude=key)
            except Exception:  # e.g. a module that cannot be deep-copied: the live model runs
                break
            out = self._checked(twin, first, live0)
            if out is not None:
                store.fold_fails = store.fold_fails or folded_failed
                store.put(self.model, key, twin, folded)
                return twin, "copy" if folded else "copy-unfolded", out
            folded_failed = fold
        store.refuse(self.model)
        return None

    def _checked(self, twin: nn.Module, first: torch.Tensor, live0: torch.Tensor) -> torch.Tensor | None:
        """``twin``'s fp32 output on ``first`` if it matches the live model's there and on the reference
        inputs, else None."""
        if self.reference is not None:
            x, live = self.reference
            rows = slice(0, _REFERENCE_ROWS)
            ref = x[rows]
            out = self._forward(twin, ref, "fp32", hook=False, rows=(0, ref.shape[0]))
            if not same_logits(out, live[rows].float()):
                return None
        out0 = self._forward(twin, first, "fp32", measure=True)
        return out0 if same_logits(out0, live0) else None

    # -- running -------------------------------------------------------------------------------------------
    def _forward(
        self,
        module: nn.Module,
        x: torch.Tensor,
        precision: str,
        *,
        hook: bool = True,
        measure: bool = False,
        rows: tuple[int, int] = (0, 1),
    ) -> torch.Tensor:
        """``reduce(module(x), *rows)`` as float32 (``rows``: the items ``x`` holds), with the layer hook
        (unless ``hook`` is False) registered on ``module``'s layer for this pass; ``measure`` records the
        bytes an item takes on that module."""
        if module is not self.model and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        handle = None
        if hook and self.layer_hook is not None:
            name, fn = self.layer_hook
            handle = module.get_submodule(name).register_forward_hook(fn)
        try:
            with autocast(self.device, precision):
                if measure and self.batch_size == "auto":
                    outputs: list[object] = []
                    self._item_bytes[id(module)] = item_bytes(lambda t: outputs.append(module(t)), module, x)
                    out = outputs[0]
                else:
                    out = module(x)
        finally:
            if handle is not None:
                handle.remove()
        return self.reduce(out, *rows).float()

    def _chunk_size(self, first: torch.Tensor) -> int:
        if self.batch_size != "auto":
            size = int(self.batch_size)
        else:
            budget = memory_budget(self.device) if self.memory_budget == "auto" else int(self.memory_budget)
            cap = _MAX_CHUNK.get(self.device.type, _DEFAULT_MAX_CHUNK)
            size = max(1, min(cap, budget // max(1, self._item_bytes.get(id(self._module), 1))))
            with _LEARNED_GUARD:
                learned = _LEARNED.get(self.model, {}).get(self._shape_key(first))
            if learned is not None:
                size = min(size, learned)
        self.batch_size_used = size
        return size

    def _shape_key(self, first: torch.Tensor) -> tuple[object, ...]:
        return (self.device.type, self.device.index, first.dtype, tuple(first.shape[1:]), self.executor)

    def _learn_smaller(self, first: torch.Tensor, size: int) -> int:
        """After an out-of-memory error at ``size``: half of it, remembered for this model and shape."""
        size = max(1, size // 2)
        with _LEARNED_GUARD:
            _LEARNED.setdefault(self.model, {})[self._shape_key(first)] = size
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return size

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)
