"""What a CAM method may read and run: the narrow interface between the engine and the methods.

The :class:`~camwidget.engine.explainer.Explainer` runs the model once (with a capture hook on the target
layer, and a backward pass to it for gradient methods), then hands each method a :class:`MethodContext`:
the captured tensors, the target and its scores, the options, and two ways to run the model again -- long
streams of hook-free forwards on a verified copy (:meth:`MethodContext.forwards` for a classifier's logits,
:meth:`MethodContext.target_forwards` for any target's scores; Score-CAM, Ablation-CAM) and a differentiable
forward of the live model (:meth:`MethodContext.scores_with_grad`, Opti-CAM). Methods
import this module, never the Explainer, so the engine can import the methods without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camwidget.engine.batching import ForwardRunner, LayerHook
from camwidget.engine.hooks import LayerCapture
from camwidget.engine.precision import autocast, native_low_precision
from camwidget.targets import Target, as_logits, check_scores

__all__ = ["MethodContext"]


@dataclass
class MethodContext:
    """One explanation request, as a method sees it.

    Shapes: N images, C input channels, S the input's spatial shape ((H, W) for images, (T, H, W) for
    video or volumes), C' the layer's channels and s its spatial shape.

    Attributes:
        inputs: (N, C, *S) model inputs on the model's device.
        activations: (N, C', *s) float32 target-layer activations (detached, after any reshape).
        gradients: (N, C', *s) float32 d score / d activations, for methods that need gradients, else None.
        scores: (N,) float32 target scores of the unperturbed inputs (live model, fp32).
        target: the :class:`~camwidget.targets.Target`, bound to this call's unperturbed output.
        classes: (N,) int64 class explained per image when the target is a class (an int, None, ``Logit``,
            ``Probability``, ``Sigmoid``), else None.
        logits: (N, K) float32 logits of the unperturbed inputs when the model's output reads as logits,
            else None.
        layer_name: dotted name of the target layer (with ``:entry`` for a layer returning a dict/tuple).
        options: this call's method options, defaults filled in.
        mean, std: the inputs' normalisation per channel (to make a truly black pixel).
        reshaped: whether the layer's output went through a ``reshape_transform`` (token layers).
        progress: ``progress(done, total)``, or None; raise ``Cancelled`` in it to stop.
        precision: the precision the caller asked for ("auto", "fp32", "bf16", "fp16").
        batch_size: "auto" or the caller's fixed chunk size.
        precision_used: set by the engine: the precision of the forwards this method ran.
        channel_weights: set by a method whose raw map is Σ_k w_k A_k (CAM, Grad-CAM, Grad-CAM++,
            XGrad-CAM, Score-CAM, Ablation-CAM): the (N, C') float32 weights w; None for the others
            (element-wise HiResCAM/Layer-CAM, Eigen-CAM, and Opti-CAM, whose weights multiply ReLU(A)).
        hessian_products: (N, C', *s) float32 H·A, the Hessian of the score with respect to the activations
            applied to them, for methods with ``needs_hessian`` (ShapleyCAM), else None.
        scores_graph: (N,) the target scores still attached to the forward's autograd graph, for methods with
            ``needs_input_gradient`` (the whole forward ran in grad mode from a leaf ``inputs``), else None.
        seed: the seed of a stochastic method's draws for this call (the caller's ``seed=``, or one drawn
            fresh and reported as :attr:`Explainer.seed_used`), else None.
    """

    inputs: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor | None
    scores: torch.Tensor
    target: Target
    classes: torch.Tensor | None
    logits: torch.Tensor | None
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
    channel_weights: torch.Tensor | None = None
    hessian_products: torch.Tensor | None = None
    scores_graph: torch.Tensor | None = None
    seed: int | None = None
    _layer: nn.Module | None = field(default=None, repr=False)
    _entry: str | None = field(default=None, repr=False)
    _reshape: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    @property
    def model(self) -> nn.Module:
        """The live model, to *read* (CAM reads its linear head's weights). Run it only through
        :meth:`forwards`, :meth:`target_forwards` and :meth:`scores_with_grad`."""
        return self._model

    def require_classes(self, method: str) -> torch.Tensor:
        """The (N,) classes, or a ValueError saying that ``method`` needs a class target."""
        if self.classes is None or self.logits is None:
            raise ValueError(
                f"{method} explains a class of a classifier's logits; the target here is "
                f"{self.target.name!r}. Use a class index (or Logit/Probability/Sigmoid) with a model that "
                "returns logits, or a method that takes any target (gradient methods, scorecam, ablationcam, "
                "opticam)"
            )
        return self.classes

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
        layer of whatever module runs the stream. Needs a classifier (see :meth:`require_classes`)."""
        assert self.logits is not None, "forwards() needs logits: check require_classes() first"
        return self._run(
            make_batch, total, (self.inputs, self.logits), lambda out, a, b: as_logits(out), layer_hook
        )

    def target_forwards(
        self,
        make_batch: Callable[[int, int], torch.Tensor],
        total: int,
        image: int,
        *,
        layer_hook: LayerHook | None = None,
    ) -> torch.Tensor:
        """(total,) float32 target scores of ``make_batch(start, stop)``, inputs derived from image
        ``image``: the same stream as :meth:`forwards`, scored by :attr:`target` for that image."""
        target = self.target

        def score(out: object, start: int, stop: int) -> torch.Tensor:
            rows = torch.full((stop - start,), image, dtype=torch.long, device=self.device)
            return check_scores(target.rows(rows)(out), stop - start)

        reference = (self.inputs[image : image + 1], self.scores[image : image + 1])
        return self._run(make_batch, total, reference, score, layer_hook)

    def _run(
        self,
        make_batch: Callable[[int, int], torch.Tensor],
        total: int,
        reference: tuple[torch.Tensor, torch.Tensor],
        reduce: Callable[[object, int, int], torch.Tensor],
        layer_hook: LayerHook | None,
    ) -> torch.Tensor:
        runner = ForwardRunner(
            self._model,
            precision=self.precision,
            batch_size=self.batch_size,
            progress=self.progress,
            reference=reference,
            layer_hook=layer_hook,
            reduce=reduce,
        )
        out = runner.logits(make_batch, total)
        self.record_precision(runner.precision_used or "fp32")
        return out

    def layer_gradients(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Activations and gradients at this call's layer for other inputs (Smooth Grad-CAM++'s noisy copies).

        Args:
            x: (B, C, *S) inputs shaped like :attr:`inputs`, on the model's device.
            rows: (B,) int64, the image each row derives from (row b is scored by the target for that image).

        Returns:
            ``(activations, gradients)``, each (B, C', *s) float32, detached: one forward of the live model
            (fp32, eval mode, a capture hook on the layer) and one backward pass that stops at the layer.
        """
        assert self._layer is not None, "layer_gradients() needs the engine's layer"
        b = x.shape[0]
        target = self.target.rows(rows.to(self.device))
        with (
            LayerCapture(
                self._layer, entry=self._entry, with_gradients=True, reshape_transform=self._reshape
            ) as capture,
            torch.no_grad(),
        ):
            out = self._model(x.to(self.inputs.dtype))
            with torch.enable_grad():
                scores = check_scores(target(out), b)
            if not scores.requires_grad:
                raise ValueError(f"the target {self.target.name!r} is not differentiable")
            gradients = capture.gradients(scores)
            activations = capture.activations
        return activations, gradients

    def random_generator(self) -> torch.Generator:
        """A CPU generator seeded with :attr:`seed` (draws made on the CPU are the same on every device)."""
        if self.seed is None:
            raise RuntimeError("this method has no seed option")
        return torch.Generator().manual_seed(self.seed)

    def record_precision(self, precision: str) -> None:
        """Note that part of this result was computed at ``precision`` (a method reusing cached results
        computed at another precision says so here)."""
        if precision != "fp32":
            self.precision_used = precision

    def zero_input_logits(self) -> torch.Tensor:
        """(K,) fp32 logits of an all-zero input shaped like one of :attr:`inputs` (live model)."""
        with torch.inference_mode():
            return as_logits(self._model(torch.zeros_like(self.inputs[:1]))).float()[0]

    def zero_input_scores(self) -> torch.Tensor:
        """(N,) fp32 target scores of an all-zero input, for each image's target (live model)."""
        n = self.inputs.shape[0]
        with torch.inference_mode():
            out = self._model(torch.zeros_like(self.inputs))
            return check_scores(self.target(out), n).float()

    def gradient_precision(self) -> str:
        """The precision for a method's own forward/backward passes (Opti-CAM): as the caller forced,
        else the device's native low precision on CUDA and fp32 elsewhere (backward passes in emulated
        or CPU bf16 gain nothing)."""
        if self.precision != "auto":
            return self.precision
        if self.device.type == "cuda":
            return native_low_precision(self.device) or "fp32"
        return "fp32"

    def scores_with_grad(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """(N,) float32 target scores of the live model on ``x`` (one input per image, in image order),
        differentiable with respect to ``x``."""
        with torch.enable_grad(), autocast(self.device, precision):
            out = self._model(x.to(self.inputs.dtype))
            scores = check_scores(self.target(out), x.shape[0]).float()
        self.record_precision(precision)
        return scores
