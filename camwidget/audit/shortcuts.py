"""Shortcut findings: classes some of whose images lean on one place far more than other classes' do.

A shortcut (a watermark, a scanner tag, a border) need not be used by a whole class: a stamp on a
quarter of a class's images that flips their predictions barely moves the class's *mean* map. So the
finder works per image:

1. **Where**: every named region of the audit, and *hotspots*: compact groups of map cells where this
   class's images peak far more often than other classes' images do (each image's peak cells, 3% of the
   map, are counted; the hotspot grows from the most over-represented cell to its neighbours at least
   half as over-represented, at most ``max_hotspot`` of the map). A hotspot that mostly lies in a
   named region already reported for the class is not repeated.
2. **Who leans there**: an image leans on a named region when its share of map energy there is above
   the threshold ``max(95th percentile of other classes' images, 2 x the region's share of the area)``:
   an outlier against the other classes *and* at least twice what a flat map would put there. It leans
   on a hotspot when its map peaks there, with at least twice a flat map's share (a class whose maps
   are merely more concentrated than others' does not make every cell a hotspot).
3. **Score**: the fraction of the class's images that lean there minus the fraction of other classes'
   images that do (both against the same threshold), in [-1, 1]. A quarter of a class on a stamp
   scores about 0.2, a whole class about 0.9, noise about 0. Findings are sorted by it.

Each :class:`Shortcut` says how many images lean there, how much of their energy they put there and
how that compares with the place's area (``lift``), which images (``user_indices``, ``examples``), and,
once tested (:mod:`camwidget.audit.counterfactual`), what pasting and removing the place does to the
predictions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from camwidget.audit.store import region_column

if TYPE_CHECKING:
    import pandas as pd

    from camwidget.audit.counterfactual import Counterfactual
    from camwidget.audit.report import AuditReport

__all__ = ["Shortcut", "Shortcuts", "find_shortcuts", "format_box"]

PEAK_FRACTION = 0.03
"""Share of an image's map cells counted as its peak, when looking for hotspots."""
OUTLIER_QUANTILE = 0.95
"""An image leans on a place when its energy share there exceeds this quantile of other classes'."""


def format_box(box: Iterable[float]) -> str:
    """``(x0, y0, x1, y1)`` with integers where the values are whole, one decimal elsewhere."""
    parts = [f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}" for v in box]
    return "(" + ", ".join(parts) + ")"


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%"


@dataclass(frozen=True)
class Shortcut:
    """A place some of a class's images lean on far more than other classes' images do.

    Attributes:
        class_index, class_name: the class (predicted class by default, see ``by``).
        kind: "region" (one of the audit's named regions) or "hotspot" (a compact place found in
            where the class's maps peak).
        region: the region's name, or ``"hotspot (x0, y0, x1, y1)"``.
        box: (x0, y0, x1, y1) in input pixels: the region's box (a mask's bounding box), or the
            hotspot's cells.
        score: ``users_fraction - others_fraction`` in [-1, 1]; findings are sorted by it.
        users: how many of the class's images lean on the place (energy share above ``threshold``).
        images: how many images the class has in the audit.
        users_fraction: ``users / images``.
        others_fraction: the fraction of other classes' images above the same threshold.
        share: the class's mean energy share in the place (all its images), 0..1.
        others: the median over the other classes of their mean share, 0..1.
        user_share: the users' mean energy share in the place, 0..1.
        area: the place's share of the image area, 0..1.
        lift: ``user_share / area``: how many times more energy the users put there than a flat map.
        threshold: regions: the energy share above which an image counts as leaning on the region
            (NaN for hotspots, where an image leans when its map peaks there).
        examples: dataset indices of users, most energy there first (at most ``examples``).
        user_indices: dataset indices of every user, most energy there first.
        column: the :meth:`AuditReport.to_dataframe` column with each image's share (regions), or None.
        cells: hotspots: the (row, col) map cells of the place; None for regions.
        by: "predicted" or "label".
        counterfactual: the intervention's result once tested, else None.
    """

    class_index: int
    class_name: str
    kind: str
    region: str
    box: tuple[float, float, float, float]
    score: float
    users: int
    images: int
    users_fraction: float
    others_fraction: float
    share: float
    others: float
    user_share: float
    area: float
    lift: float
    threshold: float
    examples: list[int] = field(default_factory=list)
    user_indices: list[int] = field(default_factory=list)
    column: str | None = None
    cells: tuple[tuple[int, int], ...] | None = None
    by: str = "predicted"
    counterfactual: Counterfactual | None = None

    @property
    def where(self) -> str:
        """The place in words: ``top_left (0, 0, 8, 8)`` or ``hotspot (4, 0, 8, 8)``."""
        return self.region if self.kind == "hotspot" else f"{self.region} {format_box(self.box)}"

    def __str__(self) -> str:
        text = (
            f"{self.class_name!r} -> {self.where}: {self.users} of {self.images} images "
            f"({_pct(self.users_fraction)}) "
            f"put {_pct(self.user_share)} of their map energy there, {self.lift:.1f}x its "
            f"{_pct(self.area) if self.area >= 0.01 else f'{100 * self.area:.1f}%'} of the image; "
            f"{_pct(self.others_fraction)} of other classes' images do (score {self.score:+.2f}). "
            f"E.g. {', '.join(f'#{i}' for i in self.examples[:5])}"
        )
        if self.counterfactual is not None:
            text += f". {self.counterfactual.summary()}"
        return text


