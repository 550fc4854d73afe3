"""FullGrad (Srinivas & Fleuret, NeurIPS 2019): input-gradients and the bias-gradients of every layer.

The full-gradient decomposition writes the score as Σ x ⊙ ∂y/∂x + Σ_layers Σ b ⊙ ∂y/∂z (z a layer's output,
b its bias). The saliency map sums, over the input and every layer with a bias and a spatial output
(convolutions, and BatchNorm with its effective bias b − μ·γ/√(σ² + ε)), the absolute value of each term,
normalised, resized to the input and summed over channels:

- ``normalization="channel"`` (default, as pytorch-grad-cam's ``FullGrad``): each channel's map min-max
  scaled on its own ((v − min) / (max − min + 1e-7)) at its resolution, then resized bilinearly;
- ``normalization="layer"`` (the official code, ``saliency/fullgrad.py``): each layer's (C, h, w) block
  min-max scaled as a whole ((v − min) / (max − min + 1e-6)), then resized bilinearly with
  ``align_corners=True``.

The chosen layer is ignored: every layer with a bias takes part (the engine's capture of the chosen layer is
not used). One forward in grad mode from the input and one backward pass through the whole network (no
parameter gradients). The raw map is at the input's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camwidget.methods.base import CamMethod, MethodContext, MethodHook

__all__ = ["NORMALIZATIONS", "FullGrad", "bias_layers", "effective_bias"]

NORMALIZATIONS = ("channel", "layer")


def effective_bias(module: nn.Module) -> torch.Tensor:
    """(C,) the bias a module adds per output channel: a convolution's bias, or BatchNorm's
    b − running_mean·γ/√(running_var + ε) (its bias alone where it keeps no running statistics)."""
    bias = module.bias.detach().float()  # type: ignore[union-attr]
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        assert module.running_var is not None
        gamma = module.weight.detach().float() if module.weight is not None else torch.ones_like(bias)
        bias = bias - module.running_mean.float() * gamma / torch.sqrt(
            module.running_var.float() + module.eps
        )
    return bias


def bias_layers(model: nn.Module) -> list[str]:
    """Names of the modules whose bias FullGrad attributes: convolutions and BatchNorm layers with a bias."""
    kinds = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)
    return [
        name
        for name, m in model.named_modules()
        if name and isinstance(m, kinds) and getattr(m, "bias", None) is not None
    ]


class _Keep:
    """Forward hook: keep a layer's output as a node of the graph; downstream works on a copy (an in-place
    ReLU after a BatchNorm would otherwise overwrite it)."""

    def __init__(self, store: dict[str, torch.Tensor], name: str) -> None:
        self.store = store
        self.name = name

    def __call__(self, module: nn.Module, args: object, output: object) -> object:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return None
        self.store[self.name] = output
        return output.clone()


class FullGrad(CamMethod):
    """FullGrad. Options: ``normalization`` ("channel", pytorch-grad-cam; or "layer", the official code)."""

    name = "fullgrad"
    label = "FullGrad"
    paper = "Srinivas & Fleuret, NeurIPS 2019"
    needs_input_gradient = True
    uses_layer = False
    defaults = {"normalization": "channel"}

    def __init__(self, *, cache_size: int = 16) -> None:
        super().__init__(cache_size=cache_size)
        self._outputs: dict[str, torch.Tensor] = {}

    def forward_hooks(
        self, model: nn.Module, layers: Sequence[str], options: Mapping[str, Any]
    ) -> list[MethodHook]:
        self._outputs = {}
        return [MethodHook(name, _Keep(self._outputs, name)) for name in bias_layers(model)]

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        how = ctx.options["normalization"]
        if how not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}; got {how!r}")
        assert ctx.scores_graph is not None
        x = ctx.inputs
        size = tuple(x.shape[2:])
        modules = dict(ctx.model.named_modules())
        names = [n for n, z in self._outputs.items() if z.ndim == x.ndim]  # spatial outputs only
        outputs = [self._outputs[n] for n in names]
        grads = torch.autograd.grad(ctx.scores_graph.sum(), [x, *outputs], allow_unused=True)
        self._outputs = {}
        total = _channel_sum(torch.nan_to_num((x.detach() * _or_zero(grads[0], x)).abs().float()), size, how)
        for name, z, g in zip(names, outputs, grads[1:], strict=True):
            b = effective_bias(modules[name]).to(z.device)
            term = (b.view(1, -1, *([1] * (z.ndim - 2))) * _or_zero(g, z).float()).abs()
            total = total + _channel_sum(term, size, how)
        return total


def _or_zero(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g.detach()


def _channel_sum(term: torch.Tensor, size: tuple[int, ...], how: str) -> torch.Tensor:
    """(N, C, *s) non-negative term -> (N, *size): normalised as ``how``, resized, summed over channels.

    Resizing is linear and the same for every channel, so the channels are summed at the layer's resolution
    and the sum resized once (the same map as resizing each channel, C times less interpolation)."""
    mode = "bilinear" if len(size) == 2 else "trilinear"
    flat = term.flatten(2) if how == "channel" else term.flatten(1)
    shifted = flat - flat.amin(-1, keepdim=True)
    eps = 1e-7 if how == "channel" else 1e-6
    summed = (shifted / (shifted.amax(-1, keepdim=True) + eps)).view_as(term).sum(dim=1, keepdim=True)
    if tuple(term.shape[2:]) != size:
        summed = F.interpolate(summed, size=size, mode=mode, align_corners=how == "layer")
    return summed[:, 0]
