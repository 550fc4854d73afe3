"""Which method is most faithful on *your* images: every method's maps scored side by side.

For each method, the maps of the same class (the original prediction, or ``target``) are computed with
:class:`~camwidget.engine.explainer.Explainer`, timed warm, and scored by the metrics asked for. The result
is a :class:`Comparison`: ``.rows`` (a list of dicts, no dependency) and ``.to_dataframe()`` (pandas).

Column names carry their unit (see :data:`UNITS`); :data:`BETTER` says which direction is better. Columns
that are 0 for every method (e.g. Average Gain when no map raises the probability) are dropped by default
and listed in :attr:`Comparison.dropped`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camwidget.engine.explainer import IMAGENET_MEAN, IMAGENET_STD, Explainer
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import Target, check_call, check_target_values
from camwidget.methods.registry import METHOD_CLASSES, METHODS, get_method, method_options
from camwidget.metrics._common import fixed_target, model_device
from camwidget.metrics.coherency import coherency
from camwidget.metrics.complexity import complexity, sparseness
from camwidget.metrics.confidence import MASKINGS, confidence_change, confidence_scores
from camwidget.metrics.error_understanding import error_understanding, misclassified
from camwidget.metrics.insertion_deletion import (
    Curves,
    _check_blur,
    _check_step,
    _check_substrate,
    insertion_deletion,
)
from camwidget.metrics.random_logit import random_logit
from camwidget.metrics.road import DEFAULT_PERCENTILES, _check_noise, check_percentiles, road

__all__ = ["BETTER", "COLUMNS", "METRICS", "UNITS", "Comparison", "compare_methods"]

DEFAULT_METRICS = ("insertion_deletion", "confidence", "sparseness", "complexity")
"""What :func:`compare_methods` computes unless told: ROAD (18 sparse solves per image), coherency and the
random logit test (one more explanation each) are asked for by name or with ``metrics="all"``."""

METRICS = (
    "insertion_deletion",
    "confidence",
    "road",
    "sparseness",
    "complexity",
    "coherency",
    "random_logit",
)
"""Metric groups :func:`compare_methods` can compute (``metrics=``); all by default."""

_GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "insertion_deletion": ("insertion_auc", "deletion_auc"),
    "confidence": ("average_drop_%", "average_increase_%", "average_gain_%", "drop_in_confidence_prob"),
    "road": ("road_morf_prob", "road_lerf_prob"),
    "sparseness": ("sparseness_gini",),
    "complexity": ("complexity_nats",),
    "coherency": ("coherency",),
    "random_logit": ("random_logit_ssim",),
}

COLUMNS = (
    "method",
    "precision",
    *(column for group in METRICS for column in _GROUP_COLUMNS[group]),
    "seconds_per_image",
)
"""Every column a row can have, in table order (see :data:`UNITS`)."""

UNITS: dict[str, str] = {
    "method": "method name",
    "precision": "the precision this row's maps and batched forwards ran at",
    "insertion_auc": "AUC of the target probability vs the fraction of pixels inserted, in [0, 1]",
    "deletion_auc": "AUC of the target probability vs the fraction of pixels deleted, in [0, 1]",
    "average_drop_%": "percent, mean of max(0, p − o)/p",
    "average_increase_%": "percent of images whose probability rose when masked by the map",
    "average_gain_%": "percent, mean of max(0, o − p)/(1 − p)",
    "drop_in_confidence_prob": "probability, mean of max(0, p − o) (pytorch-grad-cam's DropInConfidence)",
    "road_morf_prob": "probability change, ROAD most relevant first, mean over images and percentiles",
    "road_lerf_prob": "probability change, ROAD least relevant first, mean over images and percentiles",
    "sparseness_gini": "Gini index of |map|, in [0, 1)",
    "complexity_nats": "entropy of |map| / Σ|map| in nats, in [0, ln(H·W)]",
    "coherency": "(Pearson(map of x ⊙ map, map) + 1) / 2, in [0, 1]",
    "random_logit_ssim": "SSIM between the target's map and a random other class's map, in [−1, 1]",
    "seconds_per_image": "seconds per image for the maps alone, warm (wall clock)",
}
"""What each column measures, with its unit."""

BETTER: dict[str, str] = {
    "insertion_auc": "higher",
    "deletion_auc": "lower",
    "average_drop_%": "lower",
    "average_increase_%": "higher",
    "average_gain_%": "higher",
    "drop_in_confidence_prob": "lower",
    "road_morf_prob": "lower",
    "road_lerf_prob": "higher",
    "sparseness_gini": "higher",
    "complexity_nats": "lower",
    "coherency": "higher",
    "random_logit_ssim": "lower",
    "seconds_per_image": "lower",
}
"""Which direction is better for each numeric column."""

_SHORT = {
    "insertion_auc": "ins AUC",
    "deletion_auc": "del AUC",
    "average_drop_%": "AD %",
    "average_increase_%": "AI %",
    "average_gain_%": "AG %",
    "drop_in_confidence_prob": "DropConf p",
    "road_morf_prob": "ROAD MoRF Δp",
    "road_lerf_prob": "ROAD LeRF Δp",
    "sparseness_gini": "Gini",
    "complexity_nats": "entropy nats",
    "coherency": "coherency",
    "random_logit_ssim": "rnd-logit SSIM",
    "seconds_per_image": "s/img",
}


@dataclass
class Comparison:
    """The table :func:`compare_methods` returns.

    Attributes:
        rows: one dict per method with the keys in :attr:`columns` (floats are means over the images;
            "precision" a string).
        columns: the table's columns, in the order of :data:`COLUMNS`: the metrics computed, less those
            in :attr:`dropped`.
        dropped: columns left out because every method scored exactly 0 there.
        maps: method name -> (N, H, W) maps in [0, 1] that were scored.
        curves: method name -> :class:`~camwidget.metrics.insertion_deletion.Curves` (per-image curves).
        confidence: method name -> per-image "p", "o" (probabilities before/after masking), "drop", "gain"
            (percent), "increase" (bool), "drop_in_confidence" (probability), "targets".
        road: method name -> {"most": (N, P), "least": (N, P)} ROAD probability changes, and
            "percentiles".
        per_image: method name -> {column: (N,) tensor} for the map-only and re-explaining metrics
            (sparseness_gini, complexity_nats, coherency, random_logit_ssim).
        targets: (N,) int64 classes explained.
        errors: with ``labels``, one row per (method, class explained) for the misclassified images: the
            error-understanding figures (:func:`~camwidget.metrics.error_understanding`), the map made for
            the true class ("true") and for the wrong prediction ("predicted"); empty otherwise.
        errors_by_class: the same per (method, explained, true class).
    """

    rows: list[dict[str, Any]]
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))
    dropped: list[str] = field(default_factory=list)
    maps: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    curves: dict[str, Curves] = field(default_factory=dict, repr=False)
    confidence: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    road: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    per_image: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    targets: torch.Tensor | None = field(default=None, repr=False)
    errors: list[dict[str, Any]] = field(default_factory=list, repr=False)
    errors_by_class: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def errors_dataframe(self, by_class: bool = False) -> Any:
        """:attr:`errors` (or :attr:`errors_by_class`) as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.errors_by_class if by_class else self.errors)

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame indexed by method. Raises ImportError if pandas is missing."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a dev/demo dependency
            raise ImportError(
                "to_dataframe() needs pandas (pip install pandas); .rows has the same data"
            ) from exc
        return pd.DataFrame(self.rows, columns=self.columns).set_index("method")

    def best(self, column: str = "deletion_auc") -> str:
        """The method with the best ``column`` (see :data:`BETTER`); NaN values never win."""
        numeric = [c for c in self.columns if c in BETTER]
        if column not in numeric:
            raise ValueError(f"column must be one of {', '.join(numeric)}; got {column!r}")
        sign = 1 if BETTER[column] == "lower" else -1
        candidates = [r for r in self.rows if not math.isnan(r[column])] or self.rows
        return min(candidates, key=lambda r: sign * r[column])["method"]

    def __repr__(self) -> str:
        shown = [c for c in self.columns if c != "method"]
        heads = ["method"] + [
            _SHORT.get(c, c) + ("↑" if BETTER.get(c) == "higher" else "↓" if c in BETTER else "")
            for c in shown
        ]
        width = max(11, *(len(h) for h in heads))
        lines = ["  ".join(f"{h:>{width}}" for h in heads)]
        for r in self.rows:
            cells = [f"{r['method']:>{width}}"]
            for c in shown:
                v = r[c]
                cells.append(f"{v:>{width}.4g}" if isinstance(v, float) else f"{v!s:>{width}}")
            lines.append("  ".join(cells))
        if self.dropped:
            lines.append(f"(0 for every method, not shown: {', '.join(self.dropped)})")
        return "\n".join(lines)


