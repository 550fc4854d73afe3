"""From a raw map at feature resolution to a displayable map: upsample, ReLU, per-map min-max.

Everything here runs in float32 whatever the model's precision, so an epsilon never underflows, and is
NaN-free: a map with no positive evidence (all values <= 0, or constant) becomes all zeros, never NaN and
never a flat 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["finalize", "minmax", "upsample"]

# A map whose range is below this fraction of its magnitude is numerically constant.
_RELATIVE_FLAT = 1e-6


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of a (N, ...) tensor to [0, 1] by its own min and max (float32).

    Constant maps (range below 1e-6 of their magnitude, or all zero) give all zeros.
    """
    flat = maps.float().flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    scale = torch.maximum(hi.abs(), lo.abs())
    ok = span > _RELATIVE_FLAT * scale
    out = torch.where(ok, (flat - lo) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(flat))
    return out.view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, ...], *, align_corners: bool = False) -> torch.Tensor:
    """Resize (N, h, w) maps to (N, H, W) bilinearly, or (N, t, h, w) volumes to (N, T, H, W) trilinearly;
    float32."""
    maps = maps.float()
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=align_corners)[:, 0]


def finalize(raw: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(N, h, w) signed raw maps -> (N, H, W) float32 maps in [0, 1] ((N, t, h, w) -> (N, T, H, W) for
    video and volumes).

    Bilinear upsampling (align_corners=False) first, then ReLU, then per-map min-max, as the official
    Score-CAM code orders them (upsampling is linear, so the weighted sum may be formed at feature
    resolution first without changing the result).
    """
    return minmax(torch.relu(upsample(raw, size)))
