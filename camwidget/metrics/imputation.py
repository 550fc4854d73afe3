"""Noisy linear imputation (ROAD, Rong et al., ICML 2022): fill removed pixels from their neighbours.

Each removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4 edge neighbours, 1/12
for the 4 corner neighbours; neighbours outside the image are left out and the weights of the others are
not renormalised: the pixel's own weight is the sum of its in-image neighbours' weights). Removed
neighbours are unknowns too, so the removed pixels of one image solve one sparse linear system per image,
the same for every channel:

    s_i · u_i − Σ_{j removed} w_ij · u_j = Σ_{j kept} w_ij · x_j        for every removed pixel i,

with s_i = Σ_{j in image} w_ij. Then ``noise`` · N(0, 1) is added to every imputed value (in the model's
input space), as ROAD's reference code does (noise = 0.01 there).

The system is symmetric and positive definite, and has a unique solution, exactly when at least one pixel
of the image is kept: every connected group of removed pixels then borders a kept pixel, which makes its
block irreducibly diagonally dominant. With *every* pixel removed it is singular (constant images solve the
homogeneous system): :func:`linear_imputation` refuses that case with a ``ValueError`` (pytorch-grad-cam's
``NoisyLinearImputer`` returns NaN there).

Solvers:

- ``"scipy"`` (default): the system built vectorised, factorised by SuperLU (``scipy.sparse.linalg.splu``)
  with the minimum-degree ordering of AᵀA + A in symmetric mode and no pivoting (the matrix is SPD), in
  float64, on the CPU; the images' systems run in a pool of ``torch.get_num_threads()`` threads (SuperLU
  releases the GIL). Imputed images are then moved back to the inputs' device.
- ``"cg"``: matrix-free conjugate gradients on the inputs' device, float64, Jacobi-preconditioned, all
  systems of a chunk at once (the stencil is a 3×3 convolution). Made for accelerators; on a 2-core AVX2
  CPU it was ~35× slower than ``"scipy"`` (9 systems of a 224×224 image: 66 s against 1.8 s).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["NEIGHBOUR_WEIGHTS", "SOLVERS", "check_solver", "linear_imputation", "new_seed"]

SOLVERS = ("scipy", "cg")

NEIGHBOUR_WEIGHTS: tuple[tuple[tuple[int, int], float], ...] = (
    ((-1, -1), 1 / 12),
    ((-1, 0), 1 / 6),
    ((-1, 1), 1 / 12),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((1, 1), 1 / 12),
)
"""((row offset, column offset), weight) of the 8 neighbours in ROAD's imputation; the weights sum to 1."""

_CG_TOLERANCE = 1e-10  # relative residual, float64
_CG_CHUNK = 32  # systems solved together by "cg" (about 8 float64 copies of each image in memory)


def new_seed() -> int:
    """A fresh 63-bit seed from the operating system (leaves torch's global random state alone)."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def check_solver(solver: object) -> str:
    """``solver`` if it is one of :data:`SOLVERS`, else a ``ValueError``."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}; got {solver!r}")
    return str(solver)


def _check_solvable(removed: torch.Tensor) -> None:
    everything = removed.flatten(1).all(1)
    if bool(everything.any()):
        item = int(everything.nonzero()[0])
        raise ValueError(
            f"imputation {item} removes every pixel: no kept pixel is left to impute from, so the linear "
            "system is singular (keep at least one pixel)"
        )


def linear_imputation(
    images: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    solver: str = "scipy",
    done: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """ROAD's noisy linear imputation of the ``removed`` pixels of each image (see the module doc).

    Args:
        images: (B, C, H, W) float images in the model's input space.
        removed: (B, H, W) bool, True where a pixel is imputed; every image must keep at least one pixel.
        noise: standard deviation of the Gaussian noise added to each imputed value, >= 0. Default 0.
        generator: draws the noise (on ``images``' device), one (C, H, W) draw per image in order, so the
            noise of an image does not depend on how a call is split into chunks. None: torch's global
            generator.
        solver: "scipy" (default) or "cg", see the module doc.
        done: called with the number of images just imputed (for progress reports), from the caller's
            thread.

    Returns:
        (B, C, H, W) images of ``images``' dtype and device: kept pixels bit-identical, removed pixels
        imputed.

    Raises:
        ValueError: an image with every pixel removed (singular system), or mismatched shapes.
    """
    solver = check_solver(solver)
    if images.ndim != 4 or removed.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"images must be (B, C, H, W) and removed (B, H, W); got {tuple(images.shape)} and "
            f"{tuple(removed.shape)}"
        )
    removed = removed.to(device=images.device, dtype=torch.bool)
    _check_solvable(removed)
    if solver == "scipy":
        out = _impute_scipy(images, removed, done)
    else:
        out = _impute_cg(images, removed, done)
    if noise:
        for b in range(images.shape[0]):
            draw = torch.randn(
                images.shape[1:], generator=generator, device=images.device, dtype=images.dtype
            )
            out[b] += noise * draw * removed[b]
    return out


