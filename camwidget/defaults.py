"""The ImageNet conventions camwidget assumes when the user does not say otherwise.

One owner for the numbers every part needs: the engine (Opti-CAM's black pixel), the metrics (the
perturbation substrates), the widget (undoing the normalisation for display), the audit (its folder
transform) and the demo models all import them from here.

- :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`: torchvision's per-channel RGB normalisation of pixels in
  [0, 1].
- :func:`imagenet_transform`: the standard evaluation preprocessing (resize 256, centre crop 224).
- :func:`imagenet_class_names`: the 1000 class names in index order (no download).
- :func:`class_names_for`: ImageNet's names for a 1000-class model, else ``"class i"``.
- :data:`COLORMAPS`, :data:`DEFAULT_COLORMAP`: the heatmap colormaps the widget, the gallery, the exported
  reports and the figures offer, and the one they start with (viridis: perceptually uniform, readable in
  grey and by colour-blind readers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "COLORMAPS",
    "DEFAULT_COLORMAP",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "class_names_for",
    "imagenet_class_names",
    "imagenet_transform",
]

#: The heatmap colormaps every view offers (the front end draws the same four).
COLORMAPS: tuple[str, ...] = ("viridis", "jet", "inferno", "gray")
#: The colormap every view starts with.
DEFAULT_COLORMAP = "viridis"

#: Per-channel ImageNet mean of RGB pixels in [0, 1] (the torchvision convention).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Per-channel ImageNet standard deviation of RGB pixels in [0, 1] (the torchvision convention).
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _to_rgb(image: Any) -> Any:
    return image.convert("RGB") if hasattr(image, "convert") else image


def imagenet_transform(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Callable[[Any], torch.Tensor]:
    """Standard ImageNet evaluation preprocessing.

    Returns a callable mapping a PIL image (any mode; converted to RGB) to a ``(3, 224, 224)`` float32
    tensor: resize the short side to 256 (bilinear), centre crop 224x224, scale to [0, 1], then
    ``(x - mean) / std`` per channel (defaults: :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).
    """
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Lambda(_to_rgb),
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(tuple(mean), tuple(std)),
        ]
    )


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard (sorted WordNet id) order; no download."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def class_names_for(num_classes: int) -> list[str]:
    """Names for a model's ``num_classes`` outputs: ImageNet's when there are 1000, else ``"class i"``."""
    if num_classes == 1000:
        return imagenet_class_names()
    return [f"class {i}" for i in range(num_classes)]
