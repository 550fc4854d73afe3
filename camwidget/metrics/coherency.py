"""Coherency and the harmonic-mean scores built on it (Poppi, Cornia, Baraldi, Cucchiara, CVPRW 2021,
"Revisiting the evaluation of class activation mapping for explainability").

- :func:`coherency`: a map should be unchanged when the image is masked by that same map. With L(x) the
  map of image x (for a fixed class) and ρ Pearson's correlation over pixels,
  Coherency = (ρ(L(x ⊙ L(x)), L(x)) + 1) / 2, in [0, 1], higher = more coherent. The image is masked in
  the model's input space by default (``x · map``, as pytorch-grad-cam's ``Coherency``); the class is the
  original image's (its prediction, or ``target``), not re-predicted on the masked image.
- :func:`adcc`: Poppi et al.'s ADCC, the harmonic mean of Coherency, 1 − Complexity (the mean map value,
  :func:`~camwidget.metrics.complexity.l1_complexity`) and 1 − the image's Average Drop (as a fraction).
- :func:`arcc`: pytorch-grad-cam's ``ARCC``, the same harmonic mean with ROAD in place of Average Drop:
  clip(2·r, 0, 1) with r = (mean LeRF − mean MoRF) / 2 over ROAD percentiles (20, 40, 60, 80).

A harmonic mean is 0 as soon as one of its terms is <= 0 (pytorch-grad-cam adds 1e-8 to each term instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camwidget.engine.explainer import IMAGENET_MEAN, IMAGENET_STD, Explainer
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import Target, check_call
from camwidget.metrics._common import check_maps, explainer_for, fixed_target, model_device
from camwidget.metrics.complexity import l1_complexity
from camwidget.metrics.confidence import MASKINGS, average_drop_increase_gain, masked_inputs
from camwidget.metrics.road import check_percentiles, road

__all__ = ["adcc", "arcc", "coherency", "harmonic_mean", "pearson"]


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each pair of maps: (N, ...) and (N, ...) -> (N,) float32 in [-1, 1].

    float64 internally. A constant map correlates with nothing: 0 (not NaN).
    """
    if a.shape != b.shape:
        raise ValueError(f"pearson needs maps of equal shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    x = a.detach().flatten(1).double()
    y = b.detach().flatten(1).double().to(x.device)
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    denom = x.norm(dim=1) * y.norm(dim=1)
    r = torch.where(denom > 0, (x * y).sum(1) / denom.clamp_min(1e-300), torch.zeros_like(denom))
    return r.clamp(-1, 1).float()


def harmonic_mean(*terms: torch.Tensor) -> torch.Tensor:
    """Element-wise harmonic mean of (N,) tensors, 0 wherever a term is <= 0. float32."""
    stacked = torch.stack([t.double() for t in terms])
    positive = (stacked > 0).all(0)
    safe = torch.where(stacked > 0, stacked, torch.ones_like(stacked))
    return torch.where(positive, len(terms) / (1 / safe).sum(0), torch.zeros_like(safe[0])).float()


def _runner_options(options: dict[str, Any]) -> dict[str, Any]:
    """The engine settings among the Explainer options, for the metrics' own forwards."""
    return {k: options[k] for k in ("precision", "batch_size") if k in options}


def _prepare(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor | None,
    target: Target,
    method: str | Explainer,
    layer: str | nn.Module | None,
    options: dict[str, Any],
) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None, torch.Tensor | None, Explainer, bool]:
    model, inputs, wanted = check_call(model, inputs, target)
    checked = None if maps is None else check_maps(maps, inputs, unit_range=True)
    explainer, owned = explainer_for(model, method, layer, options)
    return model, inputs, wanted, checked, explainer, owned


def coherency(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor | None = None,
    target: Target = None,
    *,
    method: str | Explainer = "gradcam",
    layer: str | nn.Module | None = None,
    masking: str = "model",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    **options: Any,
) -> torch.Tensor:
    """Coherency of each map: (ρ(map of x ⊙ map, map) + 1) / 2 (Poppi et al. 2021, see the module doc).

    Args:
        model: classifier returning (N, K) logits; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        maps: (N, H, W) maps in [0, 1] that ``method`` made for these images and classes; None (default):
            made here.
        target: None (default: the class predicted on each original image), an int, or N ints; the class
            of both maps.
        method: a name from :data:`camwidget.METHODS` (default "gradcam"), or a :class:`camwidget.Explainer`
            of ``model`` (then ``layer`` and ``options`` stay with it).
        layer: explained layer (None: the engine's default).
        masking: "model" (default: ``x · map``, pytorch-grad-cam's) or "pixel" (masked pixels black, with
            ``mean``/``std``), as :func:`~camwidget.metrics.confidence.masked_inputs`.
        mean, std: the inputs' normalisation, for "pixel" masking. Default ImageNet's.
        **options: for the Explainer (``precision``, ``batch_size``, method options, ...).

    Returns:
        (N,) float32 in [0, 1] on the inputs' device; 0.5 where either map is constant.
    """
    if masking not in MASKINGS:
        raise ValueError(f"masking must be 'model' or 'pixel'; got {masking!r}")
    model, inputs, wanted, maps, explainer, owned = _prepare(
        model, inputs, maps, target, method, layer, options
    )
    try:
        x = inputs.detach().to(model_device(model))
        with preserved_state(model):
            targets = fixed_target(model, x, wanted)
        first = explainer(x, targets) if maps is None else maps.to(x.device)
        masked = masked_inputs(x, first, masking=masking, mean=mean, std=std)
        again = explainer(masked, targets)
    finally:
        if owned:
            explainer.release()
    return ((pearson(again, first) + 1) / 2).to(inputs.device)