# -- scipy: sparse direct solve on the CPU ---------------------------------------------------------------
def _system(image: np.ndarray, removed: np.ndarray, h: int, w: int) -> tuple[object, np.ndarray, np.ndarray]:
    """(A, b, index) for one image: A (k, k) CSC float64, b (k, C) float64, index (k,) flat pixel indices."""
    from scipy.sparse import csc_matrix

    index = np.flatnonzero(removed)
    k = index.size
    unknown = np.full(h * w, -1, dtype=np.int64)
    unknown[index] = np.arange(k)
    row, col = np.divmod(index, w)
    diagonal = np.zeros(k)
    rhs = np.zeros((k, image.shape[0]))
    rows, cols, values = [np.arange(k)], [np.arange(k)], []
    for (dr, dc), weight in NEIGHBOUR_WEIGHTS:
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        source = np.flatnonzero(inside)
        neighbour = r[inside] * w + c[inside]
        diagonal[source] += weight
        is_unknown = removed[neighbour]
        rows.append(source[is_unknown])
        cols.append(unknown[neighbour[is_unknown]])
        values.append(np.full(rows[-1].size, -weight))
        known = ~is_unknown
        rhs[source[known]] += weight * image[:, neighbour[known]].T
    a = csc_matrix(
        (np.concatenate([diagonal, *values]), (np.concatenate(rows), np.concatenate(cols))), shape=(k, k)
    )
    return a, rhs, index


def _solve_one(image: np.ndarray, removed: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.sparse.linalg import splu

    a, rhs, index = _system(image, removed, h, w)
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return index, lu.solve(rhs)


def _impute_scipy(
    images: torch.Tensor, removed: torch.Tensor, done: Callable[[int], None] | None
) -> torch.Tensor:
    b, c, h, w = images.shape
    # The solver works on the CPU in float64 (torch has no sparse solver there); one copy of the images.
    pixels = images.detach().to("cpu", torch.float64).reshape(b, c, h * w).numpy()
    masks = removed.to("cpu").reshape(b, h * w).numpy()
    out = images.detach().clone()
    flat = out.view(b, c, h * w)
    threads = max(1, min(b, torch.get_num_threads()))
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(_solve_one, pixels[i], masks[i], h, w) for i in range(b)]
        for i, future in enumerate(futures):
            index, solution = future.result()
            values = torch.from_numpy(solution.T).to(device=images.device, dtype=images.dtype)
            flat[i, :, torch.from_numpy(index).to(images.device)] = values
            if done is not None:
                done(1)
    return out


# -- cg: matrix-free conjugate gradients on the images' device ------------------------------------------
def _stencil(device: torch.device) -> torch.Tensor:
    k = torch.zeros(3, 3, dtype=torch.float64)
    for (dr, dc), weight in NEIGHBOUR_WEIGHTS:
        k[1 + dr, 1 + dc] = weight
    return k.view(1, 1, 3, 3).to(device)


def _impute_cg(
    images: torch.Tensor, removed: torch.Tensor, done: Callable[[int], None] | None
) -> torch.Tensor:
    b, c, h, w = images.shape
    out = images.detach().clone()
    kernel = _stencil(images.device)
    own = F.conv2d(torch.ones(1, 1, h, w, dtype=torch.float64, device=images.device), kernel, padding=1)
    max_iterations = 20 * (h + w) + 100
    per_chunk = max(1, _CG_CHUNK // c)
    for start in range(0, b, per_chunk):
        stop = min(b, start + per_chunk)
        n = (stop - start) * c
        x = images[start:stop].detach().to(torch.float64).reshape(n, 1, h, w)
        m = removed[start:stop].to(torch.float64).repeat_interleave(c, 0).unsqueeze(1)
        u = _conjugate_gradients(x, m, kernel, own, max_iterations)
        filled = torch.where(m > 0, u, x).reshape(stop - start, c, h, w)
        out[start:stop] = filled.to(images.dtype)
        if done is not None:
            done(stop - start)
    return out


def _conjugate_gradients(
    x: torch.Tensor, m: torch.Tensor, kernel: torch.Tensor, own: torch.Tensor, max_iterations: int
) -> torch.Tensor:
    """Solve (s·u − K∗u) = K∗(x·(1 − m)) on the pixels where m = 1, all (n, 1, H, W) systems at once."""

    def operator(v: torch.Tensor) -> torch.Tensor:
        return (own * v - F.conv2d(v, kernel, padding=1)) * m

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum((1, 2, 3), keepdim=True)

    rhs = F.conv2d(x * (1 - m), kernel, padding=1) * m
    u = torch.zeros_like(rhs)
    r = rhs.clone()
    z = r / own
    p = z.clone()
    rz = dot(r, z)
    target = _CG_TOLERANCE * dot(rhs, rhs).sqrt()
    tiny = torch.finfo(torch.float64).tiny
    for iteration in range(max_iterations):
        if iteration % 16 == 0 and bool((dot(r, r).sqrt() <= target).all()):
            return u
        ap = operator(p)
        alpha = rz / dot(p, ap).clamp_min(tiny)
        u += alpha * p
        r -= alpha * ap
        z = r / own
        rz_next = dot(r, z)
        p = z + rz_next / rz.clamp_min(tiny) * p
        rz = rz_next
    if bool((dot(r, r).sqrt() <= target).all()):
        return u
    worst = float((dot(r, r).sqrt() / dot(rhs, rhs).sqrt().clamp_min(tiny)).max())
    raise RuntimeError(
        f"ROAD's imputation did not converge with solver='cg' in {max_iterations} iterations (relative "
        f"residual {worst:.2e}); use solver='scipy'"
    )
