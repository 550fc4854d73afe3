"""What every CAM method is: a small object that turns a :class:`MethodContext` into raw maps."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from camwidget.engine.context import MethodContext
from camwidget.targets import Target

__all__ = ["CamMethod", "MethodContext", "MethodHook", "weighted_sum"]


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k A_k for (N, C) weights and (N, C, *s) activations -> (N, *s)."""
    return torch.einsum("nc,nc...->n...", weights, activations)


@dataclass(frozen=True)
class MethodHook:
    """A hook a method needs on one module during the engine's forward pass (LeGrad's attention capture,
    FullGrad's bias layers). The engine registers it inside its model-state guard and removes it after.

    Attributes:
        module: dotted name of the module.
        hook: a forward hook ``hook(module, args, output)`` (``hook(module, args, kwargs, output)`` with
            ``with_kwargs``), or a forward pre-hook when ``pre``.
        pre: register as a forward pre-hook.
        with_kwargs: the hook receives (and may return) the keyword arguments too.
    """

    module: str
    hook: Callable[..., Any]
    pre: bool = False
    with_kwargs: bool = False


class CamMethod:
    """A CAM method: turns a :class:`~camwidget.engine.context.MethodContext` into signed raw maps
    (N, h, w) at feature resolution. The engine upsamples, applies ReLU and min-max normalises afterwards.

    Subclasses set the class attributes and implement :meth:`raw`, or, for methods that weight the
    activation maps (map = Σ_k w_k A_k), :meth:`channel_weights` (:meth:`raw` and :meth:`weighted` follow).
    An instance belongs to one :class:`~camwidget.Explainer` and may keep state between calls (Score-CAM's
    score cache); it is dropped with its explainer or by :meth:`release`.

    Class attributes:
        name: the key users pass as ``method=`` ("scorecam").
        label: how the method is shown to people ("Score-CAM").
        paper: the reference.
        needs_gradients: the engine runs a backward pass to the layer for it.
        needs_hessian: the engine also computes the Hessian-vector product H·A at the layer (implies
            ``needs_gradients``).
        needs_input_gradient: the engine runs the whole forward in grad mode from a leaf input and hands the
            method the scores still attached to the graph (FullGrad).
        interactive: one forward (and backward) pass per image: fast enough to recompute on every click.
        elementwise: the map sums gradient × activation terms per position (HiResCAM), so the engine
            warns when those terms cancel to rounding error (:mod:`camwidget.engine.diagnostics`).
        defaults: the keyword options it accepts, with their defaults. A ``seed`` option marks a stochastic
            method: the engine draws a fresh seed where the caller passes None and reports it.
        principal_component: the map already is a first principal component (Eigen-CAM and kin), so
            ``eigen_smooth`` leaves it as it is.
        architecture: "any", or "vision-transformer" for methods that need a ViT's attention (LeGrad).
        uses_layer: False for methods that read every layer themselves and ignore the chosen one (FullGrad).
        fusion: how several layers' maps are fused by default (see :mod:`camwidget.engine.fusion`).
        in_comparisons: part of :func:`camwidget.metrics.compare_methods`' default set (False for methods
            that only apply to some models or cost tens of Score-CAMs).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    paper: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = False
    needs_hessian: ClassVar[bool] = False
    needs_input_gradient: ClassVar[bool] = False
    interactive: ClassVar[bool] = True
    elementwise: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    principal_component: ClassVar[bool] = False
    architecture: ClassVar[str] = "any"
    uses_layer: ClassVar[bool] = True
    fusion: ClassVar[str] = "mean"
    in_comparisons: ClassVar[bool] = True

    def __init__(self, *, cache_size: int = 16) -> None:
        """``cache_size``: images a method that keeps per-image results (Score-CAM) keeps them for."""
        self.cache_size = cache_size

    @classmethod
    def stochastic(cls) -> bool:
        """Whether the method draws random numbers (it takes ``seed=``)."""
        return "seed" in cls.defaults

    @classmethod
    def eigen_smoothable(cls) -> bool:
        """Whether ``eigen_smooth`` changes this method's map: it sums per-channel terms (its own
        :meth:`weighted` or :meth:`channel_weights`) that are not already a first principal component."""
        own = cls.weighted is not CamMethod.weighted or cls.channel_weights is not CamMethod.channel_weights
        return own and not cls.principal_component

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        """(N, *s) signed raw maps. Default: Σ_k w_k A_k with :meth:`channel_weights`, recorded on the context
        as ``ctx.channel_weights`` (what :func:`camwidget.explain_steps` reports)."""
        weights = self.channel_weights(ctx)
        ctx.channel_weights = weights.detach().float()
        return weighted_sum(weights, ctx.activations)

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:  # pragma: no cover - interface
        """(N, C') weight of each activation map, for methods that weight channels."""
        raise NotImplementedError

    def weighted(self, ctx: MethodContext) -> torch.Tensor:
        """(N, C', *s) per-channel terms whose sum over channels is :meth:`raw` (``eigen_smooth`` takes their
        first principal component). Default: w_k · A_k with :meth:`channel_weights`.

        Raises:
            ValueError: the method does not form a sum over channels.
        """
        if type(self).channel_weights is CamMethod.channel_weights:
            raise ValueError(
                f"eigen_smooth is not defined for {self.label}: it does not sum weighted activation maps"
            )
        w = self.channel_weights(ctx)
        return w.view(*w.shape, *([1] * (ctx.activations.ndim - 2))) * ctx.activations

    def method_target(self, target: Target, options: Mapping[str, Any]) -> Target:
        """The score this method explains for the caller's ``target`` (default: the target itself;
        ShapleyCAM pairs a bare class index with ReST, Finer-CAM builds its contrast)."""
        return target

    def forward_hooks(
        self, model: nn.Module, layers: Sequence[str], options: Mapping[str, Any]
    ) -> list[MethodHook]:
        """Hooks this method needs during the engine's forward pass on ``layers`` (default: none)."""
        return []

    def release(self) -> None:
        """Drop whatever this instance caches (nothing, unless a method keeps results)."""
