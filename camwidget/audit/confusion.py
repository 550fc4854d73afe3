"""The confusion view of an audit: which true classes the model takes for which, and which images.

Pure numpy on the labels and predictions the audit recorded; :meth:`AuditReport.confusion` and
:meth:`AuditReport.confusion_pairs` put names on it, the gallery's confusion panel and the exported report
draw it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ConfusedPair", "confused_pairs", "confusion_matrix"]


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts per (true class, predicted class).

    Args:
        labels, predictions: (N,) int class indices.

    Returns:
        ``(matrix, classes)``: (C, C) int64 counts, rows true classes and columns predicted classes, over
        the C classes that occur as a label or a prediction, in increasing order (``classes``, (C,) int64).
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(
            f"labels and predictions must be (N,) arrays of one length; got {y.shape}, {p.shape}"
        )
    classes = np.union1d(y, p)
    row, col = np.searchsorted(classes, y), np.searchsorted(classes, p)
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (row, col), 1)
    return matrix, classes


@dataclass(frozen=True)
class ConfusedPair:
    """Images of true class ``label`` predicted as ``predicted`` (another class).

    Attributes:
        count: how many; share: ``count`` over the label's images, 0..1.
        members: their positions in the arrays given, the most confident mistakes first (at most
            ``examples`` of them).
    """

    label: int
    predicted: int
    count: int
    share: float
    members: np.ndarray


def confused_pairs(
    labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray, examples: int = 6
) -> list[ConfusedPair]:
    """Every off-diagonal (label, prediction) pair with at least one image, most frequent first (ties: by
    label, then prediction).

    Args:
        labels, predictions: (N,) int class indices.
        confidence: (N,) the predicted class's probability, to order each pair's examples.
        examples: positions kept per pair. Default 6.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=-1.0)
    wrong = np.flatnonzero(y != p)
    per_label = {int(c): int(n) for c, n in zip(*np.unique(y, return_counts=True), strict=True)}
    found: list[ConfusedPair] = []
    if len(wrong):
        pairs, inverse, counts = np.unique(
            np.stack([y[wrong], p[wrong]], axis=1), axis=0, return_inverse=True, return_counts=True
        )
        inverse = inverse.ravel()
        for j, (a, b) in enumerate(pairs.tolist()):
            members = wrong[inverse == j]
            members = members[np.argsort(-conf[members], kind="stable")][: max(0, int(examples))]
            found.append(ConfusedPair(a, b, int(counts[j]), int(counts[j]) / per_label[a], members))
    found.sort(key=lambda pair: (-pair.count, pair.label, pair.predicted))
    return found
