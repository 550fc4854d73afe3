"""Eigen-CAM (Muhammad & Yeasin 2020): the activations' first principal component, class-agnostic."""

from __future__ import annotations

import torch

from camwidget.engine.smoothing import first_component
from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["EigenCAM"]


class EigenCAM(CamMethod):
    """Eigen-CAM: project the (hw, C) activation matrix, centred per channel, on its first right singular
    vector (:func:`~camwidget.engine.smoothing.first_component`). The singular vector's sign is arbitrary; it
    is chosen so the map correlates positively with the channel sum of the activations. The target class is
    ignored (the map is the same for every class).
    """

    name = "eigencam"
    label = "Eigen-CAM"
    paper = "Muhammad & Yeasin, IJCNN 2020"
    principal_component = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        return first_component(ctx.activations)
