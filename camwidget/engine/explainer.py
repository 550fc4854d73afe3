"""The Explainer: one object per (model, layer) that runs any method and keeps caches between calls.

Data flow of a call::

    inputs (N, C, *S) -> model's device -> forward with a LayerCapture hook per layer -> the target's score
    per image (+ one backward pass to the layers for gradient methods) -> method.raw(context) (N, *s) per
    layer -> upsample, ReLU, min-max (several layers: fused, :mod:`.fusion`) -> (N, *S) in [0, 1] on the
    inputs' device

S is (H, W) for images and (T, H, W) for video or volumes (5-D inputs). ``eigen_smooth`` replaces a method's
map by the first principal component of its weighted activations, ``aug_smooth`` averages the maps of
flipped and rescaled copies of the inputs (:mod:`.smoothing`).

Every call, including one that raises or is interrupted, leaves the model as it came: hooks removed,
train/eval flags and ``requires_grad`` restored, parameter ``.grad`` untouched, BatchNorm statistics
untouched (the explanation runs in eval mode). Hooks exist only during a call, and calls on one model run
one at a time (:mod:`camwidget.engine.model_lock`). Methods see the call through a
:class:`~camwidget.engine.context.MethodContext`; each method instance belongs to its Explainer.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.attention import twice_differentiable_attention
from camwidget.engine.batching import Cancelled, model_device
from camwidget.engine.context import MethodContext
from camwidget.engine.diagnostics import MapWarning, diagnose
from camwidget.engine.fusion import FUSIONS, fuse
from camwidget.engine.hooks import LayerCapture, LayerOutputError, capture_gradients, preserved_state
from camwidget.engine.layers import default_layer, resolve_layer, split_entry
from camwidget.engine.normalize import minmax, upsample
from camwidget.engine.smoothing import augmentations, first_component
from camwidget.engine.steps import CamSteps
from camwidget.engine.validation import (
    check_inputs,
    check_model,
    check_runner_options,
    running_model,
)
from camwidget.methods.base import CamMethod
from camwidget.methods.registry import get_method, method_options
from camwidget.targets import (
    ClassIndex,
    DetectionBox,
    SegmentationClass,
    Target,
    as_logits,
    as_target,
    check_scores,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CamSteps", "Cancelled", "Explainer", "explain", "explain_steps"]


@dataclass
class _Pass:
    """What one forward (+ backward) pass over the layers gave: raw maps per layer and the call's facts."""

    raws: list[torch.Tensor]
    target: Target
    logits: torch.Tensor | None
    scores: torch.Tensor
    precision_used: str
    warnings: list[str] = field(default_factory=list)
    contexts: list[MethodContext] = field(default_factory=list)


