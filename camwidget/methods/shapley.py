"""ShapleyCAM (Cai, "CAMs as Shapley Value-based Explainers", arXiv:2501.06261): Grad-CAM weights corrected
by the second-order term of a Shapley-value expansion.

w_k = mean_ij (g − ½·H·A)_k,ij and map = Σ_k w_k A_k, with g = ∂y/∂A and H·A the Hessian of y with respect
to A applied to A (pytorch-grad-cam's ``ShapleyCAM``: ``autograd.grad(g, A, grad_outputs=A)``). The engine
computes both in one forward and a double backward pass that stops at the layer.

y pairs with the paper's ReST score: a bare class index (None, an int) is explained as
:class:`~camwidget.targets.ReST` of that class (z_c + log softmax(z)_c). Any explicit target is taken as
given: ``Logit(c)`` (then H·A vanishes wherever the network after the layer is piecewise linear, as in a
ReLU CNN, and ShapleyCAM equals Grad-CAM), ``Probability(c)``, or any differentiable target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from camwidget.methods.base import CamMethod, MethodContext
from camwidget.targets import ClassIndex, Target

__all__ = ["ShapleyCAM"]


class ShapleyCAM(CamMethod):
    """ShapleyCAM: Grad-CAM weights from g − ½·H·A; a bare class index is explained as ReST."""

    name = "shapleycam"
    label = "ShapleyCAM"
    paper = "Cai, arXiv:2501.06261 (2025)"
    needs_gradients = True
    needs_hessian = True

    def method_target(self, target: Target, options: Mapping[str, Any]) -> Target:
        if isinstance(target, ClassIndex) and not target.explicit:
            return ClassIndex(target.classes, "rest", explicit=True)
        return target

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        assert ctx.gradients is not None and ctx.hessian_products is not None
        term = ctx.gradients - 0.5 * ctx.hessian_products
        return term.mean(dim=tuple(range(2, term.ndim)))
