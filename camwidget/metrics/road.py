"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci, Kasneci, ICML 2022).

Remove a share of the pixels the map ranks, fill them by :mod:`noisy linear imputation
<camwidget.metrics.imputation>` (so the removal leaks no shape information through the mask), and record
how the target class's softmax probability changes. Removing the *most* relevant pixels should make it
fall (more negative = more faithful); removing the *least* relevant should leave it (closer to 0 = more
faithful).

**Percentile convention: pytorch-grad-cam's, the reverse of the paper's axis.** For a percentile p (in
(0, 100]) and the map's values v:

- ``order="most"`` imputes the pixels with v >= percentile_p(v): p = 10 removes the top 90% of pixels,
  p = 90 the top 10% (the paper's MoRF axis counts the share *removed*, so its 10% is this 90);
- ``order="least"`` imputes the pixels with −v >= percentile_p(−v), the least relevant 100 − p percent.

percentile_p is NumPy's default (linear interpolation between order statistics, computed in the maps'
float32 as ``numpy.percentile`` computes it), so the pixels chosen are exactly those of pytorch-grad-cam's
``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst``. Pixels tied with the threshold are all imputed.

**Ties.** Flat maps (a ReLU's zeros, a saturated maximum) can put every pixel at or above the threshold:
then nothing is left to impute from and the linear system is singular. ``ties="error"`` (default) raises a
``ValueError`` naming the image and percentile before any forward pass (pytorch-grad-cam silently returns
NaN); ``ties="raster"`` ranks tied pixels by raster order (row by row, the earlier pixel more relevant),
as :func:`~camwidget.metrics.insertion_deletion.saliency_ranks` does, so each percentile removes its
exact share of pixels.

The result is an (N, P) tensor of p_after − p_before: pytorch-grad-cam's ``ROADMostRelevantFirst`` /
``ROADLeastRelevantFirst`` with ``ClassifierOutputSoftmaxTarget``, one column per percentile (their
``...Average`` classes are the row means). With ``noise=0`` the imputations are pytorch-grad-cam's with its
noise removed; with noise, the draw comes from ``seed``.

Speed: the imputations of each group of images are solved in a thread pool (see
:mod:`~camwidget.metrics.imputation`), then the originals and all imputed images go through
:class:`~camwidget.engine.batching.ForwardRunner` as one stream (large batches, ``inference_mode``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from camwidget.engine.batching import ForwardRunner
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import Target, check_call
from camwidget.metrics._common import check_maps, model_device, score_reference
from camwidget.metrics.imputation import check_solver, linear_imputation, new_seed
from camwidget.metrics.insertion_deletion import saliency_ranks

__all__ = [
    "DEFAULT_PERCENTILES",
    "ORDERS",
    "TIES",
    "percentile_thresholds",
    "road",
    "road_images",
    "road_masks",
]

DEFAULT_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ORDERS = ("most", "least")
TIES = ("error", "raster")
_GROUP_BYTES = 256 * 2**20  # imputed images held at once (float32), per group of images


# -- argument checks ---------------------------------------------------------------------------------------
def check_percentiles(percentiles: object) -> tuple[float, ...]:
    """A non-empty tuple of numbers in (0, 100]; a single number is accepted."""
    if isinstance(percentiles, int | float) and not isinstance(percentiles, bool):
        percentiles = (percentiles,)
    try:
        values = tuple(percentiles)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            f"percentiles must be numbers in (0, 100], e.g. (10, 20, ..., 90); got {percentiles!r}"
        ) from None
    bad = [
        p
        for p in values
        if isinstance(p, bool) or not isinstance(p, int | float) or not (0 < p <= 100) or math.isnan(p)
    ]
    if not values or bad:
        raise ValueError(
            f"percentiles must be a non-empty sequence of numbers in (0, 100], e.g. (10, 20, ..., 90); "
            f"got {percentiles!r}"
        )
    return values


def check_order(order: object) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be 'most' or 'least' (relevant pixels removed first); got {order!r}")
    return str(order)


def _check_ties(ties: object) -> str:
    if ties not in TIES:
        raise ValueError(f"ties must be 'error' or 'raster'; got {ties!r}")
    return str(ties)


def _check_noise(noise: object) -> float:
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not (0 <= noise < math.inf):
        raise ValueError(f"noise must be a finite number >= 0 (ROAD: 0.01); got {noise!r}")
    return float(noise)


def _check_seed(seed: object) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0; got {seed!r}")
    return seed


# -- which pixels are removed ------------------------------------------------------------------------------
def percentile_thresholds(values: torch.Tensor, percentiles: Sequence[float]) -> torch.Tensor:
    """``numpy.percentile(v, p)`` (linear method) of each row of ``values`` for each p, in ``values``' dtype.

    Args:
        values: (N, M) float tensor. percentiles: P numbers in [0, 100].

    Returns:
        (N, P) thresholds, bit-identical to NumPy's for float32 and float64 rows and a Python number p: the
        index (M − 1)·p/100 in float64, and the interpolation a + (b − a)·g (or b − (b − a)·(1 − g) for
        g >= 0.5) in the rows' dtype.
    """
    m = values.shape[1]
    ordered = torch.sort(values, dim=1).values
    columns = []
    for p in percentiles:
        virtual = (m - 1) * (p / 100)
        lo = min(max(math.floor(virtual), 0), m - 1)
        hi = min(lo + 1, m - 1)
        gamma = virtual - lo if virtual < m - 1 else 0.0
        a, b = ordered[:, lo], ordered[:, hi]
        diff = b - a
        if gamma >= 0.5:
            columns.append(b - diff * torch.tensor(1 - gamma, dtype=values.dtype, device=values.device))
        else:
            columns.append(a + diff * torch.tensor(gamma, dtype=values.dtype, device=values.device))
    return torch.stack(columns, dim=1)


def road_masks(
    maps: torch.Tensor,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    order: str = "most",
    *,
    ties: str = "error",
) -> torch.Tensor:
    """The pixels :func:`road` imputes: (N, H, W) maps -> (N, P, H, W) bool, True = removed and imputed.

    See the module doc for the percentile convention and ``ties``. No model and no forward pass.

    Raises:
        ValueError: with ``ties="error"``, a (map, percentile) whose ties put every pixel at or above the
            threshold (nothing left to impute from); bad arguments.
    """
    percentiles = check_percentiles(percentiles)
    order = check_order(order)
    ties = _check_ties(ties)
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError(
            f"maps must be a (N, H, W) tensor; got {getattr(maps, 'shape', type(maps).__name__)}"
        )
    if not maps.is_floating_point():
        raise TypeError(f"maps must be a float tensor; got {maps.dtype}")
    n, h, w = maps.shape
    if ties == "raster":  # distinct values: h·w − 1 for the most relevant pixel ... 0 for the least
        values = (h * w - 1 - saliency_ranks(maps)).to(torch.float64).flatten(1)
    else:
        values = maps.detach().flatten(1)
    if order == "least":
        values = -values
    thresholds = percentile_thresholds(values, percentiles)
    removed = values.unsqueeze(1) >= thresholds.unsqueeze(2)  # (N, P, H·W)
    everything = removed.all(2)
    if bool(everything.any()):
        i, k = (int(v) for v in everything.nonzero()[0])
        extreme = values[i].min()
        share = float((values[i] == extreme).float().mean()) * 100
        which = "minimum" if order == "most" else "maximum"
        raise ValueError(
            f"ROAD cannot score map {i} at percentile {percentiles[k]:g} (order={order!r}): {share:.1f}% of "
            f"its pixels tie at the map's {which} ({float(maps[i].flatten()[values[i].argmin()]):.4g}), so "
            f"every pixel lies at or above the percentile and would be imputed, leaving no pixel to impute "
            f"from (the linear system is singular; pytorch-grad-cam returns NaN). Use percentiles above "
            f"{share:.0f}, the other order, or ties='raster' to rank tied pixels in raster order"
        )
    return removed.view(n, len(percentiles), h, w)


def road_images(
    inputs: torch.Tensor,
    maps: torch.Tensor,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    order: str = "most",
    *,
    noise: float = 0.01,
    seed: int | None = None,
    ties: str = "error",
    solver: str = "scipy",
) -> torch.Tensor:
    """The images :func:`road` scores: (N, C, H, W) inputs -> (N, P, C, H, W) imputed inputs.

    No model, no forward pass: for looking at what the model is shown. Arguments as in :func:`road`; the
    same ``seed`` gives the same images as :func:`road` uses.
    """
    from camwidget.engine.validation import check_inputs

    inputs = check_inputs(inputs)
    maps = check_maps(maps, inputs)
    removed = road_masks(maps, percentiles, order, ties=ties)
    generator = _generator(_check_seed(seed), inputs.device)
    n, p = removed.shape[:2]
    x = inputs.detach().unsqueeze(1).expand(n, p, *inputs.shape[1:]).reshape(n * p, *inputs.shape[1:])
    out = linear_imputation(
        x, removed.flatten(0, 1), noise=_check_noise(noise), generator=generator, solver=check_solver(solver)
    )
    return out.view(n, p, *inputs.shape[1:])


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(new_seed() if seed is None else seed)
    return generator


# -- the metric --------------------------------------------------------------------------------------------
def road(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    order: str = "most",
    noise: float = 0.01,
    seed: int | None = None,
    *,
    ties: str = "error",
    solver: str = "scipy",
    precision: str = "auto",
    batch_size: int | str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """ROAD scores: the target's softmax probability after imputing a percentile of pixels, minus before.

    Args:
        model: classifier returning (N, K) logits, on any device; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        maps: (N, H, W) (or (N, 1, H, W)) saliency maps at the input resolution, any real values; only their
            order matters.
        target: None (default: the class predicted on each original image, fp32 forward), an int, or N
            ints.
        percentiles: P numbers in (0, 100]; default (10, 20, ..., 90). **pytorch-grad-cam's convention,
            the reverse of the paper's axis**: with ``order="most"``, the pixels at or above the p-th
            percentile of the map are imputed (p = 10 removes 90% of the pixels); with ``"least"``, those
            at or below the (100 − p)-th.
        order: "most" (default: most relevant first, MoRF; lower = more faithful) or "least" (least
            relevant first, LeRF; closer to 0 = more faithful).
        noise: standard deviation of the noise added to imputed values, in the model's input space.
            Default 0.01 (ROAD's and pytorch-grad-cam's). 0 gives pytorch-grad-cam's values with its noise
            removed.
        seed: seeds the noise (one draw per image and percentile, in order). None (default): a fresh seed
            from the operating system (torch's global random state is not touched).
        ties: "error" (default) or "raster", see the module doc.
        solver: "scipy" (default, CPU) or "cg" (on the model's device), see
            :mod:`~camwidget.metrics.imputation`.
        precision, batch_size: for the N·(P + 1) forwards, see
            :class:`~camwidget.engine.batching.ForwardRunner`. Use ``precision="fp32"`` for numbers that
            match other fp32 code to the last digits.
        progress: ``progress(done, total)`` over N·P imputations then N·(P + 1) forwards (total
            N·(2P + 1)); raise :class:`~camwidget.engine.batching.Cancelled` in it to stop.

    Returns:
        (N, P) float32 tensor on the inputs' device: p(target | imputed) − p(target | original), in
        [−1, 1].

    Raises:
        ValueError: maps of the wrong shape or not finite, percentiles outside (0, 100], an unknown order,
            ties or solver, negative noise, a target out of range, ties that leave nothing to impute from
            (see ``ties``). All checked before any forward pass; the model is untouched.
    """
    model, inputs, wanted = check_call(model, inputs, target, precision=precision, batch_size=batch_size)
    maps = check_maps(maps, inputs)
    percentiles = check_percentiles(percentiles)
    noise = _check_noise(noise)
    seed = _check_seed(seed)
    solver = check_solver(solver)
    removed_all = road_masks(maps, percentiles, order, ties=ties)  # raises on unsolvable ties
    device = model_device(model)
    out_device = inputs.device
    x = inputs.detach().to(device)
    removed_all = removed_all.to(device)
    n, c, h, w = x.shape
    p = len(percentiles)
    per_image = p + 1  # the original, then its P imputations
    total = n * (2 * p + 1)
    group = max(1, _GROUP_BYTES // (p * c * h * w * x.element_size()))
    generator = _generator(seed, device)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    with preserved_state(model):
        scorer = score_reference(model, x, wanted)
        scores = torch.empty(n, per_image, device=device)

        def forwarded(count: int, _: int) -> None:
            if progress is not None:
                progress(done + count, total)

        if scorer.per_image:  # any target but a class: each image's imputations in a stream of their own
            group = 1
        runner: ForwardRunner | None = None
        for g0 in range(0, n, group):
            g1 = min(n, g0 + group)
            if runner is None or scorer.per_image:
                runner = ForwardRunner(
                    model,
                    precision=precision,
                    batch_size=batch_size,
                    progress=forwarded,
                    **scorer.stream(g0 if scorer.per_image else None, x),
                )
            originals = x[g0:g1]
            repeated = originals.unsqueeze(1).expand(g1 - g0, p, c, h, w).reshape(-1, c, h, w)
            imputed = linear_imputation(
                repeated,
                removed_all[g0:g1].flatten(0, 1),
                noise=noise,
                generator=generator,
                solver=solver,
                done=advance,
            ).view(g1 - g0, p, c, h, w)

            def make_batch(start: int, stop: int, originals=originals, imputed=imputed) -> torch.Tensor:
                j = torch.arange(start, stop, device=device)
                image, k = j // per_image, j % per_image
                batch = imputed[image, (k - 1).clamp_min(0)]
                keep = (k == 0).view(-1, 1, 1, 1)
                return torch.where(keep, originals[image], batch)

            out = runner.logits(make_batch, (g1 - g0) * per_image)
            if not scorer.per_image:
                assert scorer.classes is not None
                out = scorer.from_logits(out, scorer.classes[g0:g1].repeat_interleave(per_image))
            scores[g0:g1] = out.view(g1 - g0, per_image)
            done += (g1 - g0) * per_image
    return (scores[:, 1:] - scores[:, :1]).to(out_device)
