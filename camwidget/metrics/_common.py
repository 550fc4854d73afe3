"""Checks and small pieces shared by the metrics: input/map/target validation, the reference forward pass.

Everything here validates *before* the model runs, so a bad argument raises ``ValueError`` (or
``TypeError`` for a wrong kind of object) and the model is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from camwidget.engine.batching import model_device
from camwidget.engine.validation import check_logits

__all__ = [
    "check_maps",
    "check_normalisation",
    "explainer_for",
    "model_device",
    "predict",
    "target_probabilities",
]

if TYPE_CHECKING:  # pragma: no cover
    from camwidget.engine.explainer import Explainer

_PREDICT_CHUNK = 16


def check_maps(maps: object, inputs: torch.Tensor, *, unit_range: bool = False) -> torch.Tensor:
    """Saliency maps for ``inputs``: (N, H, W) or (N, 1, H, W) -> (N, H, W) float32 on the inputs' device.

    Args:
        maps: one map per image, at the inputs' resolution.
        inputs: the checked (N, C, H, W) inputs.
        unit_range: also require values in [0, 1] (maps used as multiplicative masks).
    """
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a (N, H, W) torch.Tensor, got {type(maps).__name__}")
    n, _, h, w = inputs.shape
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or tuple(maps.shape[1:]) != (h, w) or maps.shape[0] != n:
        if maps.ndim == 3 and tuple(maps.shape[1:]) == (h, w):
            raise ValueError(f"maps hold {maps.shape[0]} maps for {n} images; pass one map per image")
        raise ValueError(
            f"maps must have shape (N, H, W) = ({n}, {h}, {w}) to match the inputs; got {tuple(maps.shape)}"
            " (upsample low-resolution maps to the input size first, e.g. camwidget.explain's output)"
        )
    if maps.dtype == torch.bool or maps.is_complex():
        raise TypeError(f"maps must be a real-valued (float) tensor, got {maps.dtype}")
    maps = maps.detach().float().to(inputs.device)
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or infinite values; replace them (e.g. torch.nan_to_num) first")
    if unit_range and (bool((maps < 0).any()) or bool((maps > 1).any())):
        raise ValueError(
            f"maps must lie in [0, 1] to be used as masks; got values in [{float(maps.min()):.4g}, "
            f"{float(maps.max()):.4g}] (min-max normalise them, as camwidget.explain does)"
        )
    return maps


def check_normalisation(
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    channels: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) float32 mean and std tensors, checked against the number of channels."""
    m = torch.as_tensor(mean, dtype=torch.float32).flatten()
    s = torch.as_tensor(std, dtype=torch.float32).flatten()
    if m.numel() != channels or s.numel() != channels:
        raise ValueError(
            f"mean and std need one value per input channel ({channels}); got {m.numel()} and {s.numel()}"
        )
    if bool((s <= 0).any()) or not bool(torch.isfinite(m).all() & torch.isfinite(s).all()):
        raise ValueError(f"std must be > 0 and mean/std finite; got mean={m.tolist()}, std={s.tolist()}")
    return m.view(1, -1, 1, 1).to(device), s.view(1, -1, 1, 1).to(device)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, K) float32 logits of ``x`` in fp32, in chunks of 16, under ``inference_mode``.

    The caller holds :func:`~camwidget.engine.hooks.preserved_state`. This is the reference forward pass:
    the class "predicted on the original image" is taken from it, as :func:`camwidget.explain` does.
    """
    chunks = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], _PREDICT_CHUNK):
            chunks.append(check_logits(model(x[start : start + _PREDICT_CHUNK])).float())
    return torch.cat(chunks)


def target_probabilities(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax probability of ``targets`` (B,) under (B, K) logits, float32."""
    return torch.softmax(logits.float(), dim=1).gather(1, targets.view(-1, 1).to(logits.device)).squeeze(1)


def explainer_for(
    model: nn.Module, method: object, layer: object, options: dict[str, Any]
) -> tuple[Explainer, bool]:
    """The :class:`~camwidget.engine.explainer.Explainer` a metric that explains again should use, and
    whether the metric made it (and so releases it).

    ``method`` is a method name (a new Explainer on ``model`` at ``layer`` with ``options``) or an
    Explainer of ``model`` (used as it is; ``layer`` and ``options`` must then be left out).
    """
    from camwidget.engine.explainer import Explainer
    from camwidget.methods.registry import get_method

    if isinstance(method, Explainer):
        if method.model is not model:
            raise ValueError(
                "the Explainer passed as method explains another model; pass one made for this model"
            )
        if layer is not None or options:
            raise ValueError(
                "layer and method options belong to the Explainer passed as method; leave them out here"
            )
        return method, False
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name or a camwidget.Explainer; got {type(method).__name__}")
    get_method(method)  # an unknown name fails here, before any forward
    return Explainer(model, layer, method, **options), True  # type: ignore[arg-type]
