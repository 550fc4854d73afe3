"""Vision transformers: which layer to explain by default, and how a layer's tokens become a spatial grid.

CAMs need a spatial map (N, C, h, w). Transformer layers output tokens instead:

- ViT / DeiT (torchvision, timm): (N, T, C) with T = p + h·w, the first p tokens being class, distillation
  or register tokens. :func:`to_grid` drops p prefix tokens (p in 0, 1, 2 or 5: none, a class token, class
  and distillation tokens, a class token and 4 registers; the first that leaves a square number of patch
  tokens) and reshapes the rest to (N, C, h, w). Non-square grids (a 224×320 image) need an explicit
  ``reshape_transform``.
- Swin (torchvision, timm): a channels-last grid (N, h, w, C) wherever a LayerNorm normalises the last
  dimension; :func:`to_grid` permutes it to (N, C, h, w). ConvNeXt's LayerNorms normalise channels-first
  tensors and are left alone.

The default layer of a transformer (:func:`transformer_layer`) is the last block's first normalisation
(ViT's ``encoder.layers[-1].ln_1``, timm's ``blocks[-1].norm1``, Swin's ``features[-1][-1].norm1``), as the
field explains them. Not its input: a LayerNorm's output does not change when its input is scaled, so
x · ∂f/∂x = 0 there and HiResCAM (or any gradient × activation map) of a LayerNorm's *input* cancels to
float noise.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["is_norm", "to_grid", "transformer_layer"]

_PREFIXES = (0, 1, 2, 5)  # none; class; class + distillation; class + 4 registers


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a LayerNorm (torch's, or any class with a 1-element ``normalized_shape``)."""
    shape = getattr(module, "normalized_shape", None)
    return isinstance(module, nn.LayerNorm) or (
        isinstance(shape, tuple | list) and len(shape) == 1 and "norm" in type(module).__name__.lower()
    )


def _normalised_sizes(module: nn.Module) -> set[int]:
    return {int(m.normalized_shape[0]) for m in module.modules() if is_norm(m)}


def to_grid(module: nn.Module, output: torch.Tensor) -> torch.Tensor | None:
    """``module``'s ``output`` as an (N, C, h, w) grid when it is transformer tokens, else None.

    (N, T, C) tokens lose their prefix tokens and become (N, C, h, w); an (N, h, w, C) grid is permuted
    when a LayerNorm inside ``module`` (or ``module`` itself) normalises its last dimension."""
    if output.ndim == 3:
        n, t, c = output.shape
        for p in (p for p in _PREFIXES if p < t):
            side = math.isqrt(t - p)
            if side > 1 and side * side == t - p:
                return output[:, p:].reshape(n, side, side, c).permute(0, 3, 1, 2)
        return None
    if output.ndim == 4:
        c = output.shape[-1]
        if c in _normalised_sizes(module) and output.shape[1] != c:
            return output.permute(0, 3, 1, 2)
    return None


def transformer_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """The default layer of a vision transformer: its last block's first normalisation; None when
    ``model`` is no transformer (no normalisation layer outputs tokens after its last spatial map).

    Runs one forward of ``example`` with hooks on the normalisation layers only (the caller holds the
    model's :func:`~camwidget.engine.hooks.preserved_state`)."""
    names = {m: n for n, m in model.named_modules() if n and is_norm(m)}
    if len(names) < 2:
        return None
    order: list[str] = []

    def hook(module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and to_grid(module, output) is not None:
            order.append(names[module])

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    if len(order) < 2:
        return None
    block = order[-2].rpartition(".")[0]  # the last block holds the second-to-last norm (then the final norm)
    return next((n for n in order if n.rpartition(".")[0] == block), None)
