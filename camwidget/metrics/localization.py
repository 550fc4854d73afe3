"""Localisation against ground truth: the energy-based pointing game (Score-CAM) and the pointing game.

Regions are given either as boxes or as boolean masks:

- boxes ``(x0, y0, x1, y1)`` in pixel coordinates of the map, **x0, y0 inclusive and x1, y1 exclusive**
  (Python slicing: the box covers columns x0 <= x < x1 and rows y0 <= y < y1, (x1 − x0)·(y1 − y0) pixels).
  Coordinates are clipped to the map; floats are floored (x0, y0) and ceiled (x1, y1). Pass an (N, 4) tensor
  or sequence (one box per image), or a length-N sequence whose items are (4,) or (k, 4): the region is the
  union of an image's k boxes (k may be 0: an empty region).
- masks: a boolean (N, H, W) tensor (True inside), at the maps' resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["Regions", "energy_pointing_game", "pointing_game", "region_masks"]

Regions = torch.Tensor | Sequence[object]


def _check_maps(maps: object) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a (N, H, W) torch.Tensor, got {type(maps).__name__}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise ValueError(f"maps must have shape (N, H, W) with N >= 1; got {tuple(maps.shape)}")
    if maps.dtype == torch.bool or maps.is_complex():
        raise TypeError(f"maps must be real-valued, got {maps.dtype}")
    maps = maps.detach().float()
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or infinite values; replace them (e.g. torch.nan_to_num) first")
    return maps


def _box_mask(box: torch.Tensor, h: int, w: int, device: torch.device) -> torch.Tensor:
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box {box.tolist()} holds a non-finite coordinate")
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {box.tolist()} must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
    c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    c1, r1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    if c1 > c0 and r1 > r0:
        mask[r0:r1, c0:c1] = True
    return mask


def region_masks(
    regions: Regions, n: int, h: int, w: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Boxes or masks (see the module doc) -> (N, H, W) bool masks on ``device``."""
    if isinstance(regions, torch.Tensor) and regions.dtype == torch.bool:
        if regions.ndim == 4 and regions.shape[1] == 1:
            regions = regions[:, 0]
        if tuple(regions.shape) != (n, h, w):
            raise ValueError(
                f"masks must have shape (N, H, W) = ({n}, {h}, {w}) like the maps; got {tuple(regions.shape)}"
            )
        return regions.to(device)
    if isinstance(regions, torch.Tensor):
        if regions.is_complex() or regions.ndim != 2 or regions.shape[-1] != 4:
            raise ValueError(
                f"boxes must be an (N, 4) tensor of (x0, y0, x1, y1), or masks a bool (N, H, W) tensor; got "
                f"{regions.dtype} of shape {tuple(regions.shape)}"
            )
        per_image: list[torch.Tensor] = [b.view(1, 4) for b in regions]
    elif isinstance(regions, Sequence) and not isinstance(regions, str):
        per_image = []
        for item in regions:
            try:
                b = torch.as_tensor(item, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"a box must be 4 numbers (x0, y0, x1, y1); got {item!r}") from None
            if b.numel() == 0:
                b = b.view(0, 4)
            if b.ndim == 1:
                b = b.view(1, -1)
            if b.ndim != 2 or b.shape[1] != 4:
                raise ValueError(
                    f"a box must be 4 numbers (x0, y0, x1, y1), or (k, 4) boxes; got shape {tuple(b.shape)}"
                )
            per_image.append(b)
    else:
        raise TypeError(f"boxes_or_masks must be boxes or a bool mask tensor; got {type(regions).__name__}")
    if len(per_image) != n:
        raise ValueError(f"got regions for {len(per_image)} images but {n} maps; pass one per map")
    out = torch.zeros(n, h, w, dtype=torch.bool, device=device)
    for i, boxes in enumerate(per_image):
        for box in boxes:
            out[i] |= _box_mask(box, h, w, torch.device(device))
    return out


def energy_pointing_game(maps: torch.Tensor, boxes_or_masks: Regions) -> torch.Tensor:
    """Share of each map's energy inside its region (Score-CAM's energy-based pointing game).

    Args:
        maps: (N, H, W) non-negative maps (e.g. :func:`camwidget.explain`'s, in [0, 1]).
        boxes_or_masks: boxes or (N, H, W) bool masks, see the module doc.

    Returns:
        (N,) float32 in [0, 1]: Σ map inside / Σ map. A map with zero energy scores 0.
    """
    maps = _check_maps(maps)
    if bool((maps < 0).any()):
        raise ValueError("energy_pointing_game needs non-negative maps (apply ReLU or min-max first)")
    n, h, w = maps.shape
    masks = region_masks(boxes_or_masks, n, h, w, maps.device)
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(total))


def pointing_game(maps: torch.Tensor, boxes_or_masks: Regions, *, tolerance: int = 0) -> torch.Tensor:
    """Whether each map's maximum falls inside its region (Zhang et al. 2016's pointing game).

    Args:
        maps: (N, H, W) maps.
        boxes_or_masks: boxes or (N, H, W) bool masks, see the module doc.
        tolerance: pixels of slack: a hit if the maximum lies within this Chebyshev distance of the region
            (the original protocol uses 15 at ImageNet resolution). Default 0.

    Returns:
        (N,) bool. The maximum is the first one in raster order (``argmax``); a map with no positive value
        (all zeros: no evidence) is a miss.
    """
    maps = _check_maps(maps)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels); got {tolerance!r}")
    n, h, w = maps.shape
    masks = region_masks(boxes_or_masks, n, h, w, maps.device)
    if tolerance:
        k = 2 * tolerance + 1
        masks = F.max_pool2d(masks.float().unsqueeze(1), k, stride=1, padding=tolerance)[:, 0] > 0
    flat = maps.flatten(1)
    top = flat.argmax(1)
    hit = masks.flatten(1).gather(1, top.view(-1, 1)).squeeze(1)
    return hit & (flat.amax(1) > 0)
