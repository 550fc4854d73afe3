"""The Explainer: one object per (model, layer) that runs any method and keeps caches between calls.

Data flow of a call::

    inputs (N, 3, H, W) -> model's device -> forward with a LayerCapture hook (+ backward to the layer
    for gradient methods) -> method.raw(job) (N, h, w) -> upsample, ReLU, min-max -> (N, H, W) in [0, 1]
    on the inputs' device

Every call, including one that raises or is interrupted, leaves the model as it came: hooks removed,
train/eval flags and ``requires_grad`` restored, parameter ``.grad`` untouched, BatchNorm statistics
untouched (the explanation runs in eval mode). Hooks exist only during a call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from camwidget.engine.batching import Cancelled, ForwardRunner, model_device
from camwidget.engine.cache import ImageCache
from camwidget.engine.hooks import LayerCapture, preserved_state
from camwidget.engine.layers import default_layer, resolve_layer
from camwidget.engine.normalize import finalize
from camwidget.engine.validation import (
    Target,
    check_inputs,
    check_logits,
    check_model,
    check_runner_options,
    check_target_values,
    resolve_targets,
)
from camwidget.methods.base import Job
from camwidget.methods.registry import get_method, method_options

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Cancelled", "Explainer", "explain"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Explainer:
    """Explain a classifier's decisions at one layer, with any method in :data:`camwidget.METHODS`.

    Args:
        model: an ``nn.Module`` returning (N, K) logits; it is used on its own device (CPU, CUDA, ...).
        layer: a submodule or its dotted name; ``None`` picks the last spatial layer before global pooling
            (decided on the first call, from the input size).
        method: default method for calls that do not name one. Default "scorecam".
        reshape_transform: for token models (ViT/Swin), maps the layer output to (N, C, h, w).
        precision: "auto" (default: bf16/fp16 autocast for the batched masked forwards where measured faster
            and agreeing with fp32), "fp32", "bf16" or "fp16". Weighting and normalisation are always fp32.
        batch_size: "auto" (default) or the number of masked inputs per forward.
        progress: ``progress(done, total)`` during long work; raise :class:`Cancelled` in it to abort.
        mean, std: the model's input normalisation, used where pixels must be truly black (Opti-CAM).
            Default ImageNet's.
        cache_size: images whose Score-CAM score matrices are kept. Default 16.
        **options: method options (``variant``, ``channels`` for Score-CAM; ``iterations``, ``lr`` for
            Opti-CAM); defaults for every call, overridable per call.

    Use as a context manager or call :meth:`release` to drop the caches.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        method: str = "scorecam",
        *,
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        precision: str = "auto",
        batch_size: int | str = "auto",
        progress: Callable[[int, int], None] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        cache_size: int = 16,
        **options: Any,
    ) -> None:
        check_model(model)
        check_runner_options(precision, batch_size)
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError("mean and std must have one entry per input channel, std > 0")
        get_method(method)  # validates the name
        self._check_options(options)
        self.model = model
        self.method = method
        self.reshape_transform = reshape_transform
        self.precision = precision
        self.batch_size = batch_size
        self.progress = progress
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.options = options
        self.score_cache = ImageCache(model, cache_size)
        self._zero_logits: dict[tuple[int, ...], torch.Tensor] = {}
        self.layer_name: str | None = None
        self.layer: nn.Module | None = None
        if layer is not None:
            self.layer_name, self.layer = resolve_layer(model, layer)

    # -- public --------------------------------------------------------------------------------------
    def __call__(
        self,
        inputs: torch.Tensor,
        target: Target = None,
        *,
        method: str | None = None,
        raw: bool = False,
        return_logits: bool = False,
        **options: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Explain ``inputs``.

        Args:
            inputs: (N, 3, H, W) float tensor, preprocessed as the model expects, on any device.
            target: None (each image's predicted class), an int for all images, or N ints.
            method: overrides the explainer's default method for this call.
            raw: return the signed, unnormalised map at feature resolution (N, h, w) instead.
            return_logits: also return the (N, K) float32 logits of the forward pass that made the maps
                (on the inputs' device), saving the caller a second forward.
            **options: method options for this call only.

        Returns:
            (N, H, W) float32 maps in [0, 1] on the inputs' device (all zeros where the map has no
            positive evidence), or (N, h, w) raw maps when ``raw=True``; with ``return_logits``, the
            tuple ``(maps, logits)``.
        """
        cam = get_method(method or self.method)
        self._check_options(options)
        opts = {**cam.defaults}
        opts.update({k: v for k, v in self.options.items() if k in cam.defaults})
        opts.update({k: v for k, v in options.items() if k in cam.defaults})
        x, out_device = self._prepare(inputs)
        with preserved_state(self.model), torch.inference_mode(False):
            if x.is_inference():
                x = x.clone()
            self._ensure_layer(x)
            assert self.layer is not None
            with LayerCapture(
                self.layer, with_gradients=cam.needs_gradients, reshape_transform=self.reshape_transform
            ) as capture:
                with torch.no_grad():  # the capture hook turns grad mode on from the layer onwards
                    logits = self._logits(self.model(x))
                targets = self._targets(target, logits)
                gradients = None
                if cam.needs_gradients:
                    gradients = capture.gradients(logits.gather(1, targets.view(-1, 1)))
                activations = capture.activations
            if activations.shape[-1] * activations.shape[-2] <= 1:
                raise ValueError(
                    f"layer {self.layer_name!r} has no spatial output (N, C, h, w) with h·w > 1: "
                    f"its output is {tuple(activations.shape)}; choose a layer before global pooling "
                    "(camwidget.candidate_layers(model) lists them)"
                )
            job = Job(x, activations, gradients, logits.detach().float(), targets, self, opts)
            maps = cam.raw(job).detach().float()
        if not raw:
            maps = finalize(maps, (x.shape[-2], x.shape[-1]))
        if return_logits:
            return maps.to(out_device), job.logits.to(out_device)
        return maps.to(out_device)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, K) float32 logits of ``inputs`` (one plain forward in eval mode, on the model's device)."""
        x, _ = self._prepare(inputs)
        with preserved_state(self.model), torch.inference_mode():
            return self._logits(self.model(x)).float()

    def release(self) -> None:
        """Drop the caches (the model holds no hooks between calls)."""
        self.score_cache.clear()
        self._zero_logits.clear()

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"Explainer({type(self.model).__name__}, layer={self.layer_name!r}, method={self.method!r}, "
            f"device={model_device(self.model)}, precision={self.precision!r})"
        )

    # -- used by methods -----------------------------------------------------------------------------
    def runner(self, keep: tuple[str, ...] = ()) -> ForwardRunner:
        """A :class:`ForwardRunner` with this explainer's precision, batch size and progress callback;
        ``keep``: module names to hook on its ``forward_model`` (kept whole there)."""
        return ForwardRunner(
            self.model,
            precision=self.precision,
            batch_size=self.batch_size,
            progress=self.progress,
            keep=keep,
        )

    def zero_input_logits(self, like: torch.Tensor) -> torch.Tensor:
        """(K,) logits of an all-zero input shaped like ``like`` (1, 3, H, W); cached per shape."""
        key = tuple(like.shape)
        if key not in self._zero_logits:
            with torch.inference_mode():
                self._zero_logits[key] = self._logits(self.model(torch.zeros_like(like))).float()[0]
        return self._zero_logits[key]

    def optimisation_precision(self) -> str:
        """Opti-CAM's forward/backward precision: as forced, else bf16/fp16 on CUDA, fp32 elsewhere."""
        if self.precision != "auto":
            return self.precision
        device = model_device(self.model)
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"

    # -- internals -----------------------------------------------------------------------------------
    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        unknown = set(options) - method_options()
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(sorted(unknown))}; method options are "
                f"{', '.join(sorted(method_options()))}"
            )

    def _prepare(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.device]:
        check_inputs(inputs, self.model)
        return inputs.to(model_device(self.model)), inputs.device

    def _ensure_layer(self, x: torch.Tensor) -> None:
        if self.layer is None:
            self.layer_name, self.layer = resolve_layer(
                self.model, default_layer(self.model, x[:1], reshape_transform=self.reshape_transform)
            )

    @staticmethod
    def _logits(out: object) -> torch.Tensor:
        return check_logits(out)

    @staticmethod
    def _targets(target: Target, logits: torch.Tensor) -> torch.Tensor:
        return resolve_targets(check_target_values(target, logits.shape[0]), logits)


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str = "scorecam",
    layer: str | nn.Module | None = None,
    target: Target = None,
    raw: bool = False,
    **options: Any,
) -> torch.Tensor:
    """Class activation maps of ``inputs`` for ``model``: the one-call form of :class:`Explainer`.

    Args:
        model: classifier returning (N, K) logits, on any device; left exactly as it came.
        inputs: (N, 3, H, W) float tensor, preprocessed as the model expects.
        method: one of :data:`camwidget.METHODS`. Default "scorecam".
        layer: submodule or dotted name; None = last spatial layer before global pooling.
        target: None (predicted class per image), an int, or N ints.
        raw: return signed, unnormalised (N, h, w) maps at feature resolution.
        **options: ``precision``, ``batch_size``, ``progress``, ``mean``, ``std``, ``reshape_transform``
            and method options (see :class:`Explainer`).

    Returns:
        (N, H, W) float32 maps in [0, 1] on the inputs' device.
    """
    with Explainer(model, layer, method, **options) as explainer:
        return explainer(inputs, target, raw=raw)
