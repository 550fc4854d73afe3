"""KPCA-CAM (Karmani et al. 2024): Eigen-CAM with kernel PCA, class-agnostic.

Per image, X = the layer's activations as a (positions, C) matrix, each channel centred over the positions.
The kernel matrix K_ij = k(x_i, x_j) over positions is double-centred (K − 1K/n − K1/n + 1K1/n²) and the map
is its leading eigenvector (largest eigenvalue λ) times √max(λ, 0): the first kernel principal component,
as scikit-learn's ``KernelPCA(n_components=1)`` computes it for pytorch-grad-cam's ``KPCA_CAM``. Kernels
(scikit-learn's definitions and defaults, γ = 1/C unless given): "sigmoid" (default) tanh(γ⟨x, y⟩ + 1),
"rbf" exp(−γ‖x − y‖²), "poly" (γ⟨x, y⟩ + 1)³, "linear" ⟨x, y⟩ (= Eigen-CAM), "cosine" ⟨x, y⟩/(‖x‖‖y‖).
An eigenvector's sign is arbitrary; it is chosen so the map correlates positively with the channel sum of
the activations (scikit-learn fixes it by its largest entry instead). Cost: an eigendecomposition of a
(positions × positions) float64 matrix per image, O(positions³).
"""

from __future__ import annotations

import torch

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["KERNELS", "KPCACAM", "kernel_matrix"]

KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")


def kernel_matrix(x: torch.Tensor, kernel: str, gamma: float | None) -> torch.Tensor:
    """(N, P, C) points -> (N, P, P) kernel matrices (scikit-learn's kernels and defaults)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
    g = 1.0 / x.shape[-1] if gamma is None else float(gamma)
    dot = x @ x.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(g * dot + 1.0)
    if kernel == "poly":
        return (g * dot + 1.0) ** 3
    if kernel == "linear":
        return dot
    if kernel == "cosine":
        norm = x.norm(dim=-1).clamp_min(1e-300)
        return dot / (norm.unsqueeze(-1) * norm.unsqueeze(-2))
    sq = (x * x).sum(-1)
    return torch.exp(-g * (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * dot).clamp_min(0))


class KPCACAM(CamMethod):
    """KPCA-CAM. Options: ``kernel`` ("sigmoid", "rbf", "poly", "linear", "cosine"), ``gamma`` (None: 1/C)."""

    name = "kpcacam"
    label = "KPCA-CAM"
    paper = "Karmani et al., arXiv:2410.00267"
    principal_component = True
    defaults = {"kernel": "sigmoid", "gamma": None}

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        gamma = ctx.options["gamma"]
        if gamma is not None and (
            isinstance(gamma, bool) or not isinstance(gamma, int | float) or gamma <= 0
        ):
            raise ValueError(f"gamma must be None or a number > 0; got {gamma!r}")
        a = ctx.activations
        n = a.shape[0]
        x = torch.nan_to_num(a.double()).flatten(2).transpose(1, 2)  # (N, positions, C)
        x = x - x.mean(dim=1, keepdim=True)
        k = kernel_matrix(x, ctx.options["kernel"], gamma)
        k = k - k.mean(dim=1, keepdim=True) - k.mean(dim=2, keepdim=True) + k.mean(dim=(1, 2), keepdim=True)
        values, vectors = torch.linalg.eigh(k)
        projection = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()  # (N, positions)
        reference = a.double().sum(dim=1).reshape(n, -1)
        reference = reference - reference.mean(dim=1, keepdim=True)
        sign = torch.sign((projection * reference).sum(dim=1, keepdim=True))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        return (projection * sign).float().reshape(n, *a.shape[2:])
