"""Why a map is empty or noise, said to the user instead of min-max normalising nothing into a picture.

Three ways a map can carry no information, each with its usual cause:

- **zero gradients**: the target's score does not depend on the layer's output at all. Often the layer is
  not on the path to the output, or the head is zero: torchvision's ViT starts its classification head at
  zero, so with ``weights=None`` every gradient is zero at every layer.
- **no positive evidence**: every value of the signed map is <= 0, so after ReLU the map is all zero (the
  class is not supported anywhere at this layer).
- **numerical noise**: an element-wise gradient × activation map (HiResCAM) whose terms cancel to rounding
  error. It happens at a LayerNorm's *input*: the norm's output does not change when its input is scaled,
  so x · ∂f/∂x = 0 for every token; explain the norm's output instead.

:func:`diagnose` returns one message per problem; the :class:`~camwidget.Explainer` issues them as
:class:`MapWarning` and keeps them in ``Explainer.last_warnings`` (the widget shows them).
"""

from __future__ import annotations

import torch

__all__ = ["MapWarning", "diagnose"]

_NOISE = 1e-4  # a map this small against its own terms' magnitude is rounding error


class MapWarning(UserWarning):
    """A map that is all zero or numerical noise (see :mod:`camwidget.engine.diagnostics`)."""


def _images(mask: torch.Tensor) -> str:
    index = mask.nonzero().flatten().tolist()
    return f"image {index[0]}" if len(index) == 1 else f"images {index[:8]}{'...' if len(index) > 8 else ''}"


def diagnose(
    raw: torch.Tensor,
    activations: torch.Tensor,
    gradients: torch.Tensor | None,
    *,
    layer: str,
    method: str,
    target: str,
    elementwise: bool = False,
) -> list[str]:
    """Messages for the maps of ``raw`` (N, *s) that carry no information, each naming the images, the
    reason and what to try. ``elementwise``: the method sums gradient × activation terms per position
    (HiResCAM), so a cancellation of those terms is worth a warning."""
    n = raw.shape[0]
    messages: list[str] = []
    flagged = torch.zeros(n, dtype=torch.bool, device=raw.device)
    if gradients is not None:
        zero = gradients.flatten(1).abs().amax(dim=1) == 0
        if bool(zero.any()):
            flagged |= zero
            messages.append(
                f"{method} map of {_images(zero)} is all zero: the gradient of {target!r} at layer {layer!r} "
                "is zero everywhere. The target may not depend on this layer, or the model's head may be "
                "zero (torchvision's ViT starts its classification head at zero: with weights=None every "
                "gradient is zero until the head is trained or re-initialised). Try another layer "
                "(camwidget.candidate_layers(model)) or check the head."
            )
        if elementwise:
            scale = (gradients * activations).abs().sum(dim=1).flatten(1).amax(dim=1)
            noise = (~flagged) & (scale > 0) & (raw.flatten(1).abs().amax(dim=1) <= _NOISE * scale)
            if bool(noise.any()):
                flagged |= noise
                messages.append(
                    f"{method} map of {_images(noise)} at layer {layer!r} is numerical noise: its gradient × "
                    "activation terms cancel (below 1e-4 of their size). This happens at the input of a "
                    "LayerNorm, whose output does not change when its input is scaled (x · ∂f/∂x = 0). "
                    "Explain the norm's output instead (for transformers, the default layer: the last "
                    "block's first norm), or use Grad-CAM at this layer."
                )
    negative = (~flagged) & (raw.flatten(1).amax(dim=1) <= 0)
    if bool(negative.any()):
        messages.append(
            f"{method} map of {_images(negative)} is all zero: nothing at layer {layer!r} counts for "
            f"{target!r} (every value of the signed map is <= 0, removed by the ReLU). The model sees no "
            "evidence for this target here; try another target, layer or method (raw=True shows the "
            "signed map)."
        )
    return messages
