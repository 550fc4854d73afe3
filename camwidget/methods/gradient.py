"""Gradient-based CAMs: Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, Layer-CAM.

All use one forward and one backward pass that stops at the target layer (no parameter gradients).
Notation: A (N, C, *s) activations (s = (h, w), or (t, h, w) for video), g = d y / d A with y the target's
score (a class's logit, pre-softmax, for a class-index target).
"""

from __future__ import annotations

import torch

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM"]


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    """The spatial dimensions of a (N, C, *s) tensor."""
    return tuple(range(2, t.ndim))


def _gradients(ctx: MethodContext) -> torch.Tensor:
    assert ctx.gradients is not None, "the engine runs a backward pass for needs_gradients methods"
    return ctx.gradients


class GradCAM(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij g_k,ij; map = ReLU(Σ_k w_k A_k)."""

    name = "gradcam"
    label = "Grad-CAM"
    paper = "Selvaraju et al., ICCV 2017"
    needs_gradients = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        g = _gradients(ctx)
        return ctx.weighted_sum(g.mean(dim=_spatial(g)))


class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018), Eq. 19 with the exponential-score closed form.

    With Y = exp(y_c), the higher derivatives of Y reduce to powers of g, giving
    α_ij = g² / (2g² + Σ_ab A_ab · g³) (α = 0 where g = 0, 1e-6 added to the denominator) and
    w_k = Σ_ij α_ij · ReLU(exp(y_c) g_ij). The factor exp(y_c) is a positive constant per image, removed
    by normalisation, so the logit gradient g is used: the variant pytorch-grad-cam implements. (torchcam
    0.5 never applies α, see REFERENCES.)
    """

    name = "gradcam++"
    label = "Grad-CAM++"
    paper = "Chattopadhay et al., WACV 2018"
    needs_gradients = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        g = _gradients(ctx)
        a = ctx.activations
        g2 = g * g
        denominator = 2 * g2 + a.sum(dim=_spatial(a), keepdim=True) * g2 * g + 1e-6
        alpha = torch.where(g != 0, g2 / denominator, torch.zeros_like(g))
        weights = (alpha * torch.relu(g)).sum(dim=_spatial(g))
        return ctx.weighted_sum(weights)


class HiResCAM(CamMethod):
    """HiResCAM (Draelos & Carin 2020): map = ReLU(Σ_k g_k ⊙ A_k), element-wise, no gradient pooling.

    Faithful by construction: on a GAP + linear head at the last convolutional layer it equals CAM, and
    the map's sum is the target logit minus the bias (up to the 1/hw pooling factor).
    """

    name = "hirescam"
    label = "HiResCAM"
    paper = "Draelos & Carin, arXiv:2011.08891"
    needs_gradients = True
    elementwise = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        return (_gradients(ctx) * ctx.activations).sum(dim=1)


class XGradCAM(CamMethod):
    """XGrad-CAM (Fu et al. 2020): w_k = Σ_ij g_ij A_ij / (Σ_ij A_ij + 1e-7)."""

    name = "xgradcam"
    label = "XGrad-CAM"
    paper = "Fu et al., BMVC 2020"
    needs_gradients = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        g, a = _gradients(ctx), ctx.activations
        weights = (g * a).sum(dim=_spatial(a)) / (a.sum(dim=_spatial(a)) + 1e-7)
        return ctx.weighted_sum(weights)


class LayerCAM(CamMethod):
    """Layer-CAM (Jiang et al. 2021): map = ReLU(Σ_k ReLU(g_k) ⊙ A_k)."""

    name = "layercam"
    label = "Layer-CAM"
    paper = "Jiang et al., IEEE TIP 2021"
    needs_gradients = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        return (torch.relu(_gradients(ctx)) * ctx.activations).sum(dim=1)
