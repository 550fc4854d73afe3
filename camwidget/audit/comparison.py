"""Two models audited on one dataset, side by side: where their predictions and their maps disagree.

:meth:`AuditReport.compare` (``report_a.compare(report_b)``) pairs the images both audits explained (same
data fingerprint, same dataset indices, error rows left out) and measures, per image, whether the two
predictions agree and how different the two maps are; per true class, the two accuracies, how often the
models agree and how different their maps are on average. The gallery shows the two maps side by side
(``AuditExplorer(report_a, compare=report_b)``).

Map disagreement is ``1 - Pearson correlation`` of the two maps as they are shown (ReLU of the stored
map), resized bilinearly to a common shape (the larger height and width of the two) when the layers differ
in resolution: 0 for the same map, 1 for unrelated maps, up to 2 for opposite ones; NaN where either map
is flat (no evidence to compare). With different transforms (a 224 crop against a 299 resize) the maps
cover the input in different frames and the comparison is only approximate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from camwidget.audit.report import AuditReport

__all__ = ["Comparison", "compare_reports", "map_disagreement"]


def map_disagreement(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """``1 - Pearson`` of paired maps, per pair.

    Args:
        maps_a, maps_b: (N, h, w) and (N, h', w') maps; negative values are dropped (ReLU), and the two
            are resized bilinearly to (max(h, h'), max(w, w')) when they differ.

    Returns:
        (N,) float64 in [0, 2]; NaN where either map is flat.
    """
    from camwidget.audit.report import _resize

    a = np.maximum(np.asarray(maps_a, dtype=np.float32), 0)
    b = np.maximum(np.asarray(maps_b, dtype=np.float32), 0)
    if a.ndim != 3 or b.ndim != 3 or len(a) != len(b):
        raise ValueError(f"maps must be (N, h, w) of one N; got {a.shape} and {b.shape}")
    shape = (max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]))
    if a.shape[1:] != shape:
        a = np.stack([_resize(m, shape) for m in a]) if len(a) else a.reshape(0, *shape)
    if b.shape[1:] != shape:
        b = np.stack([_resize(m, shape) for m in b]) if len(b) else b.reshape(0, *shape)
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    fa -= fa.mean(axis=1, keepdims=True)
    fb -= fb.mean(axis=1, keepdims=True)
    norm = np.sqrt((fa * fa).sum(axis=1) * (fb * fb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(norm > 1e-12, (fa * fb).sum(axis=1) / np.where(norm > 1e-12, norm, 1), np.nan)
    return 1.0 - np.clip(r, -1.0, 1.0)


@dataclass
class Comparison:
    """Two audits of one dataset compared image by image (see the module doc).

    Attributes:
        a, b: the two reports; names: what to call them ("a", "b" unless given).
        indices: (M,) dataset indices both audited without error, in increasing order.
        predicted_a, predicted_b, labels: (M,) int64 (labels -1 where unknown).
        disagreement: (M,) map disagreement, ``1 - Pearson`` (NaN for a flat map).
    """

    a: AuditReport
    b: AuditReport
    names: tuple[str, str]
    indices: np.ndarray
    labels: np.ndarray
    predicted_a: np.ndarray
    predicted_b: np.ndarray
    disagreement: np.ndarray
    _frames: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def agree(self) -> np.ndarray:
        """(M,) bool: both models predict the same class."""
        return self.predicted_a == self.predicted_b

    def per_image(self) -> pd.DataFrame:
        """One row per image both audited, indexed by dataset index: ``label``, ``label_name``,
        ``predicted_<a>``, ``predicted_<b>`` (names), ``correct_<a>``, ``correct_<b>`` (bool, NA without a
        label), ``agree`` (same prediction), ``map_disagreement`` (0..2, NaN for a flat map). The images
        the models disagree on most come first (by prediction, then by map)."""
        if "image" not in self._frames:
            import pandas as pd

            na, nb = self.names
            known = self.labels >= 0
            df = pd.DataFrame(index=pd.Index(self.indices, name="index"))
            df["label"] = pd.array(
                [int(v) if k else None for v, k in zip(self.labels, known, strict=True)], dtype="Int64"
            )
            df["label_name"] = [
                self.a._name(v) if k else None for v, k in zip(self.labels, known, strict=True)
            ]
            df[f"predicted_{na}"] = [self.a._name(v) for v in self.predicted_a]
            df[f"predicted_{nb}"] = [self.b._name(v) for v in self.predicted_b]
            for name, pred in ((na, self.predicted_a), (nb, self.predicted_b)):
                df[f"correct_{name}"] = pd.array(
                    [bool(c) if k else None for c, k in zip(pred == self.labels, known, strict=True)],
                    dtype="boolean",
                )
            df["agree"] = self.agree
            df["map_disagreement"] = self.disagreement
            self._frames["image"] = df.sort_values(
                ["agree", "map_disagreement"], ascending=[True, False], kind="stable", na_position="last"
            )
        return self._frames["image"]

    def per_class(self) -> pd.DataFrame:
        """Per true class (by name): ``images``, ``accuracy_<a>``, ``accuracy_<b>`` (0..1), ``agreement``
        (share with the same prediction), ``only_<a>_right``, ``only_<b>_right`` (counts), and
        ``map_disagreement`` (mean over the class's images with two non-flat maps). Sorted by agreement,
        lowest first."""
        import pandas as pd

        na, nb = self.names
        rows = []
        for c in sorted({int(v) for v in self.labels if v >= 0}):
            sel = self.labels == c
            ra, rb = self.predicted_a[sel] == c, self.predicted_b[sel] == c
            d = self.disagreement[sel]
            rows.append(
                {
                    "class": self.a._name(c),
                    "images": int(sel.sum()),
                    f"accuracy_{na}": float(ra.mean()),
                    f"accuracy_{nb}": float(rb.mean()),
                    "agreement": float(self.agree[sel].mean()),
                    f"only_{na}_right": int((ra & ~rb).sum()),
                    f"only_{nb}_right": int((rb & ~ra).sum()),
                    "map_disagreement": float(np.nanmean(d)) if np.isfinite(d).any() else float("nan"),
                }
            )
        df = pd.DataFrame(rows)
        return df.set_index("class").sort_values("agreement", kind="stable") if len(df) else df

    def summary(self) -> str:
        """One paragraph: images compared, both accuracies, agreement, mean map disagreement."""
        na, nb = self.names
        known = self.labels >= 0
        acc = [
            float((p[known] == self.labels[known]).mean()) if known.any() else float("nan")
            for p in (self.predicted_a, self.predicted_b)
        ]
        d = self.disagreement
        mean = float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")
        return (
            f"{len(self.indices)} images audited by both: accuracy {na} {acc[0]:.1%}, {nb} {acc[1]:.1%}; "
            f"the models agree on {self.agree.mean():.1%} of them; mean map disagreement (1 - Pearson) "
            f"{mean:.2f}"
        )

    def __repr__(self) -> str:
        return f"Comparison({self.summary()})"


def compare_reports(a: AuditReport, b: AuditReport, names: tuple[str, str] = ("a", "b")) -> Comparison:
    """Compare two audits of one dataset; see :class:`Comparison`.

    Raises:
        ValueError: the audits read different data (their data fingerprints differ), or share no image.
    """
    fa = (a.settings.get("dataset") or {}).get("fingerprint")
    fb = (b.settings.get("dataset") or {}).get("fingerprint")
    if fa != fb:
        raise ValueError(
            "the two audits read different data (their data fingerprints differ: "
            f"{fa} vs {fb}); compare audits of one dataset"
        )
    if len(set(names)) != 2 or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise ValueError(f"names must be two different identifiers, e.g. ('resnet', 'vit'); got {names!r}")
    ta, tb = a.table(), b.table()
    ok_a = ta["idx"][~ta["error_flag"]]
    ok_b = tb["idx"][~tb["error_flag"]]
    common = np.intersect1d(ok_a, ok_b)
    if len(common) == 0:
        raise ValueError("the two audits share no image audited without error")
    pa, pb = a._positions(common), b._positions(common)
    labels = ta["label"][pa]
    labels = np.where(np.isfinite(labels), labels, -1).astype(np.int64)
    disagreement = map_disagreement(a._all_maps()[pa], b._all_maps()[pb])
    return Comparison(
        a=a,
        b=b,
        names=(str(names[0]), str(names[1])),
        indices=common,
        labels=labels,
        predicted_a=ta["predicted"][pa].astype(np.int64),
        predicted_b=tb["predicted"][pb].astype(np.int64),
        disagreement=disagreement,
    )