def _check_metrics(metrics: object) -> list[str]:
    if metrics == "all":
        return list(METRICS)
    if metrics == "default" or metrics is None:
        return list(DEFAULT_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        chosen = list(metrics)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(
            f"metrics must be 'default', 'all' or names from {', '.join(METRICS)}; got {metrics!r}"
        ) from None
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise ValueError(
            f"metrics must be 'default', 'all' or a non-empty list of {', '.join(METRICS)}; got {metrics!r}"
        )
    return [m for m in METRICS if m in chosen]


def _error_rows(
    result: Comparison,
    model: nn.Module,
    x: torch.Tensor,
    name: str,
    layer: object,
    engine: dict[str, Any],
    opts: dict[str, Any],
    maps: torch.Tensor,
    targets: object,
    truth: torch.Tensor,
    wrong: torch.Tensor,
    runner: dict[str, Any],
) -> None:
    """Error understanding of the misclassified images for one method: maps for the true class and for
    the wrong prediction, each scored for the true class."""
    index = wrong.nonzero().flatten()
    images, labels = x[index], truth.to(x.device)[index]
    with Explainer(model, layer, name, **engine, **opts) as explainer:  # type: ignore[arg-type]
        true_maps = explainer(images, labels)
        predicted = explainer.predict(images).argmax(dim=1)
        predicted_maps = explainer(images, predicted)
    for explained, chosen in (("true", true_maps), ("predicted", predicted_maps)):
        figures = error_understanding(
            model, images, labels, chosen, mean=engine["mean"], std=engine["std"], **runner
        )
        result.errors.append(
            {"method": name, "explained": explained, "images": len(index), **figures.summary()}
        )
        for c in labels.unique().tolist():
            mine = (figures.labels == c).nonzero().flatten()
            by_class = figures.summary_of(mine)
            result.errors_by_class.append(
                {"method": name, "explained": explained, "label": int(c), "images": len(mine), **by_class}
            )


def _least_exact(a: str, b: str) -> str:
    """What a row that used both precisions can claim."""
    return a if a != "fp32" else b


def _mean(values: torch.Tensor) -> float:
    """Mean over the finite values (NaN if none): a zero map has no sparseness/entropy."""
    finite = values[torch.isfinite(values)]
    return float(finite.double().mean()) if finite.numel() else float("nan")


def compare_methods(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    methods: Sequence[str] | None = None,
    layer: str | nn.Module | None = None,
    target: Target = None,
    metrics: Sequence[str] | str = "default",
    step: int = 224,
    substrate: str = "zeros",
    blur: tuple[int, float] = (11, 5.0),
    masking: str = "model",
    road_percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    road_noise: float = 0.01,
    seed: int = 0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    precision: str = "auto",
    batch_size: int | str = "auto",
    warmup: bool = True,
    keep_zero_columns: bool = False,
    labels: object = None,
    progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> Comparison:
    """Score several CAM methods on the same images and class, with every metric asked for, and time them.

    Args:
        model: classifier returning (N, K) logits; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        methods: names from :data:`camwidget.METHODS`; None (default) = every method that explains any
            classifier at the cost of at most a Score-CAM (Score-CAM, Ablation-CAM and Opti-CAM are the slow
            ones; LeGrad, for vision transformers only, and SS-CAM / IS-CAM, tens of Score-CAMs each, are
            left out unless named).
        layer: explained layer for every method (None: the engine's default).
        target: None (each image's predicted class, fp32), an int, or N ints; the same for every method.
        metrics: "default" (insertion/deletion, the confidence metrics, sparseness and complexity: a few
            hundred forwards per image and method), "all", or some of :data:`METRICS`: "insertion_deletion"
            (insertion/deletion AUC),
            "confidence" (Average Drop/Increase/Gain and Drop in Confidence, one stream of 2N forwards),
            "road" (ROAD most- and least-relevant-first), "sparseness", "complexity" (from the maps alone),
            "coherency" and "random_logit" (one more explanation each).
        step, substrate, blur: insertion/deletion settings (see :func:`insertion_deletion`).
        masking: masking for the confidence metrics and coherency, "model" (default) or "pixel".
        road_percentiles, road_noise: ROAD's percentiles (default 10, ..., 90) and noise (default 0.01).
            Tied map values are ranked in raster order (``ties="raster"``), so flat regions of a map (a
            ReLU's zeros) cannot make ROAD's imputation unsolvable.
        seed: seeds ROAD's noise and the random logit test's classes. Default 0: the table is reproducible.
        mean, std: input normalisation (for "black"/"pixel" and Opti-CAM). Default ImageNet's.
        precision, batch_size: the engine's settings, for the maps and the metrics' forwards. The
            "precision" column says what a row's maps and batched forwards ran at ("fp32", or "bf16"/"fp16"
            where "auto" found the device's native low precision agreeing with fp32).
        warmup: explain the first image once with each method, untimed, before timing the method (default
            True): the first call of a method pays one-off costs (kernel selection, the engine's plan and
            layout copy) that would otherwise land on whichever method runs first. It costs one image's
            maps per method.
        keep_zero_columns: keep columns that are 0 for every method (default False: they are dropped and
            listed in :attr:`Comparison.dropped`).
        labels: the N true classes. With them, every misclassified image is also explained for its true
            class as well as for the wrong prediction, and the error-understanding benchmark (Chen et al.,
            ICLR 2024) is reported per method, per class explained and per true class in
            :attr:`Comparison.errors` / :attr:`Comparison.errors_by_class`.
        progress: ``progress(method, done, total)`` as methods finish (done counts methods).
        **options: method options (e.g. ``variant``, ``iterations``), passed to each method that takes them.

    Returns:
        A :class:`Comparison`: ``.rows`` (list of dicts with :attr:`Comparison.columns`, see :data:`UNITS`
        and :data:`BETTER`) and ``.to_dataframe()``.
    """
    model, inputs, wanted = check_call(model, inputs, target, precision=precision, batch_size=batch_size)
    names = list([m for m in METHODS if METHOD_CLASSES[m].in_comparisons] if methods is None else methods)
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
    chosen = _check_metrics(metrics)
    _check_step(step)
    _check_substrate(substrate)
    _check_blur(blur)
    road_percentiles = check_percentiles(road_percentiles)
    road_noise = _check_noise(road_noise)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    if masking not in MASKINGS:
        raise ValueError(f"masking must be 'model' or 'pixel'; got {masking!r}")
    x = inputs.detach().to(model_device(model))
    with preserved_state(model):
        targets = fixed_target(model, x, wanted)
        truth = wrong = None
        if labels is not None:
            truth = check_target_values(labels, x.shape[0])
            assert truth is not None
            wrong = misclassified(model, x, truth).to(x.device)
    n = x.shape[0]
    engine = {"precision": precision, "batch_size": batch_size, "mean": mean, "std": std}
    runner = {"precision": precision, "batch_size": batch_size}
    result = Comparison(rows=[], targets=targets.to(inputs.device))
    out = inputs.device
    for done, name in enumerate(names, start=1):
        opts = {k: v for k, v in options.items() if k in get_method(name).defaults}
        if warmup:
            with Explainer(model, layer, name, **engine, **opts) as first:
                first(x[:1], targets[:1])
        explainer = Explainer(model, layer, name, **engine, **opts)
        try:
            started = time.perf_counter()
            maps = explainer(x, targets)
            seconds = (time.perf_counter() - started) / n
            row: dict[str, Any] = {"method": name, "precision": explainer.precision_used or "fp32"}
            per_image: dict[str, torch.Tensor] = {}
            if "insertion_deletion" in chosen:
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
                    **runner,
                )
                row["precision"] = _least_exact(row["precision"], curves.precision)
                row["insertion_auc"] = float(curves.insertion_auc.mean())
                row["deletion_auc"] = float(curves.deletion_auc.mean())
                result.curves[name] = curves
            if "confidence" in chosen:
                change = confidence_change(
                    model, x, maps, targets, masking=masking, mean=mean, std=std, **runner
                )
                terms = confidence_scores(change["before"], change["after"])
                row["average_drop_%"] = float(terms["drop"].mean())
                row["average_increase_%"] = float(terms["increase"].float().mean() * 100)
                row["average_gain_%"] = float(terms["gain"].mean())
                row["drop_in_confidence_prob"] = float(change["drop_in_confidence"].mean())
                result.confidence[name] = {
                    "p": change["before"].to(out),
                    "o": change["after"].to(out),
                    **{k: v.to(out) for k, v in terms.items()},
                    "drop_in_confidence": change["drop_in_confidence"].to(out),
                    "targets": targets.to(out),
                }
            if "road" in chosen:
                scores = {
                    order: road(
                        model,
                        x,
                        maps,
                        targets,
                        road_percentiles,
                        order,
                        road_noise,
                        seed,
                        ties="raster",
                        **runner,
                    )
                    for order in ("most", "least")
                }
                row["road_morf_prob"] = float(scores["most"].mean())
                row["road_lerf_prob"] = float(scores["least"].mean())
                result.road[name] = {
                    **{k: v.to(out) for k, v in scores.items()},
                    "percentiles": road_percentiles,
                }
            if "sparseness" in chosen:
                per_image["sparseness_gini"] = sparseness(maps)
            if "complexity" in chosen:
                per_image["complexity_nats"] = complexity(maps)
            if "coherency" in chosen:
                per_image["coherency"] = coherency(
                    model, x, maps, targets, method=explainer, masking=masking, mean=mean, std=std
                )
            if "random_logit" in chosen:
                per_image["random_logit_ssim"] = random_logit(
                    model, x, maps, targets, method=explainer, seed=seed
                )["ssim"]
        finally:
            explainer.release()
        for column, values in per_image.items():
            row[column] = _mean(values)
        row["seconds_per_image"] = seconds
        if wrong is not None and bool(wrong.any()):
            _error_rows(result, model, x, name, layer, engine, opts, maps, targets, truth, wrong, runner)
        result.rows.append(row)
        result.maps[name] = maps.to(out)
        result.per_image[name] = {k: v.to(out) for k, v in per_image.items()}
        if progress is not None:
            progress(name, done, len(names))
    computed = ["method", "precision", *(c for g in chosen for c in _GROUP_COLUMNS[g]), "seconds_per_image"]
    if not keep_zero_columns:
        result.dropped = [
            c
            for c in computed
            if c in BETTER and c != "seconds_per_image" and all(r[c] == 0 for r in result.rows)
        ]
    result.columns = [c for c in COLUMNS if c in computed and c not in result.dropped]
    for r in result.rows:
        for c in result.dropped:
            del r[c]
    return result