class Explainer:
    """Explain a classifier's decisions at one layer or several, with any method in :data:`camwidget.METHODS`.

    Args:
        model: an ``nn.Module`` returning (N, K) logits; it is used on its own device (CPU, CUDA, ...).
        layer: a submodule or its dotted name, or a list of them (the maps are fused, see ``fusion``);
            ``None`` picks the last spatial layer before global pooling (decided on the first call, from the
            input size).
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
        aug_smooth: default for calls: test-time augmentation smoothing (see :meth:`__call__`). Default False.
        eigen_smooth: default for calls: first principal component of the weighted activations. Default False.
        fusion: how several layers' maps are fused: "mean" (default for most methods), "refine" (RefineCAM's
            product) or "raw-mean" (LeGrad's default); None = the method's own default.
        aug_scales: the spatial scales of ``aug_smooth`` (default (1.0,): flips and pixel factors only, as
            pytorch-grad-cam); e.g. (0.75, 1.0, 1.25).
        **options: method options (``variant``, ``channels`` for Score-CAM; ``iterations``, ``lr`` for
            Opti-CAM; ``samples``, ``noise``, ``seed`` for the stochastic methods); defaults for every call,
            overridable per call.

    Attributes:
        layer_name: the explained layer (set on the first call when ``layer`` was None); with several layers,
            their names joined by "+" (for display; :attr:`layer_names` lists them).
        layer_names: the explained layers' names, in the order given.
        precision_used: "fp32", "bf16" or "fp16": the least exact precision any forward of the last call
            ran at (None before the first call).
        last_warnings: why maps of the last call carry no information (all zero, numerical noise), also
            issued as :class:`~camwidget.engine.diagnostics.MapWarning` (see :mod:`.diagnostics`).
        seed_used: the seed a stochastic method used in the last call (the caller's ``seed=`` or a fresh
            one); None for deterministic methods. Pass it back as ``seed=`` to reproduce the maps.
        target_used: the target of the last call, bound to its inputs (its ``classes`` for a class target).

    Calls on one model are serialised (:mod:`camwidget.engine.model_lock`): an Explainer may be used from
    several threads, and a call waits while another camwidget call runs the same model. Use as a context
    manager or call :meth:`release` to drop the caches.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | Sequence[str | nn.Module] | None = None,
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
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        fusion: str | None = None,
        aug_scales: Sequence[float] = (1.0,),
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
        self.aug_smooth, self.eigen_smooth, self.fusion, self.aug_scales = _check_smoothing(
            aug_smooth, eigen_smooth, fusion, aug_scales
        )
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
        self.seed_used: int | None = None
        self.target_used: Target | None = None
        self._methods: dict[str, CamMethod] = {}
        self.layer_names: tuple[str, ...] = ()
        self.layers: tuple[nn.Module, ...] = ()
        if layer is not None:
            layers = list(layer) if isinstance(layer, list | tuple) else [layer]
            if not layers:
                raise ValueError("layer must name at least one layer (or be None for the default)")
            resolved = [resolve_layer(model, one) for one in layers]
            seen: dict[str, nn.Module] = {}
            for name, module in resolved:
                seen.setdefault(name, module)
            self.layer_names, self.layers = tuple(seen), tuple(seen.values())

    @property
    def layer_name(self) -> str | None:
        """The explained layer's name ("a+b" for several layers; None before a default is chosen)."""
        return "+".join(self.layer_names) if self.layer_names else None

    @property
    def layer(self) -> nn.Module | None:
        """The explained layer's module (the first one where there are several)."""
        return self.layers[0] if self.layers else None

    # -- public --------------------------------------------------------------------------------------
    def __call__(
        self,
        inputs: torch.Tensor,
        target: object = None,
        *,
        method: str | None = None,
        raw: bool = False,
        return_logits: bool = False,
        aug_smooth: bool | None = None,
        eigen_smooth: bool | None = None,
        fusion: str | None = None,
        aug_scales: Sequence[float] | None = None,
        **options: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Explain ``inputs``.

        Args:
            inputs: (N, C, H, W) images, or (N, C, T, H, W) video/volumes, float tensor of the model's dtype,
                preprocessed as the model expects, on any device.
            target: what to explain (see :mod:`camwidget.targets`): None (each image's predicted class), an
                int for all images, N ints, a :class:`~camwidget.targets.Target` (``Logit``,
                ``Probability``, ``Sigmoid``, ``ReST``, ``SegmentationClass``, ``DetectionBox``,
                ``Similarity``, ``Output``), or any callable ``f(output) -> Tensor[N]``.
            method: overrides the explainer's default method for this call.
            raw: return the signed, unnormalised map at feature resolution (N, *s) instead (one layer, no
                ``aug_smooth``).
            return_logits: also return what the forward pass that made the maps gave: the (N, K) float32
                logits for a classifier, else the (N,) target scores (on the inputs' device).
            aug_smooth: average the maps of the inputs as they are and flipped horizontally, each times
                0.9, 1 and 1.1 (and at ``aug_scales``), each map normalised and flipped/resized back
                (pytorch-grad-cam's ``aug_smooth``; six explanations per call). A predicted-class target is
                fixed on the unaugmented inputs. Refused for segmentation and detection targets, which are
                tied to pixel positions. None: the explainer's default.
            eigen_smooth: replace the map Σ_k T_k of the method's per-channel terms T (w_k·A_k, g⊙A, ...) by
                their first principal component (:func:`~camwidget.engine.smoothing.first_component`); a
                no-op for methods that already are one (Eigen-CAM, EigenGrad-CAM, KPCA-CAM); a ValueError for
                methods without such terms (FullGrad, LeGrad). None: the explainer's default.
            fusion: with several layers, "mean", "refine" or "raw-mean" (see :mod:`camwidget.engine.fusion`);
                None: the explainer's setting, else the method's default.
            aug_scales: spatial scales for ``aug_smooth`` (None: the explainer's).
            **options: method options for this call only.

        Returns:
            (N, *S) float32 maps in [0, 1] on the inputs' device (all zeros where the map has no positive
            evidence), or (N, *s) raw maps when ``raw=True``; with ``return_logits``, the tuple
            ``(maps, logits)``.

        Raises:
            TypeError, ValueError: bad inputs, target, method, option or layer, before the model is
                changed; the model is left exactly as it came on every exit.
        """
        maps, given, _, _ = self._explain(
            inputs, target, method, raw, aug_smooth, eigen_smooth, fusion, aug_scales, options
        )
        return (maps, given) if return_logits else maps

    def record(
        self,
        inputs: torch.Tensor,
        target: object = None,
        *,
        method: str | None = None,
        keep_inputs: bool = True,
        aug_smooth: bool | None = None,
        eigen_smooth: bool | None = None,
        fusion: str | None = None,
        aug_scales: Sequence[float] | None = None,
        **options: Any,
    ) -> Any:
        """Explain ``inputs`` and return a :class:`camwidget.record.Record`: the maps with everything that
        made them (model fingerprint, layers, method and options with the seed used, target, precision, input
        size, library versions), to save with ``.save(path)`` and check with ``Record.load(path, model)``.

        Args are those of :meth:`__call__`; ``keep_inputs`` (default True) stores the inputs too, so
        :meth:`camwidget.record.Record.replay` can recompute the maps.
        """
        from camwidget.record import Record

        maps, _, settings, _ = self._explain(
            inputs, target, method, False, aug_smooth, eigen_smooth, fusion, aug_scales, options
        )
        return Record.from_call(self, maps, inputs if keep_inputs else None, settings)

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

        Arguments as for :meth:`__call__` (one layer, no ``aug_smooth``/``eigen_smooth``: the steps are
        those of one pass). ``steps(...).maps`` equals ``self(...)`` for the same call; the cost is the same
        (one call), plus memory for the (N, C', h, w) activations and gradients.

        Returns:
            :class:`~camwidget.engine.steps.CamSteps`, its tensors on the inputs' device.

        Raises:
            ValueError: several layers, or ``aug_smooth`` / ``eigen_smooth`` on.
        """
        if len(self.layers) > 1:
            raise ValueError(f"steps() shows one layer's computation; {len(self.layers)} layers were given")
        if self.aug_smooth or self.eigen_smooth:
            raise ValueError(
                "steps() shows one plain pass; make this Explainer without aug_smooth / eigen_smooth"
            )
        raw, _, _, done = self._explain(inputs, target, method, True, False, False, None, None, options)
        ctx, dev = done.contexts[0], raw.device
        upsampled = upsample(raw, tuple(ctx.inputs.shape[2:]))
        rectified = torch.relu(upsampled)

        def out(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to(dev)

        cam = self._instance(method or self.method)
        return CamSteps(
            method=cam.name,
            label=cam.label,
            layer=ctx.layer_name,
            target=ctx.target.name,
            classes=out(ctx.classes),
            scores=ctx.scores.to(dev),
            logits=out(ctx.logits),
            activations=ctx.activations.to(dev),
            gradients=out(ctx.gradients),
            weights=out(ctx.channel_weights),
            raw=raw,
            upsampled=upsampled,
            rectified=rectified,
            maps=minmax(rectified),
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
    def _explain(
        self,
        inputs: torch.Tensor,
        target: object,
        method: str | None,
        raw: bool,
        aug_smooth: bool | None,
        eigen_smooth: bool | None,
        fusion: str | None,
        aug_scales: Sequence[float] | None,
        options: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], _Pass]:
        """(maps, logits or scores, settings used, the unaugmented pass) of one call (:meth:`__call__`)."""
        cam = self._instance(method or self.method)
        self._check_options(options)
        aug, eigen, how, scales = _check_smoothing(
            self.aug_smooth if aug_smooth is None else aug_smooth,
            self.eigen_smooth if eigen_smooth is None else eigen_smooth,
            self.fusion if fusion is None else fusion,
            self.aug_scales if aug_scales is None else aug_scales,
        )
        how = how or cam.fusion
        opts = {**cam.defaults}
        opts.update({k: v for k, v in self.options.items() if k in cam.defaults})
        opts.update({k: v for k, v in options.items() if k in cam.defaults})
        seed = None
        if cam.stochastic():
            seed = opts.get("seed")
            if seed is None:
                seed = secrets.randbelow(2**31)
            elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seed must be None or an int >= 0; got {seed!r}")
            opts["seed"] = seed
        if raw and aug:
            raise ValueError(
                "raw=True gives one pass's map at feature resolution; it cannot be aug_smooth'ed"
            )
        x, out_device = self._prepare(inputs)
        wanted = cam.method_target(as_target(target, x.shape[0]), opts)
        if aug and isinstance(wanted, SegmentationClass | DetectionBox):
            raise ValueError(
                f"aug_smooth flips and rescales the inputs, but the target {wanted.name!r} is tied to pixel "
                "positions; explain without aug_smooth"
            )
        size = tuple(x.shape[2:])
        with preserved_state(self.model), torch.inference_mode(False):
            if x.is_inference():
                x = x.clone()
            self._ensure_layer(x)
            if raw and len(self.layers) > 1:
                raise ValueError(
                    f"raw=True gives one layer's map at its own resolution; {len(self.layers)} layers were "
                    "given: explain them one at a time"
                )
            if len(self.layers) > 1 and not cam.uses_layer:
                raise ValueError(f"{cam.name} reads every layer it needs itself; give one layer (or None)")
            if not aug:
                done = self._pass(cam, x, wanted, opts, eigen, seed)
                maps = done.raws[0] if raw else fuse(done.raws, size, how)
            else:
                total, done = None, None
                for augmentation in augmentations(scales):
                    xa = augmentation.apply(x)
                    one = self._pass(cam, xa, wanted, opts, eigen, seed)
                    if done is None:  # the identity comes first: fix the target on the unaugmented inputs
                        done, wanted = one, one.target
                    mapped = augmentation.undo(fuse(one.raws, tuple(xa.shape[2:]), how), size)
                    total = mapped if total is None else total + mapped
                assert total is not None and done is not None
                maps = minmax(total)
            self.precision_used = done.precision_used
            self.seed_used = seed
            self.target_used = done.target
        self.last_warnings = done.warnings
        for message in self.last_warnings if self.warn else ():
            warnings.warn(message, MapWarning, stacklevel=self._stacklevel + 1)
        given = done.logits if done.logits is not None else done.scores
        settings = {
            "method": cam.name,
            "options": opts,
            "aug_smooth": aug,
            "eigen_smooth": eigen,
            "fusion": how,
            "aug_scales": list(scales),
            "target": done.target,
            "precision_used": done.precision_used,
        }
        return maps.to(out_device), given.to(out_device), settings, done

    def _pass(
        self,
        cam: CamMethod,
        x: torch.Tensor,
        wanted: Target,
        opts: dict[str, Any],
        eigen: bool,
        seed: int | None,
    ) -> _Pass:
        """One forward with a capture per layer (+ one backward), then the method per layer."""
        n = x.shape[0]
        names = self.layer_names
        with_gradients = cam.needs_gradients or cam.needs_hessian
        captures = []
        for name, module in zip(names, self.layers, strict=True):
            captures.append(
                LayerCapture(
                    module,
                    entry=split_entry(name)[1],
                    with_gradients=with_gradients,
                    reshape_transform=self.reshape_transform,
                )
            )
        if cam.needs_input_gradient:
            x = x.detach().requires_grad_(True)
        hooks = cam.forward_hooks(self.model, names, opts)
        with contextlib.ExitStack() as stack:
            for capture in captures:
                stack.enter_context(capture)
            grad_mode = torch.enable_grad() if cam.needs_input_gradient else torch.no_grad()
            if cam.needs_hessian:  # fused attention kernels have no double backward; the math one has
                stack.enter_context(twice_differentiable_attention())  # this thread only, this pass only
            try:
                # A capture hook turns grad mode on at its layer. The method's own hooks (if any) are on
                # for this forward only, not for a target's reference forward below.
                with contextlib.ExitStack() as method_hooks, grad_mode, running_model(x):
                    modules = dict(self.model.named_modules())
                    for spec in hooks:
                        module = modules[spec.module]
                        register = (
                            module.register_forward_pre_hook if spec.pre else module.register_forward_hook
                        )
                        method_hooks.callback(register(spec.hook, with_kwargs=spec.with_kwargs).remove)
                    output = self.model(x)
            except LayerOutputError as exc:
                module_name = next(
                    (split_entry(nm)[0] for nm, c in zip(names, captures, strict=True) if c.leaf is None),
                    split_entry(names[0])[0],
                )
                raise ValueError(f"layer {module_name!r} {exc}".replace("LAYER", module_name)) from None
            for name, capture in zip(names, captures, strict=True):
                if capture.leaf is None:
                    raise ValueError(
                        f"layer {name!r} did not run during the model's forward pass; choose a "
                        "layer the input goes through (camwidget.candidate_layers(model) lists them)"
                    )
            with contextlib.ExitStack() as paused:
                for capture in captures:
                    paused.enter_context(capture.paused())
                bound = wanted.prepare(output, self._plain_run)
            graph = with_gradients or cam.needs_input_gradient
            with torch.enable_grad() if graph else torch.no_grad():
                scores = check_scores(bound(output), n)
            gradients: list[torch.Tensor | None] = [None] * len(captures)
            products: list[torch.Tensor | None] = [None] * len(captures)
            if graph and not scores.requires_grad:
                raise ValueError(
                    f"the target {bound.name!r} is not differentiable (its scores carry no "
                    "gradient); "
                    f"{cam.label} needs gradients: return a differentiable score, or use a "
                    "gradient-free method (scorecam, ablationcam)"
                )
            if with_gradients:
                if len(captures) == 1 and not cam.needs_hessian:
                    gradients = [captures[0].gradients(scores)]
                else:
                    grads, hvps = capture_gradients(captures, scores, hessian=cam.needs_hessian)
                    gradients = list(grads)
                    if hvps is not None:
                        products = list(hvps)
            activations = [capture.activations for capture in captures]
        for name, a in zip(names, activations, strict=True):
            if math.prod(a.shape[2:]) <= 1:
                raise ValueError(
                    f"layer {name!r} has no spatial output (N, C, h, w) with h·w > 1: "
                    f"its output is {tuple(a.shape)}; choose a layer before global pooling "
                    "(camwidget.candidate_layers(model) lists them)"
                )
            if a.ndim - 2 != x.ndim - 2:
                raise ValueError(
                    f"layer {name!r} has a {a.ndim - 2}-D output for "
                    f"{x.ndim - 2}-D inputs {tuple(x.shape)}; choose a layer with the inputs' dimensions"
                )
        logits = _logits_or_none(output)
        classes = bound.classes if isinstance(bound, ClassIndex) and logits is not None else None
        raws = []
        contexts: list[MethodContext] = []
        found: list[str] = []
        precision_used = "fp32"
        for i, (name, module) in enumerate(zip(names, self.layers, strict=True)):
            ctx = MethodContext(
                inputs=x,
                activations=activations[i],
                gradients=gradients[i],
                scores=scores.detach().float(),
                target=bound,
                classes=classes,
                logits=None if logits is None else logits.detach().float(),
                layer_name=name,
                options=opts,
                mean=self.mean,
                std=self.std,
                reshaped=captures[i].reshaped,
                progress=self.progress,
                precision=self.precision,
                batch_size=self.batch_size,
                _model=self.model,
                hessian_products=products[i],
                scores_graph=scores if cam.needs_input_gradient else None,
                seed=seed,
                _layer=module,
                _entry=split_entry(name)[1],
                _reshape=self.reshape_transform,
            )
            if eigen and not cam.principal_component:
                raws.append(first_component(cam.weighted(ctx).detach().float()))
            else:
                raws.append(cam.raw(ctx).detach().float())
            contexts.append(ctx)
            if ctx.precision_used != "fp32":
                precision_used = ctx.precision_used
            found.extend(
                diagnose(
                    raws[-1],
                    activations[i],
                    gradients[i],
                    layer=name,
                    method=cam.label,
                    target=bound.name,
                    elementwise=cam.elementwise,
                )
            )
        return _Pass(
            raws=raws,
            target=bound,
            logits=None if logits is None else logits.detach().float(),
            scores=scores.detach().float(),
            precision_used=precision_used,
            warnings=found,
            contexts=contexts,
        )

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
        if not self.layers:
            name, module = resolve_layer(
                self.model, default_layer(self.model, x[:1], reshape_transform=self.reshape_transform)
            )
            self.layer_names, self.layers = (name,), (module,)


def _check_smoothing(
    aug_smooth: object, eigen_smooth: object, fusion: object, aug_scales: object
) -> tuple[bool, bool, str | None, tuple[float, ...]]:
    if not isinstance(aug_smooth, bool):
        raise TypeError(f"aug_smooth must be True or False; got {aug_smooth!r}")
    if not isinstance(eigen_smooth, bool):
        raise TypeError(f"eigen_smooth must be True or False; got {eigen_smooth!r}")
    if fusion is not None and fusion not in FUSIONS:
        raise ValueError(f"fusion must be None or one of {', '.join(FUSIONS)}; got {fusion!r}")
    try:
        scales = tuple(float(s) for s in aug_scales)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"aug_scales must be a sequence of positive numbers; got {aug_scales!r}") from None
    if not scales or any(not (s > 0 and math.isfinite(s)) for s in scales):
        raise ValueError(f"aug_scales must be a non-empty sequence of positive numbers; got {aug_scales!r}")
    return aug_smooth, eigen_smooth, fusion, scales  # type: ignore[return-value]


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
    layer: str | nn.Module | Sequence[str | nn.Module] | None = None,
    target: object = None,
    raw: bool = False,
    record: bool = False,
    **options: Any,
) -> Any:
    """Class activation maps of ``inputs`` for ``model``: the one-call form of :class:`Explainer`.

    Args:
        model: classifier returning (N, K) logits, on any device; left exactly as it came.
        inputs: (N, 3, H, W) float tensor, preprocessed as the model expects.
        method: one of :data:`camwidget.METHODS`. Default "scorecam".
        layer: submodule or dotted name, or a list of them (maps fused); None = last spatial layer before
            global pooling.
        target: None (predicted class per image), an int, N ints, or a :mod:`camwidget.targets` target.
        raw: return signed, unnormalised (N, h, w) maps at feature resolution.
        record: return a :class:`camwidget.record.Record` (maps + what made them) instead of the maps.
        **options: ``precision``, ``batch_size``, ``progress``, ``mean``, ``std``, ``reshape_transform``,
            ``aug_smooth``, ``eigen_smooth``, ``fusion``, ``aug_scales`` and method options (see
            :class:`Explainer`).

    Returns:
        (N, H, W) float32 maps in [0, 1] on the inputs' device (a ``Record`` with ``record=True``).
    """
    with Explainer(model, layer, method, **options) as explainer:
        explainer._stacklevel = 3
        if record:
            if raw:
                raise ValueError("record=True keeps normalised maps; leave raw=False")
            return explainer.record(inputs, target)
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
