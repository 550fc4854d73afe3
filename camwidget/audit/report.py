"""``AuditReport``: read an audit store back, and find where a model looks for each class.

Tables come back as pandas DataFrames (``pip install pandas``), indexed by the dataset index. Maps come
back as numpy arrays at the explained layer's resolution.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camwidget.audit.store import AuditStore, region_column

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from camwidget.concepts import Concepts

__all__ = ["AuditReport", "ClassConcepts", "Shortcut", "Shortcuts"]

_SCALARS = (
    "idx",
    "label",
    "predicted",
    "probability",
    "correct",
    "error",
    "path",
    "object_box",
    "object_energy",
    "insertion_auc",
    "deletion_auc",
)


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the dev/demo environments
        raise ImportError("AuditReport tables need pandas: pip install pandas") from exc
    return pd


@dataclass(frozen=True)
class Shortcut:
    """A class whose maps concentrate somewhere far more than the other classes' maps do.

    Attributes:
        class_index, class_name: the class (predicted class by default, see ``by``).
        kind: "region" (one of the audit's named regions) or "location" (a fixed place found in the
            class mean map).
        region: the region's name, or a description of the location such as ``"location (0, 0, 8, 8)"``.
        box: (x0, y0, x1, y1) in input pixels: the region's box (or its mask's bounding box), or the
            location's bounding box.
        score: ``share - others``, in [-1, 1]: how much more of this class's map energy lies there than
            for a typical other class. Shortcuts are sorted by it.
        share: mean share of this class's map energy inside the region (0..1).
        others: the median over the other classes of the same share.
        images: how many images the class has in the audit.
        examples: dataset indices of this class's images with the most energy there, most first.
    """

    class_index: int
    class_name: str
    kind: str
    region: str
    box: tuple[float, float, float, float]
    score: float
    share: float
    others: float
    images: int
    examples: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.class_name!r} -> {self.region}: {self.share:.0%} of its map energy vs {self.others:.0%} "
            f"for other classes (score {self.score:+.2f}, {self.images} images; e.g. {self.examples[:5]})"
        )


class Shortcuts(list):  # type: ignore[type-arg]
    """A list of :class:`Shortcut`, strongest first, that prints as a table."""

    def __repr__(self) -> str:
        if not self:
            return "Shortcuts([]): no class concentrates on a region or location more than the others"
        lines = [f"{'class':<16} {'where':<28} {'score':>6} {'share':>6} {'others':>6} {'n':>5}  examples"]
        for s in self:
            lines.append(
                f"{s.class_name[:16]:<16} {s.region[:28]:<28} {s.score:>+6.2f} {s.share:>6.0%} "
                f"{s.others:>6.0%} {s.images:>5}  {s.examples[:5]}"
            )
        return "\n".join(lines)

    def to_dataframe(self) -> pd.DataFrame:
        """The shortcuts as a DataFrame (one row each)."""
        pd = _pandas()
        return pd.DataFrame([s.__dict__ for s in self])


@dataclass
class ClassConcepts:
    """Which concepts carry each class's predictions: :meth:`AuditReport.concepts_by_class`.

    A shortcut the model learned shows as a concept that carries one class's logit (a large part) and
    whose maps sit on the shortcut (a watermark's corner) rather than on the objects.

    Attributes:
        concepts: the :class:`~camwidget.concepts.Concepts` found on the images below: per concept its
            maps on each of them ((M, n, H, W), in the order of ``indices``), direction and classes.
        indices: (M,) dataset indices of the images factorised.
        classes: (M,) each image's class (predicted or label, as asked).
        parts: (M, n) float32: each concept's part of the logit of the image's class, in logit units
            (:meth:`camwidget.concepts.Concepts.logit_parts`).
        class_names: the audit's class names.
    """

    concepts: Concepts
    indices: np.ndarray
    classes: np.ndarray
    parts: np.ndarray
    class_names: list[str]

    def mean_parts(self) -> dict[int, np.ndarray]:
        """``{class index: (n,) mean part of each concept in that class's logit}`` over its images."""
        return {int(k): self.parts[self.classes == k].mean(axis=0) for k in np.unique(self.classes)}

    def carriers(self, class_index: int) -> list[int]:
        """The concepts of ``class_index`` by their mean part in its logit, largest first."""
        means = self.mean_parts()
        if class_index not in means:
            raise KeyError(f"class {class_index} has no images here; classes: {sorted(means)}")
        return [int(j) for j in np.argsort(-means[class_index], kind="stable")]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per class (indexed by class index): ``name``, ``images``, ``concept_<j>`` (mean part of
        concept j in the class's logit, logit units), ``top_concept`` and ``top_share`` (its part over the
        sum of the positive parts, 0..1)."""
        pd = _pandas()
        rows = []
        for k, means in self.mean_parts().items():
            positive = float(np.clip(means, 0, None).sum())
            top = int(np.argmax(means))
            row = {
                "name": self.class_names[k] if 0 <= k < len(self.class_names) else str(k),
                "images": int((self.classes == k).sum()),
            }
            row.update({f"concept_{j}": float(v) for j, v in enumerate(means)})
            row["top_concept"] = top
            row["top_share"] = float(means[top]) / positive if positive > 0 else float("nan")
            rows.append((k, row))
        return pd.DataFrame([r for _, r in rows], index=pd.Index([k for k, _ in rows], name="class"))


class AuditReport:
    """The results of :func:`camwidget.audit`, read from its store.

    Create with :meth:`load` (or get one from ``camwidget.audit(...)``). Attributes: ``settings`` (what
    the audit recorded: method, layer, model fingerprint, dataset, regions, metrics, number of classes),
    ``class_names``, ``regions`` (name -> box/mask description), ``image_size`` (H, W), ``dataset``
    (the dataset object when the report came from ``audit()`` or was given one, else None).
    """

    def __init__(self, store: AuditStore | str | os.PathLike[str], *, dataset: Any = None) -> None:
        if isinstance(store, AuditStore):
            self._store = store
        else:
            self._store = AuditStore(store, readonly=True)
        self.path = self._store.path
        settings = self._store.settings
        if settings is None:
            raise ValueError(f"the store {self.path!r} holds no audit yet (no settings recorded)")
        self.settings: dict[str, Any] = settings
        self.dataset = dataset
        self.regions: dict[str, Any] = dict(settings.get("regions") or {})
        self.num_classes: int = int(self._store.get_meta("num_classes") or 0)
        names = self._store.get_meta("class_names")
        self.class_names: list[str] = list(names) if names else [str(k) for k in range(self.num_classes)]
        size = self._store.get_meta("image_size")
        self.image_size: tuple[int, int] | None = tuple(size) if size else None  # type: ignore[assignment]
        self.display: dict[str, Any] = self._store.get_meta("display") or {}
        self._columns = [c for c in _SCALARS if c in self._store.columns()]
        self._columns += [region_column(r) for r in self.regions]
        self._table: dict[str, np.ndarray] | None = None
        self._maps: np.ndarray | None = None

    @classmethod
    def load(cls, store: str | os.PathLike[str] = "audit.sqlite", *, dataset: Any = None) -> AuditReport:
        """Open the audit store at ``store`` (read-only).

        Args:
            store: the SQLite file written by :func:`camwidget.audit`. Default "audit.sqlite".
            dataset: the audited dataset, so that galleries can open full images (optional; a folder
                audit finds its folder by itself).
        """
        if not Path(store).exists():
            raise FileNotFoundError(
                f"no audit store at {str(store)!r}; run camwidget.audit(..., store=...) first"
            )
        return cls(store, dataset=dataset)

    # -- basics ---------------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """The CAM method the audit used."""
        return str(self.settings["method"])

    @property
    def layer(self) -> str:
        """The explained layer's name."""
        return str(self.settings["layer"])

    def __len__(self) -> int:
        return len(self.table()["idx"])

    def __repr__(self) -> str:
        t = self.table()
        n = len(t["idx"])
        errors = int(np.sum(t["error_flag"]))
        ok = t["correct"][~t["error_flag"]]
        acc = float(np.nanmean(ok)) if np.isfinite(ok).any() else float("nan")
        return (
            f"AuditReport({self.path!r}: {n} images, {errors} errors, accuracy {acc:.1%}, method "
            f"{self.method!r} at {self.layer!r}, regions {list(self.regions)})"
        )

    def refresh(self) -> AuditReport:
        """Re-read the store (after more rows were written); returns self."""
        self._table = None
        self._maps = None
        return self

    def close(self) -> None:
        """Close the store connection."""
        self._store.close()

    def table(self) -> dict[str, np.ndarray]:
        """Every scalar column as a numpy array (float with NaN for missing numbers), in index order."""
        if self._table is None:
            rows = self._store.read(self._columns)
            cols = list(zip(*rows, strict=True)) if rows else [() for _ in self._columns]
            table: dict[str, np.ndarray] = {}
            for name, values in zip(self._columns, cols, strict=True):
                if name in ("error", "path", "object_box"):
                    table[name] = np.array(values, dtype=object)
                else:
                    table[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            table["idx"] = table["idx"].astype(np.int64)
            table["error_flag"] = np.array([e is not None for e in table["error"]], dtype=bool)
            self._table = table
        return self._table

    def _name(self, k: float) -> str | None:
        if k is None or (isinstance(k, float) and math.isnan(k)):
            return None
        k = int(k)
        return self.class_names[k] if 0 <= k < len(self.class_names) else str(k)

    # -- tables ---------------------------------------------------------------------------------------
    def to_dataframe(self) -> pd.DataFrame:
        """One row per image, indexed by dataset index.

        Columns: ``label``, ``label_name``, ``predicted``, ``predicted_name``, ``probability`` (softmax,
        0..1), ``correct`` (bool, NA when the label is unknown), ``error`` (None, or why the item could
        not be read), ``object_energy`` (share of map energy inside the item's box/mask, 0..1),
        ``region_<name>`` (share inside each named region, 0..1), ``insertion_auc``/``deletion_auc``
        (when audited), ``path`` and ``object_box`` (when known). Missing numbers are NaN.
        """
        pd = _pandas()
        t = self.table()
        df = pd.DataFrame(index=pd.Index(t["idx"], name="index"))
        for col in ("label", "predicted"):
            df[col] = pd.array([None if math.isnan(v) else int(v) for v in t[col]], dtype="Int64")
            df[f"{col}_name"] = [self._name(v) for v in t[col]]
        df["probability"] = t["probability"]
        df["correct"] = pd.array([None if math.isnan(v) else bool(v) for v in t["correct"]], dtype="boolean")
        df["error"] = t["error"]
        metrics = set(self.settings.get("metrics") or [])
        if "energy" in metrics:
            df["object_energy"] = t["object_energy"]
            for region in self.regions:
                df[region_column(region)] = t[region_column(region)]
        for metric in ("insertion", "deletion"):
            if metric in metrics:
                df[f"{metric}_auc"] = t[f"{metric}_auc"]
        if any(p is not None for p in t["path"]):
            df["path"] = t["path"]
        if any(b is not None for b in t["object_box"]):
            df["object_box"] = t["object_box"]
        return df

    def errors(self) -> pd.DataFrame:
        """The rows of items that could not be read: ``label``, ``error``, ``path``."""
        df = self.to_dataframe()
        keep = [c for c in ("label", "error", "path") if c in df]
        return df.loc[df["error"].notna(), keep]

    def accuracy_by_class(self) -> pd.DataFrame:
        """Per true class: ``name``, ``images`` (audited), ``correct``, ``accuracy`` (0..1), ``errors``.

        Indexed by class index, sorted by index; classes without images are left out.
        """
        pd = _pandas()
        t = self.table()
        labels = t["label"]
        rows = []
        for k in sorted({int(v) for v in labels[np.isfinite(labels)]}):
            sel = labels == k
            ok = sel & ~t["error_flag"]
            n = int(ok.sum())
            correct = int(np.nansum(t["correct"][ok]))
            rows.append(
                {
                    "class": k,
                    "name": self._name(k),
                    "images": n,
                    "correct": correct,
                    "accuracy": correct / n if n else float("nan"),
                    "errors": int((sel & t["error_flag"]).sum()),
                }
            )
        return pd.DataFrame(
            rows, columns=["class", "name", "images", "correct", "accuracy", "errors"]
        ).set_index("class")

    def outside_object(self, threshold: float = 0.5) -> pd.DataFrame:
        """Images whose map energy falls mostly outside their own object box or mask.

        Args:
            threshold: keep rows with ``object_energy < threshold`` (share of the energy inside the
                object, 0..1). Default 0.5.

        Returns:
            Those rows of :meth:`to_dataframe`, least energy on the object first (empty when the
            dataset gave no boxes).
        """
        _check_fraction(threshold, "threshold")
        df = self.to_dataframe()
        if "object_energy" not in df:
            return df.iloc[0:0]
        return df[df["object_energy"] < threshold].sort_values("object_energy", kind="stable")

    def in_region(self, name: str, threshold: float = 0.5) -> pd.DataFrame:
        """Images with at least ``threshold`` of their map energy inside region ``name``.

        Args:
            name: one of the audit's ``regions``.
            threshold: minimum share of the energy inside the region (0..1). Default 0.5.

        Returns:
            Those rows of :meth:`to_dataframe`, most energy in the region first.
        """
        _check_fraction(threshold, "threshold")
        if name not in self.regions:
            known = ", ".join(self.regions) or "none (pass regions= to camwidget.audit)"
            raise KeyError(f"no region {name!r} in this audit; its regions are: {known}")
        col = region_column(name)
        df = self.to_dataframe()
        return df[df[col] >= threshold].sort_values(col, ascending=False, kind="stable")

    # -- maps -----------------------------------------------------------------------------------------
    def _all_maps(self) -> np.ndarray:
        """(N, h, w) float32 signed raw maps in index order (zeros for error rows), resized to one shape."""
        if self._maps is None:
            rows = self._store.read(["map", "map_h", "map_w", "map_scale"])
            shapes = [(h, w) for _, h, w, _ in rows if h]
            if not shapes:
                self._maps = np.zeros((len(rows), 1, 1), dtype=np.float32)
                return self._maps
            h, w = max(set(shapes), key=shapes.count)
            out = np.zeros((len(rows), h, w), dtype=np.float32)
            for i, (blob, mh, mw, scale) in enumerate(rows):
                if blob is None:
                    continue
                m = np.frombuffer(blob, dtype=np.float16).reshape(mh, mw).astype(np.float32) * float(
                    scale or 0
                )
                if (mh, mw) != (h, w):
                    m = _resize(m, (h, w))
                out[i] = m
            self._maps = out
        return self._maps

    def maps(
        self,
        indices: Sequence[int] | None = None,
        *,
        normalized: bool = True,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Stored maps of the images with dataset indices ``indices`` (default all, in index order).

        Args:
            indices: dataset indices (not positions).
            normalized: True (default): ReLU then min-max to [0, 1], as the explainer shows them; False:
                the signed raw maps.
            size: (H, W) to resize to (bilinear), e.g. ``report.image_size``; default the layer's (h, w).

        Returns:
            (n, h, w) float32 array (all zeros for error rows).
        """
        maps = self._all_maps()
        if indices is not None:
            pos = self._positions(indices)
            maps = maps[pos]
        if size is not None:
            maps = np.stack([_resize(m, tuple(size)) for m in maps]) if len(maps) else maps
        if normalized:
            maps = np.maximum(maps, 0)
            lo = maps.reshape(len(maps), -1).min(axis=1).reshape(-1, 1, 1) if len(maps) else 0
            hi = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1) if len(maps) else 0
            span = np.where(hi > lo, hi - lo, 1.0)
            maps = np.where(hi > lo, (maps - lo) / span, 0.0).astype(np.float32)
        return maps

    def _positions(self, indices: Sequence[int]) -> np.ndarray:
        idx = self.table()["idx"]
        wanted = np.asarray(list(indices), dtype=np.int64)
        pos = np.searchsorted(idx, wanted)
        bad = (
            (pos >= len(idx)) | (idx[np.minimum(pos, len(idx) - 1)] != wanted)
            if len(idx)
            else np.ones_like(wanted, bool)
        )
        if np.any(bad):
            raise KeyError(f"dataset indices {wanted[bad][:10].tolist()} are not in this audit")
        return pos

    def thumbnail(self, index: int) -> bytes | None:
        """The stored JPEG thumbnail of dataset item ``index`` (None for error rows or thumbnail=0)."""
        rows = self._store.read(["thumb"], "WHERE idx = ?", (int(index),))
        if not rows:
            raise KeyError(f"dataset index {index} is not in this audit")
        return rows[0][0]

    def _energy(self) -> np.ndarray:
        """(N, h, w) per-image energy distributions: ReLU(map) / its sum (zeros for empty maps)."""
        maps = np.maximum(self._all_maps(), 0)
        total = maps.reshape(len(maps), -1).sum(axis=1).reshape(-1, 1, 1)
        return np.where(total > 0, maps / np.where(total > 0, total, 1), 0.0).astype(np.float32)

    def _groups(self, by: str) -> dict[int, np.ndarray]:
        if by not in ("predicted", "label"):
            raise ValueError(f"by must be 'predicted' or 'label', got {by!r}")
        t = self.table()
        energy_ok = ~t["error_flag"]
        key = t[by]
        groups: dict[int, np.ndarray] = {}
        for k in sorted({int(v) for v in key[np.isfinite(key) & energy_ok]}):
            groups[k] = np.flatnonzero((key == k) & energy_ok)
        return groups

    def class_mean_maps(
        self, by: str = "predicted", size: tuple[int, int] | None = None
    ) -> dict[str, np.ndarray]:
        """Where each class's evidence lies on average.

        Each image's map is turned into an energy distribution (ReLU, divided by its sum), and the
        distributions of a class's images are averaged, so every image counts equally.

        Args:
            by: group images by their "predicted" class (default: "when the model says k, where does it
                look") or their true "label".
            size: (H, W) to resize to (bilinear, renormalised), e.g. ``report.image_size``; default the
                layer's resolution (h, w).

        Returns:
            ``{class name: (h, w) float32 array summing to 1}``, for classes with at least one image.
        """
        energy = self._energy()
        out: dict[str, np.ndarray] = {}
        for k, pos in self._groups(by).items():
            mean = energy[pos].mean(axis=0)
            if size is not None:
                mean = _resize(mean, tuple(size))
                mean = np.maximum(mean, 0)
                s = mean.sum()
                mean = mean / s if s > 0 else mean
            out[str(self._name(k))] = mean.astype(np.float32)
        return out

    # -- concepts -------------------------------------------------------------------------------------
    def concepts_by_class(
        self,
        model: nn.Module,
        images: torch.Tensor | Any = None,
        *,
        n: int = 5,
        layer: str | None = None,
        by: str = "predicted",
        per_class: int = 32,
        transform: Any = None,
        reshape_transform: Any = None,
        seed: int = 0,
    ) -> ClassConcepts:
        """Which concepts carry each class's predictions (Deep Feature Factorization,
        :func:`camwidget.concepts`, over the audited images of every class together).

        The layer's activations on up to ``per_class`` images of each class (the first by dataset index)
        are factorised into ``n`` concepts; each image's logit for its class is split among them through
        the model's linear head (:meth:`camwidget.concepts.Concepts.logit_parts`). The model runs again
        on those images (one forward, no gradient); the store keeps maps, not activations.

        Args:
            model: the audited model (left as it came).
            images: where the images come from: a tensor (N, C, H, W) indexed by dataset index,
                preprocessed as in the audit, or a map-style dataset of (image, label[, box]) items (with
                ``transform`` as in the audit). Default: the dataset the report was made from.
            n: concepts. Default 5.
            layer: the layer to factorise; default the audit's layer. It must feed global average pooling
                and a linear classifier (the last block of a ResNet, ...), else the concepts have no
                readout to the classes.
            by: group by "predicted" class (default) or true "label".
            per_class: the most images per class. Default 32.
            transform, reshape_transform, seed: as in :func:`camwidget.audit` / :func:`camwidget.concepts`.

        Returns:
            :class:`ClassConcepts` (``to_dataframe()``: one row per class, its concepts' parts and the one
            that carries most).

        Raises:
            ValueError: no images to read, an unreadable item, no class with images, or a layer without a
                linear readout.
        """
        import torch

        from camwidget.audit.dataset import Failed, Items
        from camwidget.concepts import concepts

        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"per_class must be an int >= 1; got {per_class!r}")
        groups = self._groups(by)
        if not groups:
            raise ValueError(f"no audited image has a {by} class; nothing to factorise")
        idx = self.table()["idx"]
        positions = np.concatenate([pos[:per_class] for pos in groups.values()])
        classes = np.concatenate([np.full(min(len(pos), per_class), k) for k, pos in groups.items()])
        indices = idx[positions]
        source = self.dataset if images is None else images
        if source is None:
            raise ValueError(
                "this report has no dataset to read the images from; pass images= (the audited dataset, "
                "or a tensor of its images indexed by dataset index)"
            )
        if isinstance(source, torch.Tensor):
            if source.ndim < 4 or source.shape[0] <= int(indices.max()):
                raise ValueError(
                    "images must be an (N, C, H, W) tensor indexed by dataset index (N > "
                    f"{int(indices.max())}); got shape {tuple(source.shape)}"
                )
            x = source[torch.as_tensor(indices)]
        else:
            items = Items(source, transform)
            read = []
            for i in indices.tolist():
                item = items[i]
                if isinstance(item, Failed):
                    raise ValueError(f"could not read dataset item {i}: {item.message}")
                read.append(item.image)
            x = torch.stack(read)
        found = concepts(model, x, layer or self.layer, n=n, reshape_transform=reshape_transform, seed=seed)
        if found.logit_weights is None:
            raise ValueError(
                f"layer {found.layer!r} does not feed global average pooling and a linear classifier, so its "
                "concepts have no readout to the classes; name one that does (layer=)"
            )
        parts = found.logit_parts(torch.as_tensor(classes)).cpu().numpy().astype(np.float32)
        return ClassConcepts(found, indices, classes.astype(np.int64), parts, list(self.class_names))

    # -- shortcuts ------------------------------------------------------------------------------------
    def shortcuts(
        self,
        *,
        by: str = "predicted",
        min_score: float = 0.1,
        examples: int = 6,
        min_images: int = 3,
        location_fraction: float = 0.1,
    ) -> Shortcuts:
        """Classes whose maps concentrate on a given region, or on one fixed location, far more than
        the other classes' maps do: the signature of a shortcut (a watermark, a tag, a border).

        Two kinds of evidence, scored on one scale (a difference of energy shares, -1..1):

        - *region*: for each named region and class, the class's mean share of map energy inside the
          region minus the median of the same over the other classes;
        - *location*: for each class, the cells holding the top ``location_fraction`` of its mean map
          (at the layer's resolution) and the share of the class's energy there, minus the median share
          of the other classes' energy in those same cells. A class whose images each look at their own
          object somewhere else scores near 0; one that always looks at the same corner scores high.
          A location mostly inside a named region that is already reported is not repeated.

        Args:
            by: group by "predicted" class (default) or true "label".
            min_score: report only scores at least this high. Default 0.1.
            examples: example images per shortcut (highest share first). Default 6.
            min_images: ignore classes with fewer audited images. Default 3.
            location_fraction: size of the "fixed location", as a fraction of the layer's cells.

        Returns:
            :class:`Shortcuts`, strongest first; empty when nothing stands out or fewer than two classes
            have images.
        """
        groups = {k: pos for k, pos in self._groups(by).items() if len(pos) >= min_images}
        found: list[Shortcut] = []
        if len(groups) < 2:
            return Shortcuts()
        t = self.table()
        idx = t["idx"]
        size = self.image_size or (1, 1)
        # Named regions.
        region_hits: dict[tuple[int, str], Shortcut] = {}
        for name, desc in self.regions.items():
            col = t.get(region_column(name))
            if col is None:
                continue
            means = {
                k: float(np.nanmean(col[pos])) if np.isfinite(col[pos]).any() else float("nan")
                for k, pos in groups.items()
            }
            for k, pos in groups.items():
                others = [v for j, v in means.items() if j != k and not math.isnan(v)]
                if math.isnan(means[k]) or not others:
                    continue
                other = float(np.median(others))
                score = means[k] - other
                if score < min_score:
                    continue
                values = np.nan_to_num(col[pos], nan=-1.0)
                best = pos[np.argsort(-values, kind="stable")[:examples]]
                box = tuple(float(v) for v in (desc.get("box") or desc.get("bbox")))
                examples_found = [int(i) for i in idx[best]]
                name_k = str(self._name(k))
                hit = Shortcut(
                    k, name_k, "region", name, box, score, means[k], other, len(pos), examples_found
                )
                region_hits[(k, name)] = hit
                found.append(hit)
        # Fixed locations in the class mean maps.
        energy = self._energy()
        h, w = energy.shape[1:]
        cells = max(1, round(location_fraction * h * w))
        means_map = {k: energy[pos].mean(axis=0) for k, pos in groups.items()}
        for k, pos in groups.items():
            flat = means_map[k].ravel()
            top = np.argsort(-flat, kind="stable")[:cells]
            share = float(flat[top].sum())
            others = [float(means_map[j].ravel()[top].sum()) for j in groups if j != k]
            other = float(np.median(others))
            score = share - other
            if score < min_score:
                continue
            ys, xs = np.unravel_index(top, (h, w))
            sy, sx = size[0] / h, size[1] / w
            box = (
                float(xs.min() * sx),
                float(ys.min() * sy),
                float((xs.max() + 1) * sx),
                float((ys.max() + 1) * sy),
            )
            centres = [((x + 0.5) * sx, (y + 0.5) * sy) for y, x in zip(ys, xs, strict=True)]
            covered = False
            for (j, _), hit in region_hits.items():
                if j != k:
                    continue
                x0, y0, x1, y1 = hit.box
                inside = sum(1 for cx, cy in centres if x0 <= cx < x1 and y0 <= cy < y1)
                if inside >= 0.5 * len(centres):
                    covered = True
            if covered:
                continue
            per_image = energy[pos].reshape(len(pos), -1)[:, top].sum(axis=1)
            best = pos[np.argsort(-per_image, kind="stable")[:examples]]
            label = f"location ({box[0]:g}, {box[1]:g}, {box[2]:g}, {box[3]:g})"
            examples_found = [int(i) for i in idx[best]]
            name_k = str(self._name(k))
            found.append(
                Shortcut(k, name_k, "location", label, box, score, share, other, len(pos), examples_found)
            )
        found.sort(key=lambda s: -s.score)
        return Shortcuts(found)


def _check_fraction(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")


def _resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D array (align_corners=False), via torch."""
    import torch
    import torch.nn.functional as F

    if tuple(m.shape) == tuple(size):
        return m.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()
