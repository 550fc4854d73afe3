"""Checks and small pieces shared by the metrics: input/map/target validation, the reference forward pass.

Everything here validates *before* the model runs, so a bad argument raises ``ValueError`` (or
``TypeError`` for a wrong kind of object) and the model is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from camwidget.engine.batching import PRECISIONS, model_device

__all__ = [
    "Target",
    "check_inputs",
    "check_maps",
    "check_model",
    "check_normalisation",
    "check_runner_options",
    "check_target_values",
    "model_device",
    "predict",
    "resolve_targets",
    "target_probabilities",
]

Target = int | Sequence[int] | torch.Tensor | None

_PREDICT_CHUNK = 16


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_inputs(inputs: object) -> torch.Tensor:
    """(N, C, H, W) finite float tensor with N >= 1, else a ValueError/TypeError saying what to do."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a (N, C, H, W) torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim != 4:
        hint = " (add a batch dimension with inputs.unsqueeze(0))" if inputs.ndim == 3 else ""
        raise ValueError(f"inputs must have shape (N, C, H, W); got {tuple(inputs.shape)}{hint}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a float tensor (preprocessed), got {inputs.dtype}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold no image (batch size 0)")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contain NaN or infinite values")
    return inputs


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


def check_runner_options(precision: str, batch_size: int | str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if batch_size != "auto" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be 'auto' or a positive int; got {batch_size!r}")


def check_target_values(target: Target, n: int) -> torch.Tensor | None:
    """Type/shape checks that need no forward pass: (N,) int64 CPU tensor, or None for 'predicted'."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be None, an int or a sequence of ints, not a bool")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long)
    else:
        t = torch.as_tensor(target)
        if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"target must hold integer class indices, got {t.dtype}")
        t = t.detach().long().flatten().cpu()
        if t.numel() == 1:
            t = t.expand(n).clone()
        if t.numel() != n:
            raise ValueError(
                f"target has {t.numel()} entries for {n} images; pass one per image or a single int"
            )
    if bool((t < 0).any()):
        raise ValueError(f"target {t.tolist()} out of range: class indices are >= 0")
    return t


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, K) float32 logits of ``x`` in fp32, in chunks of 16, under ``inference_mode``.

    The caller holds :func:`~camwidget.engine.hooks.preserved_state`. This is the reference forward pass:
    the class "predicted on the original image" is taken from it, as :func:`camwidget.explain` does.
    """
    chunks = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], _PREDICT_CHUNK):
            out = model(x[start : start + _PREDICT_CHUNK])
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise TypeError(f"the model must return (N, num_classes) logits; it returned {shape}")
            chunks.append(out.float())
    return torch.cat(chunks)


def resolve_targets(target: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """(N,) int64 targets on the logits' device: the given ones checked against K, or the argmax."""
    k = logits.shape[1]
    if target is None:
        return logits.argmax(dim=1)
    if bool((target >= k).any()):
        raise ValueError(f"target {target.tolist()} out of range: the model has {k} classes (0..{k - 1})")
    return target.to(logits.device)


def target_probabilities(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax probability of ``targets`` (B,) under (B, K) logits, float32."""
    return torch.softmax(logits.float(), dim=1).gather(1, targets.view(-1, 1).to(logits.device)).squeeze(1)