def adcc(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor | None = None,
    target: Target = None,
    *,
    method: str | Explainer = "gradcam",
    layer: str | nn.Module | None = None,
    masking: str = "model",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    **options: Any,
) -> dict[str, torch.Tensor]:
    """ADCC per image (Poppi et al. 2021): harmonic mean of Coherency, 1 − Complexity, 1 − Average Drop.

    Complexity is the mean map value (:func:`~camwidget.metrics.complexity.l1_complexity`) and Average
    Drop the image's max(0, p − o)/p as a fraction, with the same ``masking`` as Coherency. Arguments as in
    :func:`coherency`.

    Returns:
        A dict of (N,) float32 tensors on the inputs' device: "adcc", "coherency", "complexity",
        "average_drop" (fraction in [0, 1]); higher ADCC is better.
    """
    if masking not in MASKINGS:
        raise ValueError(f"masking must be 'model' or 'pixel'; got {masking!r}")
    model, inputs, wanted, maps, explainer, owned = _prepare(
        model, inputs, maps, target, method, layer, options
    )
    try:
        x = inputs.detach().to(model_device(model))
        with preserved_state(model):
            targets = fixed_target(model, x, wanted)
        if maps is None:
            maps = explainer(x, targets)
        coh = coherency(model, x, maps, targets, method=explainer, masking=masking, mean=mean, std=std)
    finally:
        if owned:
            explainer.release()
    confidence = average_drop_increase_gain(
        model, x, maps, targets, masking=masking, mean=mean, std=std, **_runner_options(options)
    )
    drop = confidence["drop"] / 100
    comp = l1_complexity(maps)
    out = {
        "adcc": harmonic_mean(coh, 1 - comp, 1 - drop),
        "coherency": coh,
        "complexity": comp,
        "average_drop": drop,
    }
    return {k: v.float().to(inputs.device) for k, v in out.items()}


def arcc(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor | None = None,
    target: Target = None,
    *,
    method: str | Explainer = "gradcam",
    layer: str | nn.Module | None = None,
    percentiles: Sequence[float] = (20, 40, 60, 80),
    noise: float = 0.01,
    seed: int | None = None,
    ties: str = "error",
    **options: Any,
) -> dict[str, torch.Tensor]:
    """pytorch-grad-cam's ARCC per image: harmonic mean of Coherency, 1 − Complexity and scaled ROAD.

    ROAD term: clip(2·r, 0, 1), r = (mean over ``percentiles`` of ROAD least-relevant-first − mean of
    most-relevant-first) / 2 (pytorch-grad-cam's ``ROADCombined``), with ``noise``, ``seed`` and ``ties`` as
    in :func:`~camwidget.metrics.road.road`. Coherency with model-space masking. Other arguments as in
    :func:`coherency`.

    Returns:
        A dict of (N,) float32 tensors on the inputs' device: "arcc", "coherency", "complexity",
        "road_combined" (r, in [−0.5, 0.5]); higher ARCC is better.
    """
    percentiles = check_percentiles(percentiles)
    model, inputs, wanted, maps, explainer, owned = _prepare(
        model, inputs, maps, target, method, layer, options
    )
    try:
        x = inputs.detach().to(model_device(model))
        with preserved_state(model):
            targets = fixed_target(model, x, wanted)
        if maps is None:
            maps = explainer(x, targets)
        coh = coherency(model, x, maps, targets, method=explainer)
    finally:
        if owned:
            explainer.release()
    kwargs = {"noise": noise, "seed": seed, "ties": ties, **_runner_options(options)}
    most = road(model, x, maps, targets, percentiles, "most", **kwargs).mean(1)
    least = road(model, x, maps, targets, percentiles, "least", **kwargs).mean(1)
    combined = (least - most) / 2
    comp = l1_complexity(maps)
    out = {
        "arcc": harmonic_mean(coh, 1 - comp, (2 * combined).clamp(0, 1)),
        "coherency": coh,
        "complexity": comp,
        "road_combined": combined,
    }
    return {k: v.float().to(inputs.device) for k, v in out.items()}
