"""Ablation-CAM (Desai & Ramaswamy 2020): the drop of the target score when one channel is zeroed.

w_k = (y_c − y_c^k) / |y_c|, with y_c^k the target's score (a class's logit by default) after setting channel
k of the layer's output to 0 (the paper divides by y_c, which assumes a positive logit; |y_c| keeps the map's
sign meaningful for a negative one). The layer's output is computed once per image: a forward hook expands the
single image's activations to a batch of ablated copies, so only the layers after the target layer run per
channel. Models where that broadcast is impossible (a skip connection concatenating a batch-1 tensor) fall
back to repeating the input.
"""

from __future__ import annotations

import torch
from torch import nn

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["AblationCAM"]


class _Ablate:
    """Forward hook: replace the layer's output by copies with one channel zeroed per row."""

    def __init__(self) -> None:
        self.channels = torch.empty(0, dtype=torch.long)
        self.expand = True

    def __call__(self, module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        b = len(self.channels)
        out = output.expand(b, *output.shape[1:]).clone() if self.expand else output.clone()
        out[torch.arange(b, device=out.device), self.channels.to(out.device)] = 0
        return out


class AblationCAM(CamMethod):
    """Ablation-CAM: gradient-free; C forward passes of the layers after the target layer per image."""

    name = "ablationcam"
    label = "Ablation-CAM"
    paper = "Desai & Ramaswamy, WACV 2020"
    interactive = False

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        if ctx.reshaped:
            raise ValueError(
                "ablationcam does not support reshape_transform layers; use scorecam or hirescam"
            )
        a = ctx.activations
        n, c = a.shape[:2]
        weights = torch.zeros(n, c, device=a.device)
        for i in range(n):
            scores = self._ablated(ctx, i, c)
            y = ctx.scores[i]
            weights[i] = (y - scores) / y.abs().clamp_min(1e-12)
        return weights

    @staticmethod
    def _ablated(ctx: MethodContext, i: int, c: int) -> torch.Tensor:
        """(C,) target scores of image ``i`` with each channel of the layer zeroed in turn."""
        image = ctx.inputs[i : i + 1]
        ablate = _Ablate()

        def make_batch(start: int, stop: int) -> torch.Tensor:
            ablate.channels = torch.arange(start, stop)
            return image if ablate.expand else image.expand(stop - start, *image.shape[1:])

        for attempt in (True, False):
            ablate.expand = attempt
            try:
                return ctx.target_forwards(make_batch, c, i, layer_hook=(ctx.layer_name, ablate))
            except RuntimeError:
                if not attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
