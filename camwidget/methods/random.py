"""RandomCAM: random channel weights, the baseline a sanity check or a metric needs.

w_k ~ Uniform(−1, 1) (pytorch-grad-cam's ``RandomCAM``), drawn from a CPU generator seeded with ``seed``
(every image of a call gets the same draws, so an image's map does not depend on its batch);
map = Σ_k w_k A_k.
With ``seed=None`` (default) every call draws a fresh seed (reported as ``Explainer.seed_used``): the map is
then not a function of the model and the image, which is what a sanity check must catch.
"""

from __future__ import annotations

import torch

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["RandomCAM"]


class RandomCAM(CamMethod):
    """RandomCAM. Option ``seed`` (None: a fresh one per call)."""

    name = "randomcam"
    label = "RandomCAM"
    paper = "pytorch-grad-cam (Gildenblat et al.): a random baseline"
    defaults = {"seed": None}

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        c = ctx.activations.shape[1]
        w = torch.rand(c, generator=ctx.random_generator(), dtype=torch.float64) * 2 - 1
        return w.float().to(ctx.device).expand(ctx.activations.shape[0], c)
