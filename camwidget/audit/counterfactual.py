"""The intervention that convicts a shortcut: paste the place onto other classes, remove it from the class.

An audit finding says "these images' maps sit on this place"; it does not say the model *uses* what is
there. Two counterfactual edits of the audited inputs do:

- **paste**: the place's pixels, cut from the class's image that leans on it most, pasted at the same
  spot into images of other classes (those not predicted as the class). The paste flip rate is the
  share of them that the model now predicts as the class;
- **remove**: in the class's images that lean on the place (and are predicted as the class), the place
  is filled with each image's own mean colour outside it (``fill="mean"``) or with its blurred pixels
  (``fill="blur"``, RISE's blur). The removal flip rate is the share no longer predicted as the class.

A stamp the model relies on flips most pasted images; an innocent place (the class's object often sits
there) flips few. The inputs are the audited ones (:meth:`AuditReport.inputs`), the predictions come
from the engine's plain forward (:meth:`camwidget.Explainer.predict`), in batches, on the model's device.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from camwidget.audit.shortcuts import Shortcut, format_box

if TYPE_CHECKING:
    from camwidget.audit.report import AuditReport

__all__ = ["FILLS", "Counterfactual", "run_counterfactual"]

FILLS = ("mean", "blur")
"""How a removed place is filled: the image's mean colour outside it, or its blurred pixels."""


@dataclass(frozen=True)
class Counterfactual:
    """What pasting and removing a finding's place did to the model's predictions.

    Attributes:
        class_index, class_name: the finding's class.
        region: the finding's place (a region name or ``"hotspot (...)"``).
        box: (x0, y0, x1, y1) integer input pixels that were pasted and removed.
        fill: "mean" or "blur".
        source: dataset index of the image the pasted pixels were cut from.
        pasted: other classes' images the place was pasted into (not predicted as the class before).
        pasted_flipped: how many of them the model then predicts as the class.
        paste_flip_rate: ``pasted_flipped / pasted`` (NaN when nothing was pasted).
        paste_examples: dataset indices of flipped pasted images.
        removed: the class's leaning images, predicted as the class, the place was removed from.
        removed_flipped: how many of them are then no longer predicted as the class.
        remove_flip_rate: ``removed_flipped / removed`` (NaN when nothing was removed).
        remove_examples: dataset indices of images whose prediction changed on removal.
    """

    class_index: int
    class_name: str
    region: str
    box: tuple[int, int, int, int]
    fill: str
    source: int
    pasted: int
    pasted_flipped: int
    paste_flip_rate: float
    removed: int
    removed_flipped: int
    remove_flip_rate: float
    paste_examples: list[int] = field(default_factory=list)
    remove_examples: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence: the two flip rates with their counts."""
        return (
            f"Pasted onto {self.pasted} other images it flips {self.pasted_flipped} "
            f"({_pct(self.paste_flip_rate)}) to {self.class_name!r}; removed ({self.fill} fill) from "
            f"{self.removed} of the class's images it flips {self.removed_flipped} "
            f"({_pct(self.remove_flip_rate)})"
        )

    def __str__(self) -> str:
        return (
            f"{self.class_name!r} -> {self.region} {format_box(self.box)} cut from #{self.source}: "
            f"{self.summary()}. Flipped by pasting: {self.paste_examples[:6]}; by removal: "
            f"{self.remove_examples[:6]}"
        )


def _pct(v: float) -> str:
    return "–" if math.isnan(v) else f"{100 * v:.0f}%"


def _spread(indices: list[int], limit: int | None) -> list[int]:
    """At most ``limit`` of ``indices``, spread evenly (deterministic); all when limit is None."""
    if limit is None or len(indices) <= limit:
        return list(indices)
    picks = np.linspace(0, len(indices) - 1, limit).round().astype(int)
    return [indices[i] for i in sorted(set(picks.tolist()))]


def _pixel_box(box: tuple[float, ...], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Box corners as pixel slices: x0, y0 floored, x1, y1 ceiled, clipped (the audit's convention)."""
    h, w = size
    x0, y0, x1, y1 = box
    return (
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(w, math.ceil(x1)),
        min(h, math.ceil(y1)),
    )


