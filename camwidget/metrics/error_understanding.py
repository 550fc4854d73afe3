"""Error understanding (Chen et al., "Less is More", ICLR 2024): on images the model gets *wrong*, does the
map find the evidence for the *true* class?

For each image, with its ground-truth class y and a map (made for y, or for the wrong prediction: the
benchmark's Score-CAM runs explained the prediction, its baselines the true class; compute both and say
which), following the published evaluation code:

- **confidence path**: pixels ranked by the map, most salient first (ties in raster order); for
  k = 1 .. steps − 1 the top ``int(H·W·k / steps)`` pixels are kept and every other pixel is set to black
  *in pixel space* (x·std + mean = 0); the path is the model's softmax probability of y at each k
  (steps = 25: 4%, 8%, ..., 96% of the pixels kept);
- **average highest confidence** for a range p (25%, 50%, 75%, 100%): the maximum of the path over its
  first ``int(p·steps)`` points (the points that keep at most p of the pixels), averaged over the images;
  the retained area at which each image's maximum occurs is reported too, since the paper's figures do not
  say which range they used;
- **insertion AUC** for y: 26 points evenly spaced from no pixel to all pixels (``int(H·W·j / 25)`` for
  j = 0..25), inserting the most salient pixels onto the model's all-zero input (preprocessed space);
  trapezoids on [0, 1].

Published Score-CAM figures on CUB-200-2011: average highest confidence 0.2510 (ResNet-101), 0.3141
(MobileNetV2), 0.2403 (EfficientNetV2-M); insertion AUC 0.1073 / 0.1195 / 0.1572.

All (steps − 1 + 26)·N perturbed inputs go through one :class:`~camwidget.engine.batching.ForwardRunner`
stream (memory-bounded batches, a private copy checked against the live model, the engine's precision
rule), built chunk by chunk from each image's rank map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camwidget.engine.batching import ForwardRunner
from camwidget.engine.explainer import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import check_call, check_target_values
from camwidget.metrics._common import (
    check_maps,
    check_normalisation,
    model_device,
    predict,
    target_probabilities,
)
from camwidget.metrics.insertion_deletion import auc, saliency_ranks

__all__ = ["RANGES", "ErrorUnderstanding", "error_understanding", "misclassified"]

RANGES = (0.25, 0.5, 0.75, 1.0)
_INSERTION_POINTS = 26  # the benchmark's insertion curve: 0, 1/25, ..., 25/25 of the pixels


@dataclass
class ErrorUnderstanding:
    """Error-understanding figures of N images (see the module doc).

    Attributes:
        path: (N, steps − 1) float32 softmax probability of the true class with the top k/steps of the
            pixels kept (black elsewhere), k = 1 .. steps − 1.
        kept: (steps − 1,) float32 share of pixels kept at each path point, ``int(H·W·k/steps) / (H·W)``.
        insertion: (N, 26) float32 true-class probability with 0, 1/25, ..., all pixels inserted onto the
            zero input.
        labels: (N,) int64 true classes; predictions: (N,) int64 the model's classes on the images.
        ranges: the ranges p of :attr:`highest`.
        precision: what the forwards ran at.
    """

    path: torch.Tensor
    kept: torch.Tensor
    insertion: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor
    ranges: tuple[float, ...]
    steps: int
    precision: str = "fp32"
    _firsts: dict[float, int] = field(default_factory=dict, repr=False)

    def highest(self, p: float) -> torch.Tensor:
        """(N,) the highest true-class probability over the path points that keep at most ``p`` of the
        pixels (the first ``int(p·steps)`` points)."""
        return self.path[:, : self._first(p)].amax(dim=1)

    def area_at_highest(self, p: float) -> torch.Tensor:
        """(N,) the share of pixels kept where :meth:`highest` occurs (the first such point)."""
        index = self.path[:, : self._first(p)].argmax(dim=1)
        return self.kept.to(index.device)[index]

    @property
    def insertion_auc(self) -> torch.Tensor:
        """(N,) area under the true-class insertion curve, in [0, 1]."""
        return auc(self.insertion)

    @property
    def misclassified(self) -> torch.Tensor:
        """(N,) bool: the model's class differs from the true class."""
        return self.predictions != self.labels

    def summary(self) -> dict[str, float]:
        """Means over the images: ``average_highest_confidence@25%`` ... ``@100%``, the mean retained area
        at each maximum, and ``insertion_auc``."""
        return self.summary_of(torch.arange(self.path.shape[0], device=self.path.device))

    def summary_of(self, index: torch.Tensor) -> dict[str, float]:
        """:meth:`summary` over the images ``index`` (NaN for none)."""
        index = index.to(self.path.device)
        out: dict[str, float] = {}
        for p in self.ranges:
            out[f"average_highest_confidence@{p:.0%}"] = _mean(self.highest(p)[index])
            out[f"area_at_highest@{p:.0%}"] = _mean(self.area_at_highest(p)[index])
        out["insertion_auc"] = _mean(self.insertion_auc[index])
        return out

    def to_dataframe(self) -> Any:
        """One row per image: label, prediction, highest confidence and its area per range, insertion AUC."""
        import pandas as pd

        data: dict[str, Any] = {
            "label": self.labels.cpu().numpy(),
            "prediction": self.predictions.cpu().numpy(),
        }
        for p in self.ranges:
            data[f"highest_confidence@{p:.0%}"] = self.highest(p).cpu().numpy()
            data[f"area_at_highest@{p:.0%}"] = self.area_at_highest(p).cpu().numpy()
        data["insertion_auc"] = self.insertion_auc.cpu().numpy()
        return pd.DataFrame(data)

    def _first(self, p: float) -> int:
        return max(1, min(self.path.shape[1], int(p * self.steps)))


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else float("nan")


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else float("nan")


