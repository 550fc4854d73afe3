"""What the explorer's class selector offers for a model, the number shown beside each choice, and the
target that explains it.

A map explains one number (:mod:`camwidget.targets`). Which numbers a user can pick from depends on what
the model outputs, and only :mod:`camwidget.targets` reads outputs (:func:`~camwidget.targets.output_kind`,
:func:`~camwidget.targets.as_logits`, :func:`~camwidget.targets.segmentation_scores`,
:func:`~camwidget.targets.detections`). The kinds, each as *the model returns*: *the choices*, *the
number beside each*, *the target of choice i*:

- ``classes``, (N, K) logits: the K classes, their softmax probability, ``i`` (a bare class index, each
  method's and the curves' customary score) or ``Logit(i)``/``Probability(i)`` when ``target=`` chose one;
- ``labels``, (N, K) logits of a multi-label head: the K labels, their sigmoid, ``Sigmoid(i)``;
- ``segmentation``, (N, K, H, W) or ``{"out": ...}``: the K classes, the share of pixels predicted as each,
  ``SegmentationClass(i, mask)`` with the pixels predicted as ``i`` on the unpainted image;
- ``detections``, a list of detection dicts: the image's detections, the detector's score,
  ``DetectionBox(box_i, label_i)``;
- ``target``, anything, with ``target=`` a target or callable: that one target, its value, the target bound
  to the unpainted image's output.

A :class:`Reading` is what one image's output says about its choices; under the what-if brush the same
choices are read from the painted image's output (:meth:`Choices.read` with ``base=``), so a detection
keeps its box and a segmentation class its pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from camwidget.class_names import ClassNames
from camwidget.targets import (
    ClassIndex,
    DetectionBox,
    SegmentationClass,
    Target,
    as_logits,
    as_target,
    check_scores,
    describe_output,
    detections,
    output_kind,
    segmentation_scores,
)

__all__ = ["KINDS", "Choices", "Reading"]


def names_index(names: Sequence[str], target: object) -> int:
    """The index of ``target`` (an index or a name) among ``names`` (:class:`ClassNames` finds it)."""
    found = names if isinstance(names, ClassNames) else ClassNames(list(names), len(names))
    return found.index(target)  # type: ignore[arg-type]


KINDS = ("classes", "labels", "segmentation", "detections", "target")

# what the number beside a choice is, and what the insertion/deletion curves score
_SCORE = {
    "classes": "probability",
    "labels": "sigmoid",
    "segmentation": "share of pixels",
    "detections": "detection score",
    "target": "value",
}
_NOUN = {
    "classes": "class",
    "labels": "label",
    "segmentation": "class",
    "detections": "detection",
    "target": "target",
}


@dataclass
class Reading:
    """What one image's output says about its choices.

    Attributes:
        scores: (M,) float64: the number beside each choice (NaN where the model failed).
        pixels: segmentation: (h, w) int64 predicted class per pixel, at the output's resolution.
        boxes, labels: detections: (M, 4) x0, y0, x1, y1 in input pixels and (M,) int64 labels.
        bound: target: the target bound to the unpainted output (so a painted image is scored alike).
    """

    scores: np.ndarray
    pixels: torch.Tensor | None = None
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None
    bound: Target | None = None

    @property
    def count(self) -> int:
        """M, how many choices the image offers."""
        return int(self.scores.shape[0])

    @property
    def failed(self) -> bool:
        """Whether the model failed on the image (every score NaN)."""
        return bool(self.scores.size) and bool(np.isnan(self.scores).all())

    def order(self, k: int) -> list[int]:
        """The ``k`` choices with the highest numbers, best first (ties in index order)."""
        scores = np.nan_to_num(self.scores, nan=-np.inf)
        return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


class Choices:
    """The choices of one explorer's model (see the module doc). Build with :meth:`of`.

    Attributes:
        kind: one of :data:`KINDS`. noun: "class", "label", "detection" or "target". score: what the number
            beside a choice is ("probability", "sigmoid", "share of pixels", "detection score", "value").
        class_names: the class (or label) names; a detector's label names when given (else "class 3").
        fixed: the one target of kind "target" (else None).
        score_kind: for kind "classes", None (a bare class index: each method's and the curves' customary
            score) or "logit"/"probability" when ``target=`` chose the score.
    """

    def __init__(
        self,
        kind: str,
        class_names: Sequence[str],
        *,
        fixed: Target | None = None,
        score_kind: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        self.kind = kind
        self.class_names = class_names
        self.fixed = fixed
        self.score_kind = score_kind
        self.noun = _NOUN[kind]
        self.score = _SCORE[kind]

    # -------------------------------------------------------------------------------------------- build
    @classmethod
    def of(
        cls,
        output: Any,
        *,
        target: object = None,
        multilabel: bool = False,
        class_names: Sequence[str] | None = None,
    ) -> tuple[Choices, int | None]:
        """The choices for a model whose output on one image is ``output``, and the choice to show first
        (None: each image's top choice).

        Args:
            output: the model's output for one input (batch of 1).
            target: the explorer's ``target=``: None, a class index or name, a
                :class:`~camwidget.targets.Target` or any callable ``f(output) -> Tensor[N]`` (see
                :class:`~camwidget.CamExplorer`).
            multilabel: the (N, K) outputs are independent labels (sigmoid), not one softmax over classes.
            class_names: names of the K classes / labels (a detector's labels).

        Raises:
            TypeError, ValueError: an output this cannot read without a target, a target that does not fit
                the output, or names that do not fit (the message says what to pass).
        """
        if isinstance(target, bool):
            raise TypeError("target must be a class index or name, a camwidget.targets target or a callable")
        if isinstance(target, Target) or (callable(target) and not isinstance(target, type)):
            return cls._of_target(output, as_target(target, 1), multilabel, class_names)
        kind = output_kind(output)
        if kind == "detections":
            if target is not None:
                raise ValueError(
                    "for a detector, target= takes a camwidget.targets.DetectionBox or a callable; the "
                    "widget lists the detections of each image and explains the one you click"
                )
            return cls("detections", list(class_names or [])), None
        if kind == "logits":
            names = ClassNames(class_names, as_logits(output).shape[1])
            chosen = cls("labels" if multilabel else "classes", names)
        elif multilabel:
            raise ValueError(
                "multilabel=True needs (N, K) logits, one per label; the model returned "
                f"{describe_output(output)}"
            )
        elif kind == "segmentation":
            chosen = cls("segmentation", ClassNames(class_names, segmentation_scores(output).shape[1]))
        else:
            raise TypeError(
                f"the model returned {describe_output(output)}, which CamExplorer cannot list choices from; "
                "pass target= a callable that picks the score to explain from the output (e.g. "
                "camwidget.targets.Output(i) for a regression head, Similarity(reference) for an embedding)"
            )
        return chosen, None if target is None else names_index(chosen.class_names, target)

    @classmethod
    def _of_target(
        cls, output: Any, target: Target, multilabel: bool, class_names: Sequence[str] | None
    ) -> tuple[Choices, int | None]:
        classes = getattr(target, "classes", None)
        if isinstance(target, ClassIndex) and (classes is None or classes.numel() == 1):
            logits = as_logits(output)  # a class target needs logits: the error says what to pass instead
            names = ClassNames(class_names, logits.shape[1])
            first = None if classes is None else int(classes.flatten()[0])
            if first is not None and first >= len(names):
                raise ValueError(f"target class {first} out of range: the model has {len(names)} classes")
            if target.kind == "sigmoid":
                return cls("labels", names), first
            if multilabel:
                raise ValueError(
                    f"multilabel=True explains each label's sigmoid; target={target!r} asks for its "
                    f"{target.kind}"
                )
            return cls("classes", names, score_kind=target.kind if target.explicit else None), first
        if isinstance(target, SegmentationClass) and target.mask is None and not multilabel:
            k = segmentation_scores(output).shape[1]
            if target.c >= k:
                raise ValueError(
                    f"segmentation class {target.c} out of range: the model scores {k} classes (0..{k - 1})"
                )
            return cls("segmentation", ClassNames(class_names, k)), target.c
        return cls("target", list(class_names or []), fixed=target), 0

    # --------------------------------------------------------------------------------------------- read
    def read(self, output: Any, run: Callable[[torch.Tensor], Any], base: Reading | None = None) -> Reading:
        """What ``output`` (one input's) says about the choices; with ``base`` (the unpainted image's
        reading), the same choices scored on a painted image's output.

        Raises:
            TypeError, ValueError: the output does not hold what this kind reads, or a target's value is not
                one finite number (the message names the problem).
        """
        if self.kind == "classes":
            return Reading(torch.softmax(as_logits(output)[0].double(), dim=0).cpu().numpy())
        if self.kind == "labels":
            return Reading(torch.sigmoid(as_logits(output)[0].double()).cpu().numpy())
        if self.kind == "segmentation":
            scores = segmentation_scores(output)[0]
            pixels = scores.argmax(dim=0)
            shares = torch.bincount(pixels.flatten(), minlength=scores.shape[0]).double() / pixels.numel()
            return Reading(shares.cpu().numpy(), pixels=pixels.cpu())
        if self.kind == "detections":
            found = detections(output)[0]
            if base is not None:  # each unpainted detection's score on the painted image (0 once it is gone)
                values = [float(self.target(base, i)(output)[0]) for i in range(base.count)]
                return Reading(np.asarray(values, dtype=np.float64), boxes=base.boxes, labels=base.labels)
            return Reading(
                found["scores"].detach().double().cpu().numpy(),
                boxes=found["boxes"].detach().float().cpu().numpy(),
                labels=found["labels"].detach().cpu().numpy().astype(np.int64),
            )
        assert self.fixed is not None
        bound = base.bound if base is not None else self.fixed.prepare(output, run)
        value = check_scores(bound(output), 1, f"the target {bound.name!r}")
        return Reading(value.detach().double().cpu().numpy(), bound=bound)

    def failed(self, count: int) -> Reading:
        """A reading of an image the model failed on: ``count`` NaN scores."""
        return Reading(np.full(count, np.nan))

    @property
    def count(self) -> int | None:
        """How many choices every image offers (None for detections: per image)."""
        if self.kind == "detections":
            return None
        if self.kind == "target":
            return 1
        return len(self.class_names)

    # ------------------------------------------------------------------------------------- per choice
    def name(self, reading: Reading | None, i: int) -> str:
        """How choice ``i`` is shown: its class name, ``"cat · box 3"`` for a detection, the target's name."""
        if self.kind == "target":
            assert self.fixed is not None
            return self.fixed.name
        if self.kind == "detections":
            if reading is None or reading.labels is None or not 0 <= i < reading.count:
                return f"detection {i}"
            return f"{self.label_name(int(reading.labels[i]))} · box {i}"
        return self.class_names[i]

    def label_name(self, label: int) -> str:
        """A detector's label name (from ``class_names`` when given)."""
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class {label}"

    def target(self, reading: Reading | None, i: int) -> Any:
        """What the engine explains for choice ``i`` of an image whose unpainted reading is ``reading``.

        Raises:
            ValueError: ``i`` is not one of the image's choices.
        """
        if self.kind == "classes":
            if self.score_kind is None:
                return i  # a bare class index: Score-CAM's presets and the curves' softmax, as everywhere
            return ClassIndex(torch.tensor([i]), self.score_kind, explicit=True)
        if self.kind == "labels":
            return ClassIndex(torch.tensor([i]), "sigmoid", explicit=True)
        if self.kind == "segmentation":
            if reading is None or reading.pixels is None:
                return SegmentationClass(i)
            return SegmentationClass(i, mask=(reading.pixels == i).float())
        if self.kind == "detections":
            if reading is None or reading.boxes is None or not 0 <= i < reading.count:
                raise ValueError(f"detection {i} is not one of this image's detections")
            return DetectionBox(reading.boxes[i], int(reading.labels[i]))  # type: ignore[index]
        if reading is not None and reading.bound is not None:
            return reading.bound
        return self.fixed

    def curve_label(self) -> str:
        """What the insertion/deletion curves score (their y axis)."""
        if self.kind == "classes":
            return "class probability" if self.score_kind in (None, "probability") else "class logit"
        if self.kind == "labels":
            return "label sigmoid"
        if self.kind == "segmentation":
            return "class score over its pixels"
        if self.kind == "detections":
            return "detection score"
        assert self.fixed is not None
        return self.fixed.name

    def describe(self) -> dict[str, Any]:
        """The ``choices`` trait: what the selector lists and how it shows the numbers."""
        return {
            "kind": self.kind,
            "noun": self.noun,
            "score": self.score,
            "searchable": self.kind in ("classes", "labels", "segmentation"),
            "fixed": self.kind == "target",
            "curve_label": self.curve_label(),
        }
