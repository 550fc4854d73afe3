"""What every CAM method is: a small object that turns a :class:`MethodContext` into raw maps."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from camwidget.engine.context import MethodContext

__all__ = ["CamMethod", "MethodContext"]


class CamMethod:
    """A CAM method: turns a :class:`~camwidget.engine.context.MethodContext` into signed raw maps
    (N, h, w) at feature resolution. The engine upsamples, applies ReLU and min-max normalises afterwards.

    Subclasses set the class attributes and implement :meth:`raw`. An instance belongs to one
    :class:`~camwidget.Explainer` and may keep state between calls (Score-CAM's score cache); it is
    dropped with its explainer or by :meth:`release`.

    Class attributes:
        name: the key users pass as ``method=`` ("scorecam").
        label: how the method is shown to people ("Score-CAM").
        paper: the reference.
        needs_gradients: the engine runs a backward pass to the layer for it.
        interactive: one forward (and backward) pass per image: fast enough to recompute on every click.
        elementwise: the map sums gradient × activation terms per position (HiResCAM), so the engine
            warns when those terms cancel to rounding error (:mod:`camwidget.engine.diagnostics`).
        defaults: the keyword options it accepts, with their defaults.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    paper: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = False
    interactive: ClassVar[bool] = True
    elementwise: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, cache_size: int = 16) -> None:
        """``cache_size``: images a method that keeps per-image results (Score-CAM) keeps them for."""
        self.cache_size = cache_size

    def raw(self, ctx: MethodContext) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def release(self) -> None:
        """Drop whatever this instance caches (nothing, unless a method keeps results)."""
