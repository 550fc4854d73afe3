"""Argument checks shared by the engine, the metrics and the audit.

Everything here runs before the model does, so a bad argument raises a ``TypeError``/``ValueError``
saying what to do, and the model is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "PRECISIONS",
    "Target",
    "check_call",
    "check_inputs",
    "check_logits",
    "check_model",
    "check_runner_options",
    "check_target_values",
    "resolve_targets",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

Target = int | Sequence[int] | torch.Tensor | None
"""None (each image's predicted class), one int for every image, or one int per image."""


def check_model(model: object) -> nn.Module:
    """``model`` if it is an ``nn.Module``, else a ``TypeError``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_inputs(inputs: object, model: nn.Module | None = None) -> torch.Tensor:
    """A (N, C, H, W) finite float tensor with N >= 1; with ``model``, C must match its first conv."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a (N, C, H, W) torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim != 4:
        hint = " (add a batch dimension with inputs.unsqueeze(0))" if inputs.ndim == 3 else ""
        raise ValueError(f"inputs must have shape (N, C, H, W); got {tuple(inputs.shape)}{hint}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a float tensor (preprocessed), got {inputs.dtype}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold no image (batch size 0)")
    if model is not None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None and inputs.shape[1] != conv.in_channels:
            raise ValueError(
                f"inputs have {inputs.shape[1]} channels but the model's first convolution takes "
                f"{conv.in_channels}"
            )
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contain NaN or infinite values")
    return inputs


def check_logits(out: object) -> torch.Tensor:
    """The model's output if it is (N, num_classes) logits, else a ``TypeError``."""
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"the model must return (N, num_classes) logits; it returned {shape}")
    return out


def check_runner_options(precision: str, batch_size: int | str) -> None:
    """``precision`` in :data:`PRECISIONS`; ``batch_size`` "auto" or a positive int."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if batch_size != "auto" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be 'auto' or a positive int; got {batch_size!r}")


def check_target_values(target: Target, n: int) -> torch.Tensor | None:
    """Checks that need no forward pass: (N,) int64 CPU tensor, or None for "predicted class"."""
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


def resolve_targets(target: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """(N,) int64 targets on the logits' device: checked ones against K classes, or the argmax."""
    k = logits.shape[1]
    if target is None:
        return logits.detach().argmax(dim=1)
    if bool((target >= k).any()):
        raise ValueError(f"target {target.tolist()} out of range: the model has {k} classes (0..{k - 1})")
    return target.to(logits.device)


def check_call(
    model: object,
    inputs: object,
    target: Target = None,
    *,
    precision: str = "auto",
    batch_size: int | str = "auto",
) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
    """The checks every public entry point makes before touching the model, in one call.

    Returns:
        ``(model, inputs, wanted)`` with ``wanted`` the (N,) int64 CPU targets, or None for "predicted
        class" (resolve it against logits with :func:`resolve_targets`).
    """
    model = check_model(model)
    inputs = check_inputs(inputs)
    check_runner_options(precision, batch_size)
    return model, inputs, check_target_values(target, inputs.shape[0])
