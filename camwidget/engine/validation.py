"""Argument checks shared by the engine, the metrics and the audit.

Everything here runs before the model does, so a bad argument raises a ``TypeError``/``ValueError``
saying what to do, and the model is never touched.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from camwidget.engine.precision import PRECISIONS

__all__ = [
    "PRECISIONS",
    "Target",
    "check_call",
    "check_inputs",
    "check_model",
    "check_runner_options",
    "check_target_values",
    "model_dtype",
    "running_model",
]

Target = object
"""What ``target=`` takes: None (each image's predicted class), one int for every image, one int per image,
a :class:`camwidget.targets.Target` or any callable ``f(output) -> Tensor[N]`` (:mod:`camwidget.targets`)."""


def check_model(model: object) -> nn.Module:
    """``model`` if it is an ``nn.Module``, else a ``TypeError``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's first floating parameter (or buffer); None if it has none."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def check_inputs(inputs: object, model: nn.Module | None = None) -> torch.Tensor:
    """A (N, C, H, W) or (N, C, T, H, W) finite float tensor with N >= 1; with ``model``, of the model's
    floating dtype.

    The channel count is not checked here: the first layer the input reaches knows it (a grayscale model may
    expand 1 channel to 3 before its backbone); :func:`running_model` turns a mismatch into a clear error.
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a (N, C, H, W) torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim not in (4, 5):
        hint = " (add a batch dimension with inputs.unsqueeze(0))" if inputs.ndim == 3 else ""
        raise ValueError(
            f"inputs must have shape (N, C, H, W) (images) or (N, C, T, H, W) (video, volumes); got "
            f"{tuple(inputs.shape)}{hint}"
        )
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a float tensor (preprocessed), got {inputs.dtype}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold no image (batch size 0)")
    if model is not None:
        dtype = model_dtype(model)
        if dtype is not None and inputs.dtype != dtype:
            raise TypeError(
                f"inputs are {inputs.dtype} but the model computes in {dtype}; pass inputs.to({dtype})"
            )
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contain NaN or infinite values")
    return inputs


_CHANNELS = re.compile(r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels")


@contextmanager
def running_model(inputs: torch.Tensor) -> Iterator[None]:
    """Around the first forward of a call: a channel mismatch between ``inputs`` and the first
    convolution they reach becomes a ``ValueError`` that names both; other errors pass unchanged."""
    try:
        yield
    except RuntimeError as exc:
        match = _CHANNELS.search(str(exc))
        if match is None:
            raise
        raise ValueError(
            f"inputs have {match.group(2)} channels but the first convolution they reach expects "
            f"{match.group(1)}; preprocess the images as the model expects (inputs shape "
            f"{tuple(inputs.shape)})"
        ) from exc


def check_runner_options(precision: str, batch_size: int | str) -> None:
    """``precision`` in :data:`PRECISIONS`; ``batch_size`` "auto" or a positive int."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if batch_size != "auto" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be 'auto' or a positive int; got {batch_size!r}")


def _class_index(value: object) -> int:
    if isinstance(value, bool | torch.Tensor) or not isinstance(value, numbers.Integral):
        raise TypeError(
            "target must be None (each image's predicted class), an integer class index or a sequence of one "
            f"integer per image; got {type(value).__name__} {value!r}"
        )
    index = int(value)
    if not 0 <= index < 2**62:
        raise ValueError(f"target {index} out of range: class indices are >= 0 and below the class count")
    return index


def check_target_values(target: Target, n: int) -> torch.Tensor | None:
    """Checks that need no forward pass: (N,) int64 CPU tensor, or None for "predicted class".

    Raises:
        TypeError: ``target`` is not None, an int, a sequence of ints or an integer tensor.
        ValueError: a negative or absurdly large index, or not one entry (or one per image) for N images.
    """
    if target is None:
        return None
    if isinstance(target, torch.Tensor) or hasattr(target, "__array__"):
        tensor = torch.as_tensor(target)
        if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.is_complex():
            raise TypeError(f"target must hold integer class indices, got {tensor.dtype}")
        values = [_class_index(v) for v in tensor.detach().flatten().cpu().tolist()]
    elif isinstance(target, Sequence) and not isinstance(target, str | bytes):
        values = [_class_index(v) for v in target]
    else:
        values = [_class_index(target)]
    t = torch.tensor(values, dtype=torch.long)
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries for {n} images; pass one per image or a single int")
    return t


def check_call(
    model: object,
    inputs: object,
    target: object = None,
    *,
    precision: str = "auto",
    batch_size: int | str = "auto",
) -> tuple[nn.Module, torch.Tensor, Target]:
    """The checks every public entry point makes before touching the model, in one call.

    Returns:
        ``(model, inputs, target)`` with ``target`` a :class:`camwidget.targets.Target` (a bare class index
        or "predicted class" as a :class:`~camwidget.targets.ClassIndex`); bind it to the unperturbed
        output with ``target.prepare(output, run)``.
    """
    from camwidget.targets import as_target

    model = check_model(model)
    inputs = check_inputs(inputs, model)
    check_runner_options(precision, batch_size)
    return model, inputs, as_target(target, inputs.shape[0])
