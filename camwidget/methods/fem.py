"""FEM, the Feature Explanation Method (Fuad et al., IPTA 2020): a k-sigma rule on the activations,
class-agnostic.

Per image and channel, the threshold is mean + k·std of the channel's map (population std over the
positions, frames included for video); the channel's weight is the fraction of positions above it, and the
map is Σ_k w_k A_k (pytorch-grad-cam's ``FEM``; ``k`` defaults to 2).
"""

from __future__ import annotations

import torch

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["FEM"]


class FEM(CamMethod):
    """FEM. Option ``k`` (2.0): the number of standard deviations above the mean that counts as salient."""

    name = "fem"
    label = "FEM"
    paper = "Fuad et al., IPTA 2020"
    defaults = {"k": 2.0}

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        k = ctx.options["k"]
        if isinstance(k, bool) or not isinstance(k, int | float):
            raise ValueError(f"k must be a number; got {k!r}")
        flat = ctx.activations.flatten(2)
        threshold = flat.mean(-1, keepdim=True) + float(k) * flat.std(-1, unbiased=False, keepdim=True)
        return (flat > threshold).float().mean(-1)
