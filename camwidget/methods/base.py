"""What every method receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from camwidget.engine.explainer import Explainer

__all__ = ["CamMethod", "Job"]


@dataclass
class Job:
    """One explanation request, as the engine hands it to a method.

    Attributes:
        inputs: (N, 3, H, W) model inputs on the model's device.
        activations: (N, C, h, w) float32 target-layer activations (detached).
        gradients: (N, C, h, w) float32 d logit[target] / d activations, for methods that need them.
        logits: (N, K) float32 logits of the unperturbed inputs.
        targets: (N,) int64 class index per image.
        explainer: the :class:`~camwidget.engine.explainer.Explainer` (runner, caches, layer, options).
    """

    inputs: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor | None
    logits: torch.Tensor
    targets: torch.Tensor
    explainer: Explainer
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.explainer.model


class CamMethod:
    """A CAM method: turns a :class:`Job` into signed raw maps (N, h, w) at feature resolution.

    Subclasses set ``name``, ``needs_gradients`` and ``defaults`` (their keyword options) and implement
    :meth:`raw`. The engine upsamples, applies ReLU and min-max normalises afterwards.
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}

    def raw(self, job: Job) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
