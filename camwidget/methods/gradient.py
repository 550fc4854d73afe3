"""Gradient-based CAMs: Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, Layer-CAM, Grad-CAM element-wise,
EigenGrad-CAM.

All use one forward and one backward pass that stops at the target layer (no parameter gradients).
Notation: A (N, C, *s) activations (s = (h, w), or (t, h, w) for video), g = d y / d A with y the target's
score (a class's logit, pre-softmax, for a class-index target).
"""

from __future__ import annotations

import torch

from camwidget.engine.smoothing import first_component
from camwidget.methods.base import CamMethod, MethodContext

__all__ = [
    "EigenGradCAM",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "XGradCAM",
    "gradcampp_weights",
]


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

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        g = _gradients(ctx)
        return g.mean(dim=_spatial(g))


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

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        g = _gradients(ctx)
        return gradcampp_weights(g, g * g, g * g * g, ctx.activations)


def gradcampp_weights(
    d1: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor, activations: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM++ channel weights (N, C) from the first, second and third derivative terms (N, C, *s):
    α = d2 / (2·d2 + Σ_ab A_ab · d3 + 1e-6), α = 0 where d2 = 0; w_k = Σ_ij α_ij · ReLU(d1_ij). Grad-CAM++
    passes (g, g², g³); Smooth Grad-CAM++ their averages over noisy copies."""
    dims = _spatial(activations)
    denominator = 2 * d2 + activations.sum(dim=dims, keepdim=True) * d3 + 1e-6
    alpha = torch.where(d2 != 0, d2 / denominator, torch.zeros_like(d2))
    return (alpha * torch.relu(d1)).sum(dim=dims)


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

    def weighted(self, ctx: MethodContext) -> torch.Tensor:
        return _gradients(ctx) * ctx.activations


class XGradCAM(CamMethod):
    """XGrad-CAM (Fu et al. 2020): w_k = Σ_ij g_ij A_ij / (Σ_ij A_ij + 1e-7)."""

    name = "xgradcam"
    label = "XGrad-CAM"
    paper = "Fu et al., BMVC 2020"
    needs_gradients = True

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        g, a = _gradients(ctx), ctx.activations
        return (g * a).sum(dim=_spatial(a)) / (a.sum(dim=_spatial(a)) + 1e-7)


class LayerCAM(CamMethod):
    """Layer-CAM (Jiang et al. 2021): map = ReLU(Σ_k ReLU(g_k) ⊙ A_k)."""

    name = "layercam"
    label = "Layer-CAM"
    paper = "Jiang et al., IEEE TIP 2021"
    needs_gradients = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        return (torch.relu(_gradients(ctx)) * ctx.activations).sum(dim=1)

    def weighted(self, ctx: MethodContext) -> torch.Tensor:
        return torch.relu(_gradients(ctx)) * ctx.activations


class GradCAMElementWise(CamMethod):
    """Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``): map = Σ_k ReLU(g_k ⊙ A_k), the
    positive part of each gradient-activation product summed over channels (HiResCAM clips the sum)."""

    name = "gradcam-elementwise"
    label = "Grad-CAM element-wise"
    paper = "pytorch-grad-cam (Gildenblat et al.), a HiResCAM variant"
    needs_gradients = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        return self.weighted(ctx).sum(dim=1)

    def weighted(self, ctx: MethodContext) -> torch.Tensor:
        return torch.relu(_gradients(ctx) * ctx.activations)


class EigenGradCAM(CamMethod):
    """EigenGrad-CAM (pytorch-grad-cam's ``EigenGradCAM``): the first principal component of the
    gradient-activation products g ⊙ A (each channel centred over positions, projected on the first right
    singular vector), class-discriminative unlike Eigen-CAM. The sign, arbitrary in an SVD, is chosen so the
    map correlates positively with Σ_k g_k ⊙ A_k (pytorch-grad-cam leaves it to the SVD routine)."""

    name = "eigengradcam"
    label = "EigenGrad-CAM"
    paper = "pytorch-grad-cam (Gildenblat et al.), after Muhammad & Yeasin, IJCNN 2020"
    needs_gradients = True
    principal_component = True

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        return first_component(_gradients(ctx) * ctx.activations)
