"""Eigen-CAM (Muhammad & Yeasin 2020): the activations' first principal component, class-agnostic."""

from __future__ import annotations

import torch

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["EigenCAM"]


class EigenCAM(CamMethod):
    """Eigen-CAM: project the (hw, C) activation matrix, centred per channel, on its first right singular
    vector. The singular vector's sign is arbitrary; it is chosen so the map correlates positively with
    the channel-mean activation. The target class is ignored (the map is the same for every class).
    """

    name = "eigencam"
    label = "Eigen-CAM"
    paper = "Muhammad & Yeasin, IJCNN 2020"

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        a = ctx.activations
        n = a.shape[0]
        x = a.flatten(2).transpose(1, 2)  # (N, hw, C) (hw: every spatial position, frames too)
        x = x - x.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
        projection = (x.double() @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # (N, hw)
        mean_map = a.mean(dim=1).reshape(n, -1).double()
        mean_map = mean_map - mean_map.mean(dim=1, keepdim=True)
        sign = torch.sign((projection * mean_map).sum(dim=1, keepdim=True))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        return (projection * sign).float().reshape(n, *a.shape[2:])