class Shortcuts(list):  # type: ignore[type-arg]
    """A list of :class:`Shortcut`, strongest first, that prints as a table."""

    def __repr__(self) -> str:
        if not self:
            return "Shortcuts([]): no class leans on a region or a spot more than the other classes"
        tested = any(s.counterfactual is not None for s in self)
        header = ["class", "where", "score", "users", "energy there", "x area", "others"]
        if tested:
            header += ["paste flips", "removal flips"]
        header.append("examples")
        rows = []
        for s in self:
            row = [
                s.class_name,
                s.where,
                f"{s.score:+.2f}",
                f"{s.users}/{s.images} ({_pct(s.users_fraction)})",
                _pct(s.user_share),
                f"{s.lift:.1f}",
                _pct(s.others_fraction),
            ]
            if tested:
                cf = s.counterfactual
                row += (
                    [
                        f"{cf.pasted_flipped}/{cf.pasted} ({_pct(cf.paste_flip_rate)})",
                        f"{cf.removed_flipped}/{cf.removed} ({_pct(cf.remove_flip_rate)})",
                    ]
                    if cf is not None
                    else ["–", "–"]
                )
            row.append(", ".join(str(i) for i in s.examples[:5]))
            rows.append(row)
        widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
        right = {2, 3, 4, 5, 6, 7, 8} if tested else {2, 3, 4, 5, 6}
        lines = []
        for r in [header, *rows]:
            cells = [
                (str(v).rjust(w) if c in right else str(v).ljust(w))
                for c, (v, w) in enumerate(zip(r, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def to_dataframe(self) -> pd.DataFrame:
        """The findings as a DataFrame (one row each; flip rates as columns once tested)."""
        import pandas as pd

        rows = []
        for s in self:
            row = {k: v for k, v in s.__dict__.items() if k not in ("counterfactual", "cells")}
            cf = s.counterfactual
            if cf is not None:
                row.update(
                    paste_flip_rate=cf.paste_flip_rate,
                    pasted=cf.pasted,
                    remove_flip_rate=cf.remove_flip_rate,
                    removed=cf.removed,
                )
            rows.append(row)
        return pd.DataFrame(rows)


# -- the finder -----------------------------------------------------------------------------------------
def _region_area(desc: dict[str, Any], size: tuple[int, int]) -> tuple[tuple[float, ...], float]:
    """A named region's (box, share of the image area)."""
    h, w = size
    box = tuple(float(v) for v in (desc.get("box") or desc.get("bbox")))
    if desc.get("pixels"):
        area = float(desc["pixels"]) / float(h * w)
    else:
        x0, y0, x1, y1 = box
        area = max(0.0, (min(x1, w) - max(x0, 0)) * (min(y1, h) - max(y0, 0))) / float(h * w)
    return box, area


def _hotspot_seeds(
    excess: np.ndarray, shape: tuple[int, int], max_cells: int, count: int
) -> list[np.ndarray]:
    """Up to ``count`` compact (h, w) bool masks around the cells where ``excess`` (h*w: how much more
    often the class's images peak there than other classes') is highest."""
    h, w = shape
    blocked = np.zeros(h * w, dtype=bool)
    found = []
    for _ in range(count):
        scores = np.where(blocked, -np.inf, excess)
        seed = int(np.argmax(scores))
        top = scores[seed]
        if not np.isfinite(top) or top <= 0:
            break
        cells = {seed}
        frontier = [seed]
        while frontier and len(cells) < max_cells:
            nxt = []
            for c in frontier:
                y, x = divmod(c, w)
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = y + dy, x + dx
                        k = yy * w + xx
                        if 0 <= yy < h and 0 <= xx < w and k not in cells and not blocked[k]:
                            if excess[k] >= 0.5 * top and len(cells) < max_cells:
                                cells.add(k)
                                nxt.append(k)
            frontier = nxt
        mask = np.zeros(h * w, dtype=bool)
        mask[list(cells)] = True
        found.append(mask.reshape(h, w))
        blocked |= _dilate(mask.reshape(h, w)).ravel()  # the next hotspot lies elsewhere
    return found


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one cell in the 8 directions."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def find_shortcuts(
    report: AuditReport,
    *,
    by: str = "predicted",
    min_score: float = 0.1,
    examples: int = 6,
    min_images: int = 3,
    min_users: int = 3,
    hotspots: bool = True,
    hotspots_per_class: int = 2,
    max_hotspot: float = 0.1,
) -> Shortcuts:
    """The shortcut findings of an audit, strongest first (see the module documentation).

    Args:
        report: the audit.
        by: group images by their "predicted" class (default) or their true "label".
        min_score: keep findings scoring at least this (fraction of the class leaning there minus the
            fraction of other classes' images that do). Default 0.1.
        examples: example images per finding. Default 6.
        min_images: skip classes with fewer audited images. Default 3.
        min_users: skip findings with fewer images leaning there. Default 3.
        hotspots: also look for compact hotspots (default True; the only kind without named regions).
        hotspots_per_class: hotspots tried per class. Default 2.
        max_hotspot: a hotspot's largest size, as a fraction of the map's cells. Default 0.1.

    Returns:
        :class:`Shortcuts`; empty when fewer than two classes have ``min_images`` images.
    """
    if not isinstance(examples, int) or examples < 0:
        raise ValueError(f"examples must be an int >= 0, got {examples!r}")
    groups = {k: pos for k, pos in report._groups(by).items() if len(pos) >= min_images}
    if len(groups) < 2:
        return Shortcuts()
    t = report.table()
    idx = t["idx"]
    size = report.image_size or (1, 1)
    valid = ~t["error_flag"]
    key = t[by]

    def assess(
        k: int, shares: np.ndarray, area: float, leaning: np.ndarray | None = None
    ) -> dict[str, Any] | None:
        """Statistics of class ``k`` on one place, from each image's energy ``shares`` there; an image
        leans on it when its share is above the threshold, or (hotspots) when ``leaning`` says so."""
        mine = groups[k]
        others = np.flatnonzero(valid & np.isfinite(key) & (key != k) & np.isfinite(shares))
        mine = mine[np.isfinite(shares[mine])]
        if len(mine) < min_images or len(others) == 0:
            return None
        if leaning is None:
            threshold = max(float(np.quantile(shares[others], OUTLIER_QUANTILE)), 2.0 * area)
            leaning = shares > threshold
        else:
            threshold = float("nan")
        lean = leaning[mine]
        users = mine[lean]
        users_fraction = float(lean.mean())
        others_fraction = float(leaning[others].mean())
        score = users_fraction - others_fraction
        if len(users) < min_users or score < min_score:
            return None
        order = users[np.argsort(-shares[users], kind="stable")]
        class_means = [float(np.nanmean(shares[pos])) for j, pos in groups.items() if j != k]
        user_share = float(shares[users].mean())
        return {
            "score": score,
            "users": len(users),
            "images": len(mine),
            "users_fraction": users_fraction,
            "others_fraction": others_fraction,
            "share": float(np.mean(shares[mine])),
            "others": float(np.median(class_means)) if class_means else float("nan"),
            "user_share": user_share,
            "area": area,
            "lift": user_share / area if area > 0 else float("inf"),
            "threshold": threshold,
            "examples": [int(i) for i in idx[order[:examples]]],
            "user_indices": [int(i) for i in idx[order]],
        }

    found: list[Shortcut] = []
    region_boxes: dict[int, list[tuple[float, ...]]] = {}
    for name, desc in report.regions.items():
        column = region_column(name)
        shares = t.get(column)
        if shares is None:
            continue
        box, area = _region_area(desc, size)
        for k in groups:
            stats = assess(k, shares, area)
            if stats is None:
                continue
            region_boxes.setdefault(k, []).append(box)
            found.append(
                Shortcut(k, str(report._name(k)), "region", name, box, column=column, by=by, **stats)  # type: ignore[arg-type]
            )

    if hotspots:
        energy = report._energy()
        n, h, w = energy.shape
        flat = energy.reshape(n, -1)
        top = max(1, round(PEAK_FRACTION * h * w))
        order = np.argsort(-flat, axis=1, kind="stable")[:, :top]
        peaks = np.zeros_like(flat, dtype=np.float64)
        np.put_along_axis(peaks, order, 1.0, axis=1)
        peaks[flat.sum(axis=1) <= 0] = 0.0  # an empty map has no peak
        sy, sx = size[0] / h, size[1] / w
        max_cells = max(1, round(max_hotspot * h * w))
        labelled = valid & np.isfinite(key)
        all_peaks, n_all = peaks[labelled].sum(axis=0), int(labelled.sum())  # one pass, not one per class
        for k, mine in groups.items():
            n_others = n_all - len(mine)
            if n_others <= 0:
                continue
            mine_peaks = peaks[mine].sum(axis=0)
            excess = mine_peaks / len(mine) - (all_peaks - mine_peaks) / n_others
            for mask in _hotspot_seeds(excess, (h, w), max_cells, hotspots_per_class):
                ys, xs = np.nonzero(mask)
                box = (
                    float(xs.min() * sx),
                    float(ys.min() * sy),
                    float((xs.max() + 1) * sx),
                    float((ys.max() + 1) * sy),
                )
                centres = [((x + 0.5) * sx, (y + 0.5) * sy) for y, x in zip(ys, xs, strict=True)]
                if any(
                    sum(1 for cx, cy in centres if b[0] <= cx < b[2] and b[1] <= cy < b[3])
                    >= 0.5 * len(centres)
                    for b in region_boxes.get(k, [])
                ):
                    continue  # already reported as a named region of this class
                shares = flat[:, mask.ravel()].sum(axis=1).astype(np.float64)
                shares[~valid] = np.nan
                area = float(mask.sum()) / float(h * w)
                # an image leans on the hotspot when its map peaks there with at least twice the
                # energy a flat map would put there
                leaning = peaks[:, mask.ravel()].any(axis=1) & valid & (np.nan_to_num(shares) >= 2 * area)
                stats = assess(k, shares, area, leaning)
                if stats is None:
                    continue
                cells = tuple((int(y), int(x)) for y, x in zip(ys, xs, strict=True))
                found.append(
                    Shortcut(
                        k,
                        str(report._name(k)),
                        "hotspot",
                        f"hotspot {format_box(box)}",
                        box,
                        cells=cells,
                        by=by,
                        **stats,  # type: ignore[arg-type]
                    )
                )
    found.sort(key=lambda s: -s.score)
    return Shortcuts(found)
