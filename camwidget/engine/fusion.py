"""Several layers' maps fused into one (``layer=[...]``).

Three rules (``fusion=``):

- ``"mean"`` (default): the mean of the per-layer maps, each upsampled to the input, ReLU'd and min-max
  normalised (:func:`~camwidget.engine.normalize.finalize`), then min-max normalised again. pytorch-grad-cam's
  multi-layer ``BaseCAM`` does the same (it normalises each layer's map before resizing it).
- ``"refine"``: the product of the normalised per-layer maps, min-max normalised: RefineCAM (pytorch-grad-cam
  1.5.7's ``RefineCAM``; a region survives only where every layer sees it, which denoises early layers).
- ``"raw-mean"``: the mean of the raw (signed, unnormalised) per-layer maps upsampled to the input, then
  ReLU and min-max: the layers weigh as much as their raw values (LeGrad's own accumulation over blocks).

One layer gives exactly :func:`~camwidget.engine.normalize.finalize` of its map under every rule.
"""

from __future__ import annotations

import torch

from camwidget.engine.normalize import finalize, minmax, upsample

__all__ = ["FUSIONS", "fuse"]

FUSIONS = ("mean", "refine", "raw-mean")


def fuse(raws: list[torch.Tensor], size: tuple[int, ...], how: str = "mean") -> torch.Tensor:
    """Raw (N, *s_l) maps of several layers -> (N, *size) float32 map in [0, 1] (see the module doc)."""
    if how not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {how!r}")
    if len(raws) == 1:
        return finalize(raws[0], size)
    if how == "raw-mean":
        return finalize(torch.stack([upsample(r, size) for r in raws]).mean(dim=0), size)
    maps = torch.stack([finalize(r, size) for r in raws])
    return minmax(maps.mean(dim=0) if how == "mean" else maps.prod(dim=0))