def run_counterfactual(
    report: AuditReport,
    shortcut: Shortcut,
    model: nn.Module,
    *,
    limit: int | None = 64,
    fill: str = "mean",
    examples: int = 6,
    batch_size: int = 64,
) -> Counterfactual:
    """Paste ``shortcut``'s place onto other classes' images and remove it from the class's own.

    Args:
        report: the audit, knowing its dataset (:meth:`AuditReport.load` with ``dataset=``, or the report
            ``camwidget.audit`` returned).
        shortcut: a finding of :meth:`AuditReport.shortcuts`.
        model: the audited model (any device; left as it came). Another model is allowed (a warning
            says so): the test then tells how *that* model reacts.
        limit: at most this many images per direction, spread evenly over the candidates (None: all).
            Default 64.
        fill: "mean" (default: each image's mean colour outside the place) or "blur" (the image's own
            RISE-blurred pixels there).
        examples: flipped images listed per direction. Default 6.
        batch_size: images per forward pass. Default 64.

    Returns:
        A :class:`Counterfactual`.

    Raises:
        ValueError: the report does not know its dataset, the finding has no image leaning on the
            place, or ``fill`` is unknown.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}; got {fill!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    if not shortcut.user_indices:
        raise ValueError("the finding lists no image leaning on its place: there is nothing to cut")
    from camwidget.audit.fingerprint import model_fingerprint
    from camwidget.engine.explainer import Explainer

    if model_fingerprint(model) != report.settings.get("model"):
        warnings.warn(
            "this model is not the audited one (its fingerprint differs): the counterfactual tells how "
            "this model reacts to the audited finding",
            stacklevel=2,
        )
    explainer = Explainer(model, report.layer, report.method)
    k = shortcut.class_index

    def predict(indices: list[int], edit: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[int]:
        out: list[int] = []
        for start in range(0, len(indices), batch_size):
            x = report.inputs(indices[start : start + batch_size])
            if edit is not None:
                x = edit(x)
            out += explainer.predict(x).argmax(dim=1).cpu().tolist()
        return out

    source = int(shortcut.user_indices[0])
    image = report.inputs([source])[0]
    size = (int(image.shape[-2]), int(image.shape[-1]))
    box = shortcut.box
    if shortcut.kind == "hotspot" and report.settings is not None:
        # a hotspot is known to within a map cell (a unit's receptive field is wider than its cell):
        # the intervention takes one cell more on every side
        maps_h, maps_w = report.maps_shape()
        cy, cx = size[0] / maps_h, size[1] / maps_w
        box = (box[0] - cx, box[1] - cy, box[2] + cx, box[3] + cy)
    x0, y0, x1, y1 = _pixel_box(box, size)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the finding's box {shortcut.box} is empty in a {size[1]}x{size[0]} image")
    patch = image[:, y0:y1, x0:x1].clone()

    t = report.table()
    ok = ~t["error_flag"]
    pred_stored = t["predicted"]
    candidates = [int(i) for i in t["idx"][ok & np.isfinite(pred_stored) & (pred_stored != k)]]
    targets = _spread(candidates, limit)

    def paste(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = patch.to(x.dtype)
        return x

    before = predict(targets)
    targets = [i for i, p in zip(targets, before, strict=True) if p != k]
    after = predict(targets, paste)
    pasted_flips = [i for i, p in zip(targets, after, strict=True) if p == k]

    inside = torch.zeros(size, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True

    def remove(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        if fill == "mean":
            value = x[:, :, ~inside].mean(dim=2)  # (n, C): each image's colour outside the place
            x[:, :, y0:y1, x0:x1] = value[:, :, None, None]
        else:
            from camwidget.metrics import blur_images

            x[:, :, y0:y1, x0:x1] = blur_images(x)[:, :, y0:y1, x0:x1]
        return x

    own = _spread([int(i) for i in shortcut.user_indices], limit)
    own_before = predict(own)
    own = [i for i, p in zip(own, own_before, strict=True) if p == k]
    own_after = predict(own, remove)
    removal_flips = [i for i, p in zip(own, own_after, strict=True) if p != k]
    explainer.release()
    return Counterfactual(
        class_index=k,
        class_name=shortcut.class_name,
        region=shortcut.region,
        box=(x0, y0, x1, y1),
        fill=fill,
        source=source,
        pasted=len(targets),
        pasted_flipped=len(pasted_flips),
        paste_flip_rate=len(pasted_flips) / len(targets) if targets else float("nan"),
        removed=len(own),
        removed_flipped=len(removal_flips),
        remove_flip_rate=len(removal_flips) / len(own) if own else float("nan"),
        paste_examples=pasted_flips[:examples],
        remove_examples=removal_flips[:examples],
    )
