"""How concentrated a map is, from the map alone (no model, no forward pass).

With a = |map| flattened to n values, per map:

- :func:`sparseness` -- the Gini index of a (Chalasani et al., ICML 2020, "Concise explanations of neural
  networks using adversarial training"; Quantus's ``Sparseness``): with a sorted ascending,
  G = Σ_k (2k − n − 1)·a_(k) / (n·Σ_k a_(k)), k = 1..n. 0 for a uniform map, (n − 1)/n for a single
  non-zero pixel. Higher = sparser = more concise.
- :func:`complexity` -- the Shannon entropy of the fractional contributions p_i = a_i / Σ_j a_j in nats
  (natural log; Bhatt, Weller and Moura, IJCAI 2020, "Evaluating and aggregating feature-based model
  explanations"; Quantus's ``Complexity``): H = −Σ p_i ln p_i with 0·ln 0 = 0. 0 for a single pixel,
  ln n for a uniform map. Lower = less complex.
- :func:`l1_complexity` -- the mean of a (the "complexity" of Poppi et al., CVPRW 2021, and of
  pytorch-grad-cam's ``Complexity``): in [0, 1] for maps in [0, 1]. Lower = smaller explanation.

Each map is scored on its own: unlike Quantus, no batch-wide maximum rescales the maps and no 1e-7 is added,
so a map's score does not depend on the other maps in the call. An all-zero map has no distribution: its
sparseness and complexity are NaN (its L1 complexity is 0).
"""

from __future__ import annotations

import torch

__all__ = ["complexity", "l1_complexity", "sparseness"]


def _flat(maps: object) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a (N, H, W) torch.Tensor, got {type(maps).__name__}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim < 2 or maps.shape[0] == 0:
        raise ValueError(f"maps must have shape (N, H, W) (or (N, ...)) with N >= 1; got {tuple(maps.shape)}")
    if maps.dtype == torch.bool or maps.is_complex() or not maps.is_floating_point():
        raise TypeError(f"maps must be a real float tensor, got {maps.dtype}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or infinite values; replace them (e.g. torch.nan_to_num) first")
    return maps.detach().flatten(1).abs().double()


def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of each map's absolute values: (N, H, W) -> (N,) float32 in [0, 1), NaN for a zero map.

    G = Σ_k (2k − n − 1)·a_(k) / (n·Σ a), a sorted ascending, k = 1..n (see the module doc). Computed in
    float64 on the maps' device.
    """
    a = torch.sort(_flat(maps), dim=1).values
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=torch.float64, device=a.device)
    total = a.sum(1)
    gini = ((2 * k - n - 1) * a).sum(1) / (n * total)
    return torch.where(total > 0, gini, torch.full_like(total, float("nan"))).float()


def complexity(maps: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each map's normalised absolute values: (N, H, W) -> (N,) float32 in [0, ln(H·W)],
    NaN for a zero map.

    H = −Σ p_i ln p_i with p = |map| / Σ|map| and 0·ln 0 = 0 (see the module doc). float64 on the maps'
    device.
    """
    a = _flat(maps)
    total = a.sum(1, keepdim=True)
    p = a / torch.where(total > 0, total, torch.ones_like(total))
    terms = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    entropy = -terms.sum(1)
    return torch.where(total[:, 0] > 0, entropy, torch.full_like(entropy, float("nan"))).float()


def l1_complexity(maps: torch.Tensor) -> torch.Tensor:
    """Mean absolute value of each map: (N, H, W) -> (N,) float32 (in [0, 1] for maps in [0, 1]).

    Poppi et al.'s and pytorch-grad-cam's "complexity" (used by :func:`~camwidget.metrics.coherency.adcc`).
    """
    return _flat(maps).mean(1).float()
