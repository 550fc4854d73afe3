"""Opti-CAM (Zhang et al. 2023): channel weights optimised per image to maximise the masked score.

With F = ReLU(A) (N, K, h, w) fixed, u (N, K) starts at 0.5 and S(u) = n(upsample(Σ_k softmax(u)_k F_k)), n a
per-image min-max. Adam maximises the target's score (by default the class's logit) of the image masked by S
**in pixel space**: x_pix = x·std + mean, masked pixels go to true black, and the result is normalised again
(so a masked pixel is black, not the dataset's mean colour). Each image has its own weights; images are
optimised together in one batch. Every ``iterations // 10`` steps an image stops (its best weights are frozen)
once its loss has risen since the last check, the official code's rule applied per image, so a batch gives the
same maps as one image at a time; the loop ends when every image stopped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["OptiCAM"]


def _soft_minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max of (N, 1, *S) maps (differentiable; 1e-12 guards a flat map)."""
    flat = maps.flatten(1)
    lo = flat.amin(1, keepdim=True)
    hi = flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)


class OptiCAM(CamMethod):
    """Opti-CAM. Options: ``iterations`` (100), ``lr`` (0.01); ``mean``/``std`` come from the explainer.

    Forward/backward passes run on the live model at :meth:`MethodContext.gradient_precision` (fp32 on
    CPU; the native low precision on CUDA unless the caller forces one)."""

    name = "opticam"
    label = "Opti-CAM"
    interactive = False
    paper = "Zhang et al., CVIU 2024 (arXiv:2301.07002)"
    defaults = {"iterations": 100, "lr": 0.01}

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        return self.weighted(ctx).sum(dim=1)

    def weighted(self, ctx: MethodContext) -> torch.Tensor:
        """(N, K, *s) softmax(u)_k · F_k with the optimised weights u."""
        iterations = ctx.options["iterations"]
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1; got {iterations!r}")
        lr = ctx.options["lr"]
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ValueError(f"lr must be a number > 0; got {lr!r}")
        device = ctx.device
        features = torch.relu(ctx.activations)  # (N, K, h, w)
        n, k = features.shape[:2]
        size = tuple(ctx.inputs.shape[2:])
        mode = "bilinear" if len(size) == 2 else "trilinear"
        shape = (1, -1, *[1] * len(size))
        mean = torch.tensor(ctx.mean, device=device).view(shape)
        std = torch.tensor(ctx.std, device=device).view(shape)
        pixels = (ctx.inputs.float() * std + mean).detach()
        u = torch.full((n, k), 0.5, device=device, requires_grad=True)
        optimizer = torch.optim.Adam([u], lr=float(lr))
        best_loss = torch.full((n,), float("inf"), device=device)
        best_u = u.detach().clone()
        precision = ctx.gradient_precision()
        check_every = max(1, iterations // 10)
        last_check = torch.full((n,), float("inf"), device=device)
        active = torch.ones(n, dtype=torch.bool, device=device)
        progress = ctx.progress
        with torch.enable_grad():
            for step in range(iterations):
                saliency = torch.einsum("nk,nk...->n...", torch.softmax(u, dim=1), features)
                mask = _soft_minmax(F.interpolate(saliency.unsqueeze(1), size=size, mode=mode))
                masked = (pixels * mask - mean) / std
                loss_each = -ctx.scores_with_grad(masked, precision)
                current = loss_each.detach()
                improved = active & (current < best_loss)
                best_loss = torch.where(improved, current, best_loss)
                best_u[improved] = u.detach()[improved]
                (grad,) = torch.autograd.grad(loss_each.sum(), u)
                optimizer.zero_grad(set_to_none=True)
                u.grad = grad
                optimizer.step()
                if progress is not None:
                    progress(step + 1, iterations)
                if (step + 1) % check_every == 0:
                    # Per image, as if each ran alone: stop once its loss rose since the last check.
                    active &= current < last_check
                    last_check = current
                    if not bool(active.any()):
                        break
        alpha = torch.softmax(best_u, dim=1)
        return alpha.view(*alpha.shape, *([1] * (features.ndim - 2))) * features
