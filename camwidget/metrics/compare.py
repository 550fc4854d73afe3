"""Which method is most faithful on *your* images: every method's maps scored side by side.

For each method, the maps of the same class (the original prediction, or ``target``) are computed with
:class:`~camwidget.engine.explainer.Explainer`, timed, and scored with insertion/deletion AUC and Average
Drop/Increase/Gain. The result is a :class:`Comparison`: ``.rows`` (a list of dicts, no dependency) and
``.to_dataframe()`` (a pandas DataFrame, when pandas is installed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camwidget.engine.explainer import IMAGENET_MEAN, IMAGENET_STD, Explainer
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import Target, check_call, resolve_targets
from camwidget.methods.registry import METHODS, get_method, method_options
from camwidget.metrics._common import model_device, predict
from camwidget.metrics.confidence import MASKINGS, average_drop_increase_gain
from camwidget.metrics.insertion_deletion import (
    Curves,
    _check_blur,
    _check_step,
    _check_substrate,
    insertion_deletion,
)

__all__ = ["COLUMNS", "Comparison", "compare_methods"]

COLUMNS = (
    "method",
    "insertion_auc",
    "deletion_auc",
    "average_drop",
    "average_increase",
    "average_gain",
    "seconds_per_image",
)
"""Columns of :attr:`Comparison.rows`: AUCs in [0, 1] (insertion higher is better, deletion lower), AD/AI/AG
in percent (AD lower is better, AI and AG higher), seconds per image for the maps alone."""


@dataclass
class Comparison:
    """The table :func:`compare_methods` returns.

    Attributes:
        rows: one dict per method with the keys in :data:`COLUMNS` (floats; means over the images).
        maps: method name -> (N, H, W) maps in [0, 1] that were scored.
        curves: method name -> :class:`~camwidget.metrics.insertion_deletion.Curves` (per-image curves).
        confidence: method name -> the dict of :func:`average_drop_increase_gain` (per-image p, o...).
        targets: (N,) int64 classes explained.
    """

    rows: list[dict[str, Any]]
    maps: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    curves: dict[str, Curves] = field(default_factory=dict, repr=False)
    confidence: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    targets: torch.Tensor | None = field(default=None, repr=False)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame indexed by method. Raises ImportError if pandas is missing."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a dev/demo dependency
            raise ImportError(
                "to_dataframe() needs pandas (pip install pandas); .rows has the same data"
            ) from exc
        return pd.DataFrame(self.rows, columns=list(COLUMNS)).set_index("method")

    def best(self, column: str = "deletion_auc") -> str:
        """The method with the best ``column``: lowest for deletion AUC, AD and seconds, else highest."""
        if column not in COLUMNS[1:]:
            raise ValueError(f"column must be one of {', '.join(COLUMNS[1:])}; got {column!r}")
        lower = column in ("deletion_auc", "average_drop", "seconds_per_image")
        key = (lambda r: r[column]) if lower else (lambda r: -r[column])
        return min(self.rows, key=key)["method"]

    def __repr__(self) -> str:
        head = ["method", "ins AUC↑", "del AUC↓", "AD↓", "AI↑", "AG↑", "s/img"]
        lines = ["  ".join(f"{h:>11}" for h in head)]
        for r in self.rows:
            values = [r[c] for c in COLUMNS[1:]]
            cells = [f"{r['method']:>11}", *(f"{v:>11.4g}" for v in values)]
            lines.append("  ".join(cells))
        return "\n".join(lines)


def compare_methods(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    methods: Sequence[str] | None = None,
    layer: str | nn.Module | None = None,
    target: Target = None,
    step: int = 224,
    substrate: str = "zeros",
    blur: tuple[int, float] = (11, 5.0),
    masking: str = "model",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    precision: str = "auto",
    batch_size: int | str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> Comparison:
    """Score several CAM methods on the same images and class: insertion/deletion AUC, AD, AI, AG, speed.

    Args:
        model: classifier returning (N, K) logits; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        methods: names from :data:`camwidget.METHODS`; None (default) = all of them (Score-CAM, Ablation-CAM
            and Opti-CAM are the slow ones).
        layer: explained layer for every method (None: the engine's default).
        target: None (each image's predicted class, fp32), an int, or N ints; the same for every method.
        step, substrate, blur: insertion/deletion settings (see :func:`insertion_deletion`).
        masking: Average Drop/Increase/Gain masking, "model" (default) or "pixel".
        mean, std: input normalisation (for "black"/"pixel" and Opti-CAM). Default ImageNet's.
        precision, batch_size: the engine's settings, for the maps and the metrics' forwards.
        progress: ``progress(method, done, total)`` as methods finish (done counts methods).
        **options: method options (e.g. ``variant``, ``iterations``), passed to each method that takes them.

    Returns:
        A :class:`Comparison`; ``.rows`` (list of dicts with :data:`COLUMNS`) and ``.to_dataframe()``. The
        seconds per image time the maps only (wall clock, including the engine's first-call measurements).
    """
    model, inputs, wanted = check_call(model, inputs, target, precision=precision, batch_size=batch_size)
    names = list(METHODS if methods is None else methods)
    if isinstance(methods, str) or not names:
        raise ValueError(
            f"methods must be a non-empty list of names from {', '.join(METHODS)}; got {methods!r}"
        )
    names = [get_method(name).name for name in names]  # validates and canonicalises
    unknown = set(options) - method_options()
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(sorted(unknown))}; method options are "
            f"{', '.join(sorted(method_options()))}"
        )
    _check_step(step)
    _check_substrate(substrate)
    _check_blur(blur)
    if masking not in MASKINGS:
        raise ValueError(f"masking must be 'model' or 'pixel'; got {masking!r}")
    x = inputs.detach().to(model_device(model))
    with preserved_state(model):
        targets = resolve_targets(wanted, predict(model, x))
    n = x.shape[0]
    engine = {"precision": precision, "batch_size": batch_size, "mean": mean, "std": std}
    result = Comparison(rows=[], targets=targets.to(inputs.device))
    for done, name in enumerate(names, start=1):
        opts = {k: v for k, v in options.items() if k in get_method(name).defaults}
        started = time.perf_counter()
        with Explainer(model, layer, name, **engine, **opts) as explainer:
            maps = explainer(x, targets)
        seconds = (time.perf_counter() - started) / n
        curves = insertion_deletion(
            model,
            x,
            maps,
            targets,
            step=step,
            substrate=substrate,
            blur=blur,
            mean=mean,
            std=std,
            precision=precision,
            batch_size=batch_size,
        )
        conf = average_drop_increase_gain(
            model,
            x,
            maps,
            targets,
            masking=masking,
            mean=mean,
            std=std,
            precision=precision,
            batch_size=batch_size,
        )
        result.rows.append(
            {
                "method": name,
                "insertion_auc": float(curves.insertion_auc.mean()),
                "deletion_auc": float(curves.deletion_auc.mean()),
                "average_drop": conf["average_drop"],
                "average_increase": conf["average_increase"],
                "average_gain": conf["average_gain"],
                "seconds_per_image": seconds,
            }
        )
        result.maps[name] = maps.to(inputs.device)
        result.curves[name] = curves
        result.confidence[name] = conf
        if progress is not None:
            progress(name, done, len(names))
    return result
