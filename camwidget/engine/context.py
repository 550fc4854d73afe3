"""What a CAM method may read and run: the narrow interface between the engine and the methods.

The :class:`~camwidget.engine.explainer.Explainer` runs the model once (with a capture hook on the target
layer, and a backward pass to it for gradient methods), then hands each method a :class:`MethodContext`:
the captured tensors, the targets, the options, and two ways to run the model again -- a long stream of
hook-free forwards on a verified copy (:meth:`MethodContext.forwards`, Score-CAM and Ablation-CAM) and a
differentiable forward of the live model (:meth:`MethodContext.forward_with_grad`, Opti-CAM). Methods
import this module, never the Explainer, so the engine can import the methods without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camwidget.engine.batching import ForwardRunner, LayerHook
from camwidget.engine.precision import autocast, native_low_precision
from camwidget.engine.validation import check_logits

__all__ = ["MethodContext"]


@dataclass
class MethodContext:
    """One explanation request, as a method sees it.

    Attributes:
        inputs: (N, C, H, W) model inputs on the model's device.
        activations: (N, C', h, w) float32 target-layer activations (detached, after any reshape).
        gradients: (N, C', h, w) float32 d score / d activations, for methods that need gradients, else None.
        logits: (N, K) float32 logits of the unperturbed inputs (live model, fp32).
        targets: (N,) int64 class index explained per image.
        layer_name: dotted name of the target layer.
        options: this call's method options, defaults filled in.
        mean, std: the inputs' normalisation per channel (to make a truly black pixel).
        reshaped: whether the layer's output went through a ``reshape_transform`` (token layers).
        progress: ``progress(done, total)``, or None; raise ``Cancelled`` in it to stop.
        precision: the precision the caller asked for ("auto", "fp32", "bf16", "fp16").
        batch_size: "auto" or the caller's fixed chunk size.
        precision_used: set by the engine: the precision of the forwards this method ran.
    """

    inputs: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor | None
    logits: torch.Tensor
    targets: torch.Tensor
    layer_name: str
    options: Mapping[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    reshaped: bool
    progress: Callable[[int, int], None] | None
    precision: str
    batch_size: int | str
    _model: nn.Module = field(repr=False)
    precision_used: str = "fp32"

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    @property
    def model(self) -> nn.Module:
        """The live model, to *read* (CAM reads its linear head's weights). Run it only through
        :meth:`forwards` and :meth:`forward_with_grad`."""
        return self._model

    def forwards(
        self,
        make_batch: Callable[[int, int], torch.Tensor],
        total: int,
        *,
        layer_hook: LayerHook | None = None,
    ) -> torch.Tensor:
        """(total, K) float32 logits of ``make_batch(start, stop)`` over ``range(total)``: batched,
        hook-free, under ``inference_mode``, memory-bounded, at the call's precision, on a private copy
        that is checked against the live model on this call's inputs (see
        :class:`~camwidget.engine.batching.ForwardRunner`). ``layer_hook`` puts one forward hook on a
        layer of whatever module runs the stream."""
        runner = ForwardRunner(
            self._model,
            precision=self.precision,
            batch_size=self.batch_size,
            progress=self.progress,
            reference=(self.inputs, self.logits),
            layer_hook=layer_hook,
        )
        out = runner.logits(make_batch, total)
        self.record_precision(runner.precision_used or "fp32")
        return out

    def record_precision(self, precision: str) -> None:
        """Note that part of this result was computed at ``precision`` (a method reusing cached results
        computed at another precision says so here)."""
        if precision != "fp32":
            self.precision_used = precision

    def zero_input_logits(self) -> torch.Tensor:
        """(K,) fp32 logits of an all-zero input shaped like one of :attr:`inputs` (live model)."""
        with torch.inference_mode():
            return check_logits(self._model(torch.zeros_like(self.inputs[:1]))).float()[0]

    def gradient_precision(self) -> str:
        """The precision for a method's own forward/backward passes (Opti-CAM): as the caller forced,
        else the device's native low precision on CUDA and fp32 elsewhere (backward passes in emulated
        or CPU bf16 gain nothing)."""
        if self.precision != "auto":
            return self.precision
        if self.device.type == "cuda":
            return native_low_precision(self.device) or "fp32"
        return "fp32"

    def forward_with_grad(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """(B, K) float32 logits of the live model on ``x``, differentiable with respect to ``x``."""
        with torch.enable_grad(), autocast(self.device, precision):
            out = check_logits(self._model(x.to(self.inputs.dtype))).float()
        self.record_precision(precision)
        return out