def misclassified(model: nn.Module, inputs: torch.Tensor, labels: object) -> torch.Tensor:
    """(N,) bool: which images ``model`` gets wrong (fp32 forward; the model is left as it came)."""
    model, inputs, _ = check_call(model, inputs)
    y = check_target_values(labels, inputs.shape[0])
    assert y is not None
    with preserved_state(model):
        predictions = predict(model, inputs.detach().to(model_device(model))).argmax(dim=1)
    return (predictions.cpu() != y).to(inputs.device)


def error_understanding(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: object,
    maps: torch.Tensor,
    *,
    steps: int = 25,
    ranges: Sequence[float] = RANGES,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    precision: str = "auto",
    batch_size: int | str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> ErrorUnderstanding:
    """The error-understanding benchmark of ``maps`` (see the module doc for the protocol).

    Args:
        model: classifier returning (N, K) logits; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects (the benchmark resizes the
            whole image, no crop). Usually the misclassified images only (:func:`misclassified`); any images
            are accepted and :attr:`ErrorUnderstanding.misclassified` says which were.
        labels: the N true classes (ints, an int tensor or array).
        maps: (N, H, W) (or (N, 1, H, W)) saliency maps at the input resolution; only their order matters.
        steps: path resolution, >= 2. Default 25 (4% per step).
        ranges: the shares p of pixels for the average highest confidence, in (0, 1]. Default
            (0.25, 0.5, 0.75, 1.0).
        mean, std: the inputs' normalisation, to make black pixels. Default ImageNet's.
        precision, batch_size: for the forwards, see :class:`~camwidget.engine.batching.ForwardRunner`.
        progress: ``progress(done, total)`` over the perturbed forwards; raise ``Cancelled`` to stop.

    Returns:
        :class:`ErrorUnderstanding`, its tensors on the inputs' device.

    Raises:
        ValueError, TypeError: bad maps, labels, steps or ranges (before any forward; the model is
            untouched).
    """
    model, inputs, _ = check_call(model, inputs, precision=precision, batch_size=batch_size)
    if inputs.ndim != 4:
        raise ValueError(f"error_understanding needs (N, C, H, W) images; got {tuple(inputs.shape)}")
    n = inputs.shape[0]
    y = check_target_values(labels, n)
    if y is None:
        raise ValueError("labels are required: the true class of each image")
    maps = check_maps(maps, inputs)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (the benchmark uses 25); got {steps!r}")
    ranges = tuple(float(p) for p in ranges)
    if not ranges or any(not 0 < p <= 1 for p in ranges):
        raise ValueError(f"ranges must be shares in (0, 1], e.g. (0.25, 0.5, 0.75, 1.0); got {ranges!r}")
    device = model_device(model)
    x = inputs.detach().to(device)
    mu, sigma = check_normalisation(mean, std, x.shape[1], device)
    black = (-mu / sigma).to(x.dtype)
    hw = x.shape[-1] * x.shape[-2]
    ranks = saliency_ranks(maps.to(device))
    path_counts = torch.tensor([int(hw * k / steps) for k in range(1, steps)], device=device)
    insert_counts = torch.tensor(
        [int(hw * j / (_INSERTION_POINTS - 1)) for j in range(_INSERTION_POINTS)], device=device
    )
    counts = torch.cat([path_counts, insert_counts])  # per image: the path, then the insertion curve
    per_image = counts.numel()
    n_path = path_counts.numel()

    def make_batch(start: int, stop: int) -> torch.Tensor:
        j = torch.arange(start, stop, device=device)
        image, point = j // per_image, j % per_image
        kept = (ranks[image] < counts[point].view(-1, 1, 1)).unsqueeze(1)
        fill = torch.where((point < n_path).view(-1, 1, 1, 1), black, torch.zeros_like(black))
        return torch.where(kept, x[image], fill)

    with preserved_state(model):
        logits = predict(model, x)
        k = logits.shape[1]
        if bool((y >= k).any()):
            raise ValueError(f"labels {y.tolist()} out of range: the model has {k} classes (0..{k - 1})")
        runner = ForwardRunner(
            model, precision=precision, batch_size=batch_size, progress=progress, reference=(x, logits)
        )
        out = runner.logits(make_batch, n * per_image)
    labels_d = y.to(device)
    probs = target_probabilities(out, labels_d.repeat_interleave(per_image)).view(n, per_image)
    target_device = inputs.device
    return ErrorUnderstanding(
        path=probs[:, :n_path].to(target_device),
        kept=(path_counts.float() / hw).to(target_device),
        insertion=probs[:, n_path:].to(target_device),
        labels=y.to(target_device),
        predictions=logits.argmax(dim=1).to(target_device),
        ranges=ranges,
        steps=steps,
        precision=runner.precision_used or "fp32",
    )
