"""The Explainer: one object per (model, layer) that runs any method and keeps caches between calls.

Data flow of a call::

    inputs (N, C, *S) -> model's device -> forward with a LayerCapture hook -> the target's score per
    image (+ backward to the layer for gradient methods) -> method.raw(context) (N, *s) -> upsample,
    ReLU, min-max -> (N, *S) in [0, 1] on the inputs' device

S is (H, W) for images and (T, H, W) for video or volumes (5-D inputs).

Every call, including one that raises or is interrupted, leaves the model as it came: hooks removed,
train/eval flags and ``requires_grad`` restored, parameter ``.grad`` untouched, BatchNorm statistics
untouched (the explanation runs in eval mode). Hooks exist only during a call, and calls on one model run
one at a time (:mod:`camwidget.engine.model_lock`). Methods see the call through a
:class:`~camwidget.engine.context.MethodContext`; each method instance belongs to its Explainer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.batching import Cancelled, model_device
from camwidget.engine.context import MethodContext
from camwidget.engine.diagnostics import MapWarning, diagnose
from camwidget.engine.hooks import LayerCapture, LayerOutputError, preserved_state
from camwidget.engine.layers import default_layer, resolve_layer, split_entry
from camwidget.engine.normalize import finalize, minmax, upsample
from camwidget.engine.steps import CamSteps
from camwidget.engine.validation import (
    check_inputs,
    check_model,
    check_runner_options,
    running_model,
)
from camwidget.methods.base import CamMethod
from camwidget.methods.registry import get_method, method_options
from camwidget.targets import ClassIndex, as_logits, as_target, check_scores

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CamSteps", "Cancelled", "Explainer", "explain", "explain_steps"]


class Explainer:
    """Explain a classifier's decisions at one layer, with any method in :data:`camwidget.METHODS`.

    Args:
        model: an ``nn.Module`` returning (N, K) logits; it is used on its own device (CPU, CUDA, ...).
        layer: a submodule or its dotted name; ``None`` picks the last spatial layer before global pooling
            (decided on the first call, from the input size).
        method: default method for calls that do not name one. Default "scorecam".
        reshape_transform: for token models (ViT/Swin), maps the layer output to (N, C, h, w).
        precision: "auto" (default: the device's native bf16/fp16 for the batched masked forwards where it
            has one and it agrees with fp32 on the call's inputs, else fp32; see
            :mod:`camwidget.engine.precision`), "fp32", "bf16" or "fp16". Weighting and normalisation are
            always fp32. :attr:`precision_used` says what the last call used.
        batch_size: "auto" (default: from a memory budget, see :mod:`camwidget.engine.memory`) or the
            number of masked inputs per forward.
        progress: ``progress(done, total)`` during long work; raise :class:`Cancelled` in it to abort.
        mean, std: the model's input normalisation, used where pixels must be truly black (Opti-CAM).
            Default ImageNet's.
        cache_size: images whose Score-CAM score matrices are kept. Default 16.
        warn: issue :attr:`last_warnings` as :class:`~camwidget.engine.diagnostics.MapWarning` (default
            True; a widget that shows them itself passes False).
        **options: method options (``variant``, ``channels`` for Score-CAM; ``iterations``, ``lr`` for
            Opti-CAM); defaults for every call, overridable per call.

    Attributes:
        layer_name: the explained layer (set on the first call when ``layer`` was None).
        precision_used: "fp32", "bf16" or "fp16": the least exact precision any forward of the last call
            ran at (None before the first call).
        last_warnings: why maps of the last call carry no information (all zero, numerical noise), also
            issued as :class:`~camwidget.engine.diagnostics.MapWarning` (see :mod:`.diagnostics`).

    Calls on one model are serialised (:mod:`camwidget.engine.model_lock`): an Explainer may be used from
    several threads, and a call waits while another camwidget call runs the same model. Use as a context
    manager or call :meth:`release` to drop the caches.
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
        warn: bool = True,
        **options: Any,
    ) -> None:
        check_model(model)
        check_runner_options(precision, batch_size)
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError("mean and std must have one entry per input channel, std > 0")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0; got {cache_size!r}")
        self.method = get_method(method).name  # validates the name
        self._check_options(options)
        self.model = model
        self.reshape_transform = reshape_transform
        self.precision = precision
        self.batch_size = batch_size
        self.progress = progress
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.options = options
        self.cache_size = cache_size
        self.warn = warn
        self._stacklevel = 2  # warnings point at the caller's line (explain() adds its own frame)
        self.precision_used: str | None = None
        self.last_warnings: list[str] = []
        self._methods: dict[str, CamMethod] = {}
        self.layer_name: str | None = None
        self.layer: nn.Module | None = None
        if layer is not None:
            self.layer_name, self.layer = resolve_layer(model, layer)

    # -- public --------------------------------------------------------------------------------------
    def __call__(
        self,
        inputs: torch.Tensor,
        target: object = None,
        *,
        method: str | None = None,
        raw: bool = False,
        return_logits: bool = False,
        **options: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Explain ``inputs``.

        Args:
            inputs: (N, C, H, W) images, or (N, C, T, H, W) video/volumes, float tensor of the model's dtype,
                preprocessed as the model expects, on any device.
            target: what to explain (see :mod:`camwidget.targets`): None (each image's predicted class), an
                int for all images, N ints, a :class:`~camwidget.targets.Target` (``Logit``,
                ``Probability``, ``Sigmoid``, ``SegmentationClass``, ``DetectionBox``, ``Similarity``,
                ``Output``), or any callable ``f(output) -> Tensor[N]``.
            method: overrides the explainer's default method for this call.
            raw: return the signed, unnormalised map at feature resolution (N, *s) instead.
            return_logits: also return what the forward pass that made the maps gave: the (N, K) float32
                logits for a classifier, else the (N,) target scores (on the inputs' device).
            **options: method options for this call only.

        Returns:
            (N, *S) float32 maps in [0, 1] on the inputs' device (all zeros where the map has no positive
            evidence), or (N, *s) raw maps when ``raw=True``; with ``return_logits``, the tuple
            ``(maps, logits)``.

        Raises:
            TypeError, ValueError: bad inputs, target, method, option or layer, before the model is
                changed; the model is left exactly as it came on every exit.
        """
        run = self._run(inputs, target, method, options)
        maps = run.raw
        if not raw:
            maps = finalize(maps, tuple(run.ctx.inputs.shape[2:]))
        if return_logits:
            given = run.ctx.logits if run.ctx.logits is not None else run.ctx.scores
            return maps.to(run.out_device), given.to(run.out_device)
        return maps.to(run.out_device)

    def steps(
        self,
        inputs: torch.Tensor,
        target: object = None,
        *,
        method: str | None = None,
        **options: Any,
    ) -> CamSteps:
        """Explain ``inputs`` and keep every intermediate: activations, gradients, channel weights, the
        signed raw map, and the map after upsampling, after ReLU and after min-max.

        Arguments as for :meth:`__call__`. ``steps(...).maps`` equals ``self(...)`` for the same call; the
        cost is the same (one call), plus memory for the (N, C', h, w) activations and gradients.

        Returns:
            :class:`~camwidget.engine.steps.CamSteps`, its tensors on the inputs' device.
        """
        run = self._run(inputs, target, method, options)
        ctx, dev = run.ctx, run.out_device
        upsampled = upsample(run.raw, tuple(ctx.inputs.shape[2:]))
        rectified = torch.relu(upsampled)

        def out(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to(dev)

        return CamSteps(
            method=run.method.name,
            label=run.method.label,
            layer=ctx.layer_name,
            target=ctx.target.name,
            classes=out(ctx.classes),
            scores=ctx.scores.to(dev),
            logits=out(ctx.logits),
            activations=ctx.activations.to(dev),
            gradients=out(ctx.gradients),
            weights=out(ctx.channel_weights),
            raw=run.raw.to(dev),
            upsampled=upsampled.to(dev),
            rectified=rectified.to(dev),
            maps=minmax(rectified).to(dev),
            warnings=tuple(self.last_warnings),
        )

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, K) float32 logits of ``inputs`` (one plain forward in eval mode, on the model's device)."""
        x, _ = self._prepare(inputs)
        with preserved_state(self.model), torch.inference_mode(), running_model(x):
            return as_logits(self.model(x)).float()

    def _plain_run(self, x: torch.Tensor) -> object:
        """The model's output on ``x`` (for targets that embed a reference image)."""
        with torch.no_grad():
            return self.model(x.to(model_device(self.model)))

    def release(self) -> None:
        """Drop the methods' caches (the model holds no hooks between calls)."""
        for method in self._methods.values():
            method.release()
        self._methods.clear()

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"Explainer({type(self.model).__name__}, layer={self.layer_name!r}, method={self.method!r}, "
            f"device={model_device(self.model)}, precision={self.precision!r})"
        )

    # -- internals -----------------------------------------------------------------------------------
    def _run(self, inputs: torch.Tensor, target: object, method: str | None, options: dict[str, Any]) -> _Run:
        """One explanation: the method's context and its raw (N, *s) maps; warnings issued."""
        cam = self._instance(method or self.method)
        self._check_options(options)
        opts = {**cam.defaults}
        opts.update({k: v for k, v in self.options.items() if k in cam.defaults})
        opts.update({k: v for k, v in options.items() if k in cam.defaults})
        x, out_device = self._prepare(inputs)
        wanted = as_target(target, x.shape[0])
        n = x.shape[0]
        with preserved_state(self.model), torch.inference_mode(False):
            if x.is_inference():
                x = x.clone()
            self._ensure_layer(x)
            assert self.layer is not None and self.layer_name is not None
            module_name, entry = split_entry(self.layer_name)
            with LayerCapture(
                self.layer,
                entry=entry,
                with_gradients=cam.needs_gradients,
                reshape_transform=self.reshape_transform,
            ) as capture:
                try:
                    with (
                        torch.no_grad(),
                        running_model(x),
                    ):  # the capture hook turns grad mode on at the layer
                        output = self.model(x)
                except LayerOutputError as exc:
                    raise ValueError(f"layer {module_name!r} {exc}".replace("LAYER", module_name)) from None
                if capture.leaf is None:
                    raise ValueError(
                        f"layer {self.layer_name!r} did not run during the model's forward pass; choose a "
                        "layer the input goes through (camwidget.candidate_layers(model) lists them)"
                    )
                with capture.paused():
                    bound = wanted.prepare(output, self._plain_run)
                with torch.enable_grad() if cam.needs_gradients else torch.no_grad():
                    scores = check_scores(bound(output), n)
                gradients = None
                if cam.needs_gradients:
                    if not scores.requires_grad:
                        raise ValueError(
                            f"the target {bound.name!r} is not differentiable (its scores carry no "
                            "gradient); "
                            f"{cam.label} needs gradients: return a differentiable score, or use a "
                            "gradient-free method (scorecam, ablationcam)"
                        )
                    gradients = capture.gradients(scores)
                activations = capture.activations
            spatial = activations.shape[2:]
            if math.prod(spatial) <= 1:
                raise ValueError(
                    f"layer {self.layer_name!r} has no spatial output (N, C, h, w) with h·w > 1: "
                    f"its output is {tuple(activations.shape)}; choose a layer before global pooling "
                    "(camwidget.candidate_layers(model) lists them)"
                )
            if activations.ndim - 2 != x.ndim - 2:
                raise ValueError(
                    f"layer {self.layer_name!r} has a {activations.ndim - 2}-D output for "
                    f"{x.ndim - 2}-D inputs {tuple(x.shape)}; choose a layer with the inputs' dimensions"
                )
            logits = _logits_or_none(output)
            classes = bound.classes if isinstance(bound, ClassIndex) and logits is not None else None
            ctx = MethodContext(
                inputs=x,
                activations=activations,
                gradients=gradients,
                scores=scores.detach().float(),
                target=bound,
                classes=classes,
                logits=None if logits is None else logits.detach().float(),
                layer_name=self.layer_name,
                options=opts,
                mean=self.mean,
                std=self.std,
                reshaped=capture.reshaped,
                progress=self.progress,
                precision=self.precision,
                batch_size=self.batch_size,
                _model=self.model,
            )
            maps = cam.raw(ctx).detach().float()
            self.precision_used = ctx.precision_used
        self.last_warnings = diagnose(
            maps,
            activations,
            gradients,
            layer=self.layer_name,
            method=cam.label,
            target=bound.name,
            elementwise=cam.elementwise,
        )
        for message in self.last_warnings if self.warn else ():
            warnings.warn(message, MapWarning, stacklevel=self._stacklevel + 1)
        return _Run(ctx, maps, cam, out_device)

    def _instance(self, name: str) -> CamMethod:
        """This explainer's instance of the method called ``name`` (created on first use)."""
        cls = get_method(name)
        method = self._methods.get(cls.name)
        if method is None:
            method = self._methods[cls.name] = cls(cache_size=self.cache_size)
        return method

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


class _Run(NamedTuple):
    """What :meth:`Explainer._run` computed: the context, the raw maps, the method, where results go."""

    ctx: MethodContext
    raw: torch.Tensor
    method: CamMethod
    out_device: torch.device


def _logits_or_none(output: object) -> torch.Tensor | None:
    try:
        return as_logits(output)
    except TypeError:
        return None


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str = "scorecam",
    layer: str | nn.Module | None = None,
    target: object = None,
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
        explainer._stacklevel = 3
        return explainer(inputs, target, raw=raw)


def explain_steps(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str = "scorecam",
    layer: str | nn.Module | None = None,
    target: object = None,
    **options: Any,
) -> CamSteps:
    """What ``method`` computes on its way to the map, in one call: the one-call form of
    :meth:`Explainer.steps` (the model is left exactly as it came).

    Args:
        model: classifier returning (N, K) logits (or any model with a ``target``), on any device.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        method: one of :data:`camwidget.METHODS`. Default "scorecam", as :func:`explain`.
        layer: submodule or dotted name; None = last spatial layer before global pooling.
        target: None (predicted class per image), an int, N ints, or a :mod:`camwidget.targets` target.
        **options: as for :func:`explain`.

    Returns:
        :class:`~camwidget.engine.steps.CamSteps`: activations (N, C', h, w), gradients (gradient methods),
        channel weights (N, C') where the map is Σ_k w_k A_k, the signed raw map (N, h, w), and the map
        upsampled, rectified (ReLU) and min-max normalised (N, H, W); ``maps`` equals :func:`explain`'s.

    Example::

        steps = camwidget.explain_steps(model, x, method="gradcam", layer="features.12")
        steps.weights  # (1, 512): the mean gradient of each channel
    """
    with Explainer(model, layer, method, **options) as explainer:
        explainer._stacklevel = 3
        return explainer.steps(inputs, target)
