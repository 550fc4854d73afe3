"""Smoothing of maps: the first principal component (``eigen_smooth``) and test-time augmentation
(``aug_smooth``).

``eigen_smooth`` replaces a method's map Σ_k T_k (T the (N, C, *s) per-channel terms a method sums, e.g.
w_k·A_k) by the projection of T on its first principal component: T is read as an (hw, C) matrix per image,
each channel centred over the positions, and projected on its first right singular vector (float64 SVD), as
pytorch-grad-cam's ``get_2d_projection``. A singular vector's sign is arbitrary (pytorch-grad-cam leaves it to
the SVD routine); here it is chosen so that the projection correlates positively with the plain map Σ_k T_k.

``aug_smooth`` explains the image as it is and horizontally flipped, each times 0.9, 1 and 1.1 (the model's
input tensor is multiplied, as pytorch-grad-cam does with ttach's ``HorizontalFlip`` and ``Multiply``), and
optionally at other spatial scales; each map is normalised to [0, 1], flipped and resized back, and the maps
are averaged (then min-max scaled again, so the result keeps the engine's [0, 1] range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AUG_FACTORS", "Augmentation", "augmentations", "first_component"]

AUG_FACTORS = (0.9, 1.0, 1.1)
"""The pixel-value factors of ``aug_smooth`` (pytorch-grad-cam's ``tta.Multiply(factors=[0.9, 1, 1.1])``)."""


def first_component(terms: torch.Tensor) -> torch.Tensor:
    """(N, C, *s) per-channel terms -> (N, *s) float32 projection on their first principal component.

    Per image: X = terms as a (positions, C) matrix, each column centred; the map is X·v with v the first
    right singular vector of X (float64), its sign chosen so the map correlates positively with Σ_k terms_k
    (a map with zero correlation keeps the SVD's sign). NaNs count as 0.
    """
    n = terms.shape[0]
    x = torch.nan_to_num(terms.double()).flatten(2).transpose(1, 2)  # (N, positions, C)
    x = x - x.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    projection = (x @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # (N, positions)
    reference = torch.nan_to_num(terms.double()).sum(dim=1).reshape(n, -1)
    reference = reference - reference.mean(dim=1, keepdim=True)
    sign = torch.sign((projection * reference).sum(dim=1, keepdim=True))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign).float().reshape(n, *terms.shape[2:])


@dataclass(frozen=True)
class Augmentation:
    """One test-time augmentation: horizontal flip or not, a pixel-value factor and a spatial scale."""

    flip: bool
    factor: float
    scale: float = 1.0

    @property
    def identity(self) -> bool:
        return not self.flip and self.factor == 1.0 and self.scale == 1.0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *S) input -> the augmented input (flipped along the last axis, scaled, multiplied)."""
        if self.scale != 1.0:
            size = tuple(max(1, round(s * self.scale)) for s in x.shape[2:])
            mode = "bilinear" if len(size) == 2 else "trilinear"
            x = F.interpolate(x, size=size, mode=mode, align_corners=False)
        if self.flip:
            x = x.flip(-1)
        return x * self.factor if self.factor != 1.0 else x

    def undo(self, maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """(N, *S') maps of the augmented input -> (N, *size) maps in the original input's frame."""
        if self.flip:
            maps = maps.flip(-1)
        if tuple(maps.shape[1:]) != tuple(size):
            mode = "bilinear" if len(size) == 2 else "trilinear"
            maps = F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=False)[:, 0]
        return maps


def augmentations(scales: Sequence[float] = (1.0,)) -> list[Augmentation]:
    """The ``aug_smooth`` set: every scale × (no flip, horizontal flip) × factors 0.9, 1, 1.1, the
    identity first (the target's predicted class is fixed on it)."""
    out = [
        Augmentation(flip, factor, float(scale))
        for scale in scales
        for flip in (False, True)
        for factor in AUG_FACTORS
    ]
    out.sort(key=lambda a: not a.identity)
    return out
