"""``AuditReport``: read an audit store back, and find where a model looks for each class.

Tables come back as pandas DataFrames, indexed by the dataset index. Maps come
back as numpy arrays at the explained layer's resolution. The audited inputs themselves (the dataset
items after the audit's transform) come back from :meth:`AuditReport.inputs` when the report knows the
dataset; shortcut findings (:mod:`camwidget.audit.shortcuts`) and their counterfactual test
(:mod:`camwidget.audit.counterfactual`) build on both.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camwidget.audit.shortcuts import Shortcut, Shortcuts, find_shortcuts
from camwidget.audit.store import AuditStore, SettingsMismatch, check_store_path, region_column, shard_stores

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from camwidget.audit.comparison import Comparison
    from camwidget.audit.counterfactual import Counterfactual
    from camwidget.audit.slices import Slice
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
    import pandas as pd  # a dependency; imported when a table is made, so `import camwidget` stays cheap

    return pd


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
    the audit recorded: method, layer, the model's, the data's and the transform's fingerprints,
    regions, metrics), ``class_names``, ``regions`` (name -> box/mask description), ``image_size``
    (H, W), ``display`` (the input normalisation, ``mean``/``std``), ``dataset`` and ``transform`` (what
    the audit read, when the report came from ``audit()`` or was given them; else None).
    """

    def __init__(
        self,
        store: AuditStore | str | os.PathLike[str],
        *,
        dataset: Any = None,
        transform: Callable[[Any], Any] | None = None,
        verified: bool = False,
    ) -> None:
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
        self.transform = transform
        self._verified = bool(verified)
        self._items: Any = None
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
        self._true_maps: np.ndarray | None = None
        self._vector_cache: dict[str, np.ndarray] = {}  # "embedding", "logits": (N, D) decoded once
        self._derived: dict[str, Any] = {}  # computed once: method -> (N, 2) map, "slices:k:seed" -> slices

    @classmethod
    def load(
        cls,
        store: str | os.PathLike[str] = "audit.sqlite",
        *,
        dataset: Any = None,
        transform: Callable[[Any], Any] | None = None,
        verified: bool = False,
    ) -> AuditReport:
        """Open the audit store at ``store`` (read-only; read-only media work too).

        Shard files that an interrupted ``torchrun`` audit left next to ``store`` are read with it
        (a warning says so and how to merge them); nothing is written.

        Args:
            store: the SQLite file written by :func:`camwidget.audit`. Default "audit.sqlite".
            dataset: the audited dataset, so that the gallery can open images and shortcuts can be
                tested (optional; a folder audit finds its folder by itself). Checked against the data
                fingerprint the audit recorded when first used.
            transform: the audit's ``transform=``, if it had one (a folder audit's default is known).
            verified: skip that check (the caller knows the dataset is the audited one).

        Raises:
            FileNotFoundError: neither the store nor any shard of it exists.
            camwidget.audit.store.UnusableStore: a folder or a damaged file.
        """
        check_store_path(store)
        shards = shard_stores(store)
        if not Path(store).exists() and not shards:
            raise FileNotFoundError(
                f"no audit store at {str(store)!r}; run camwidget.audit(..., store=...) first"
            )
        opened = AuditStore(store, readonly=True, shards=shards)
        if opened.shards or not Path(store).exists():
            count = len(opened.shards) + (0 if Path(store).exists() else 1)
            warnings.warn(
                f"also reading {count} shard file{'s' if count != 1 else ''} an interrupted torchrun audit "
                f"left next to {str(store)!r} (not merged yet): rerun the audit to finish and merge them, "
                f"or merge now with: python -m camwidget.audit merge {store} "
                + " ".join(str(s) for s in shards),
                UserWarning,
                stacklevel=2,
            )
        return cls(opened, dataset=dataset, transform=transform, verified=verified)

    # -- basics ---------------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """The CAM method the audit used."""
        return str(self.settings["method"])

    @property
    def layer(self) -> str:
        """The explained layer's name."""
        return str(self.settings["layer"])

    @property
    def target(self) -> str | None:
        """The name of the score the stored maps explain (``audit(target=...)``), e.g. "sigmoid of class
        3"; None: each image's predicted class."""
        value = self.settings.get("target")
        return None if value is None else str(value)

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
            f"{self.method!r} at {self.layer!r}"
            + (f", target {self.target!r}" if self.target is not None else "")
            + f", regions {list(self.regions)})"
        )

    def refresh(self) -> AuditReport:
        """Re-read the store (after more rows were written); returns self."""
        self._table = None
        self._maps = None
        self._true_maps = None
        self._vector_cache.clear()
        self._derived.clear()
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
    def _all_maps(self, which: str = "predicted") -> np.ndarray:
        """(N, h, w) float32 signed raw maps in index order (zeros for error rows), resized to one shape.

        ``which="true"``: the true class's map where one was stored (misclassified images), else the
        prediction's (for a correct image they are the same map), zeros where the label is unknown."""
        if which not in ("predicted", "true"):
            raise ValueError(f"which must be 'predicted' or 'true', got {which!r}")
        if self._maps is None:
            rows = self._store.read(["map", "map_h", "map_w", "map_scale"])
            shapes = [(h, w) for _, h, w, _ in rows if h]
            if not shapes:
                self._maps = np.zeros((len(rows), 1, 1), dtype=np.float32)
                return self._maps
            h, w = max(set(shapes), key=shapes.count)
            self._maps = _decode_maps(rows, (h, w))
        if which == "predicted":
            return self._maps
        if self._true_maps is None:
            rows = self._store.read(["true_map", "map_h", "map_w", "true_map_scale"])
            h, w = self._maps.shape[1:]
            stored = _decode_maps(rows, (h, w))
            has = np.array([r[0] is not None for r in rows], dtype=bool)
            t = self.table()
            known = np.isfinite(t["label"]) & (t["label"] == t["predicted"])
            self._true_maps = np.where(
                has[:, None, None], stored, np.where(known[:, None, None], self._maps, 0)
            )
        return self._true_maps

    def maps_shape(self) -> tuple[int, int]:
        """(h, w) of the stored maps: the explained layer's resolution (the most common one)."""
        h, w = self._all_maps().shape[1:]
        return int(h), int(w)

    def maps(
        self,
        indices: Sequence[int] | None = None,
        *,
        normalized: bool = True,
        size: tuple[int, int] | None = None,
        which: str = "predicted",
    ) -> np.ndarray:
        """Stored maps of the images with dataset indices ``indices`` (default all, in index order).

        Args:
            indices: dataset indices (not positions).
            normalized: True (default): ReLU then min-max to [0, 1], as the explainer shows them; False:
                the signed raw maps.
            size: (H, W) to resize to (bilinear), e.g. ``report.image_size``; default the layer's (h, w).
            which: "predicted" (default): the map of the class the model predicted (what the audit
                explains for every image); "true": the map of the image's true class (label), which the
                audit also made for every misclassified image (for a correct image it is the same map;
                all zeros where the label is unknown).

        Returns:
            (n, h, w) float32 array (all zeros for error rows).
        """
        maps = self._all_maps(which)
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

    def energy_in(self, cells: np.ndarray) -> np.ndarray:
        """Each image's share of map energy in ``cells``, an (h, w) bool mask at the maps' resolution.

        Returns:
            (N,) float64 in [0, 1], in index order (NaN for error rows).
        """
        energy = self._energy()
        mask = np.asarray(cells, dtype=bool)
        if mask.shape != energy.shape[1:]:
            raise ValueError(
                f"cells must be an {energy.shape[1:]} mask (the maps' resolution), got {mask.shape}"
            )
        shares = energy[:, mask].sum(axis=1).astype(np.float64)
        shares[self.table()["error_flag"]] = np.nan
        return shares

    # -- the audited inputs -----------------------------------------------------------------------------
    def use_dataset(self, dataset: Any, transform: Callable[[Any], Any] | None = None) -> AuditReport:
        """Tell the report which dataset (and transform) the audit read; checked against the recorded
        fingerprints when first used (:meth:`inputs`). Returns self."""
        self.dataset, self.transform, self._verified, self._items = dataset, transform, False, None
        return self

    def _reader(self) -> Any:
        """The audit's item reader (dataset + transform), checked against the recorded fingerprints."""
        if self._items is not None:
            return self._items
        from camwidget.audit.dataset import Items, default_folder_transform
        from camwidget.audit.fingerprint import data_fingerprint, describe_mismatch, describe_transform

        dataset, transform = self.dataset, self.transform
        source = self.settings.get("dataset", {})
        if dataset is None and source.get("kind") == "folder" and Path(source.get("root", "")).is_dir():
            from torchvision.datasets import ImageFolder

            dataset = ImageFolder(source["root"])
            if transform is None:
                recorded = (self.settings.get("transform") or {}).get("description")
                default = default_folder_transform()
                if recorded not in (None, describe_transform(default)):
                    raise ValueError(
                        f"the audit of {source['root']!r} used its own transform ({recorded}); pass it as "
                        "AuditReport.load(..., transform=...)"
                    )
                transform = default
        if dataset is None:
            raise ValueError(
                "this report does not know the audited dataset; pass it: AuditReport.load(store, "
                "dataset=..., transform=...) (or AuditExplorer(report, model, dataset=...))"
            )
        if not self._verified and "fingerprint" in source:
            data, described = data_fingerprint(dataset, transform)
            stored = {"dataset": source, "transform": self.settings.get("transform")}
            given = {"dataset": {**source, "fingerprint": data}, "transform": described}
            if stored != given:
                raise SettingsMismatch(
                    "the dataset given to this report is not the audited one: "
                    f"{describe_mismatch(stored, given)}. Pass the dataset (and transform=) the audit read"
                )
        self.dataset, self.transform, self._verified = dataset, transform, True
        self._items = Items(dataset, transform)
        return self._items

    def inputs(self, indices: Sequence[int]) -> torch.Tensor:
        """The exact model inputs the audit explained for dataset items ``indices``.

        The item read from the audited dataset with the audit's transform, as in the audit itself (a
        (3, 32, 32) input stays (3, 32, 32): no other preprocessing is applied).

        Args:
            indices: dataset indices of audited images.

        Returns:
            (n, C, H, W) float32 CPU tensor (images of another size than the first are not stacked:
            pass them one at a time).

        Raises:
            ValueError: the report does not know the dataset (pass ``dataset=`` to :meth:`load`), or an
                item cannot be read now.
            camwidget.audit.store.SettingsMismatch: the dataset given is not the audited one.
            KeyError: an index that is not in the audit.
        """
        import torch

        from camwidget.audit.dataset import Item

        wanted = [int(i) for i in indices]
        self._positions(wanted)  # KeyError for indices outside the audit
        reader = self._reader()
        images = []
        for i in wanted:
            got = reader[i]
            if not isinstance(got, Item):
                raise ValueError(f"dataset item {i} cannot be read: {got.message}")
            images.append(got.image)
        if not images:
            shape = (0, *(reader[0].image.shape if len(reader) else (3, 1, 1)))
            return torch.zeros(shape)
        return torch.stack(images)

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
        if images is None:
            x = self.inputs(indices.tolist())  # the audited inputs, checked against the audit's fingerprints
        elif isinstance(images, torch.Tensor):
            if images.ndim < 4 or images.shape[0] <= int(indices.max()):
                raise ValueError(
                    "images must be an (N, C, H, W) tensor indexed by dataset index (N > "
                    f"{int(indices.max())}); got shape {tuple(images.shape)}"
                )
            x = images[torch.as_tensor(indices)]
        else:
            items = Items(images, transform)
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
        min_users: int = 3,
        hotspots: bool = True,
        model: nn.Module | None = None,
        limit: int | None = 64,
    ) -> Shortcuts:
        """Classes some of whose images lean on a named region or one compact spot far more than other
        classes' images do: the signature of a shortcut (a watermark, a tag, a border), also when only
        a minority of the class uses it.

        See :func:`camwidget.audit.shortcuts.find_shortcuts` for the statistics (per-image outliers
        against the other classes, energy relative to the region's area, hotspots found from where
        each image's map peaks).

        Args:
            by: group by "predicted" class (default) or true "label".
            min_score: report only findings whose score (users' fraction of the class minus the
                fraction of other classes' images that lean there as much) is at least this. Default 0.1.
            examples: example images per finding (most energy there first). Default 6.
            min_images: ignore classes with fewer audited images. Default 3.
            min_users: ignore findings with fewer images leaning there. Default 3.
            hotspots: also look for compact hotspots outside the named regions. Default True.
            model: the audited model: when given (and the report knows the dataset), every finding is
                tested by :meth:`counterfactual` and carries its ``counterfactual``.
            limit: images per direction of that test (None: all). Default 64.

        Returns:
            :class:`~camwidget.audit.shortcuts.Shortcuts`, strongest first.
        """
        found = find_shortcuts(
            self,
            by=by,
            min_score=min_score,
            examples=examples,
            min_images=min_images,
            min_users=min_users,
            hotspots=hotspots,
        )
        if model is None:
            return found
        import dataclasses

        return Shortcuts(
            dataclasses.replace(
                s, counterfactual=self.counterfactual(s, model, limit=limit, examples=examples)
            )
            for s in found
        )

    def counterfactual(
        self,
        shortcut: Shortcut,
        model: nn.Module,
        *,
        limit: int | None = 64,
        fill: str = "mean",
        examples: int = 6,
    ) -> Counterfactual:
        """Test a finding by intervention: paste its region onto other classes' images, remove it from
        the class's own images, and count the predictions that flip.

        See :func:`camwidget.audit.counterfactual.run_counterfactual` (the arguments are the same).
        """
        from camwidget.audit.counterfactual import run_counterfactual

        return run_counterfactual(self, shortcut, model, limit=limit, fill=fill, examples=examples)

    # -- what the model saw: embeddings and logits ------------------------------------------------------
    def _vectors(self, column: str) -> np.ndarray:
        if column not in self._vector_cache:
            if column == "embedding":
                rows = self._store.read(["embedding", "embedding_scale"])
                blobs, scales = [r[0] for r in rows], [r[1] for r in rows]
                self._vector_cache[column] = _decode_vectors(blobs, scales, "<f2")
            else:
                blobs = [r[0] for r in self._store.read([column])]
                self._vector_cache[column] = _decode_vectors(blobs, None, "<f4")
        return self._vector_cache[column]

    def has_embeddings(self) -> bool:
        """Whether the store holds penultimate embeddings (every audit since store schema 2 does)."""
        return self._vectors("embedding").shape[1] > 0

    def embeddings(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """The penultimate embeddings the audit recorded (the input of the model's last linear layer,
        see :mod:`camwidget.audit.embedding`; ``report.embedding_source`` says which layer).

        Args:
            indices: dataset indices (default all, in index order).

        Returns:
            (n, D) float32 (stored as float16), NaN rows for error rows.
        """
        values = self._vectors("embedding")
        return values if indices is None else values[self._positions(indices)]

    @property
    def embedding_source(self) -> dict[str, Any] | None:
        """Where the embeddings come from: ``{"layer", "kind" ("linear input" or "pooled activations"),
        "dim"}``, or None."""
        return self._store.get_meta("embedding")

    def logits(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """The full logit vectors the audit recorded: (n, K) float32, NaN rows for error rows."""
        values = self._vectors("logits")
        return values if indices is None else values[self._positions(indices)]

    def _with_embedding(self) -> np.ndarray:
        """Positions of the rows that have an embedding (not error rows)."""
        emb = self._vectors("embedding")
        if emb.shape[1] == 0:
            raise ValueError(
                f"the store {self.path!r} holds no embeddings (no audited image, or every row is an error "
                "row); slices and the embedding map need the audit's penultimate embeddings"
            )
        return np.flatnonzero(np.isfinite(emb).all(axis=1))

    def embedding(self, method: str = "pca") -> np.ndarray:
        """Every audited image as a point on a plane, from its penultimate embedding.

        Computed once (:func:`camwidget.audit.slices.embedding_2d`) and kept in the store with a digest of
        the rows it used, so a resumed or reloaded audit reads it back; recomputed when rows were added.
        A store that cannot be written (read-only media) keeps it in memory only.

        Args:
            method: "pca" (default; deterministic) or "umap" (needs ``umap-learn``).

        Returns:
            (N, 2) float32 coordinates in index order; NaN for error rows.
        """
        from camwidget.audit.slices import embedding_2d

        if method not in self._derived:
            positions = self._with_embedding()
            idx = self.table()["idx"][positions]
            digest = hashlib.sha1(np.ascontiguousarray(idx, dtype="<i8").tobytes()).hexdigest()
            key = f"embedding_2d:{method}"
            kept = self._store.get_derived(key, digest)
            if kept is not None and len(kept) == 8 * len(positions):
                points = np.frombuffer(kept, dtype="<f4").reshape(-1, 2)
            else:
                points = embedding_2d(self._vectors("embedding")[positions], method).astype("<f4")
                self._keep(key, digest, points.tobytes())
            plane = np.full((len(self.table()["idx"]), 2), np.nan, dtype=np.float32)
            plane[positions] = points
            self._derived[method] = plane
        return self._derived[method]

    def _keep(self, key: str, digest: str, value: bytes) -> None:
        """Keep a derived result in the store (through a short-lived writer when this report reads a file
        read-only); silently in memory only where the file cannot be written."""
        import sqlite3

        from camwidget.audit.store import UnusableStore

        if not self._store.readonly:
            self._store.set_derived(key, digest, value)
            return
        try:
            with AuditStore(self.path) as writer:
                writer.set_derived(key, digest, value)
        except (UnusableStore, sqlite3.Error, OSError):
            pass

    # -- slices -----------------------------------------------------------------------------------------
    def region_masks(self, shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The named regions at the maps' resolution: ``{name: (h, w) float32}``, each cell's share of
        its area inside the region's box (a mask region: its bounding box), 0..1.

        Args:
            shape: (h, w); default :meth:`maps_shape`.
        """
        h, w = shape or self.maps_shape()
        size = self.image_size or (h, w)
        out: dict[str, np.ndarray] = {}
        for name, desc in self.regions.items():
            box = desc.get("box") or desc.get("bbox")
            if box is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)

            def cover(lo: float, hi: float, n: int, full: float) -> np.ndarray:
                edges = np.arange(n + 1) * (full / n)
                return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None) / (full / n)

            out[name] = np.outer(cover(y0, y1, h, size[0]), cover(x0, x1, w, size[1])).astype(np.float32)
        return out

    def slices(self, k: int | None = None, *, seed: int = 0) -> list[Slice]:
        """Coherent groups of images the model gets wrong more often than the rest of their true class,
        found without any group labels (:func:`camwidget.audit.slices.find_slices`, on the stored
        penultimate embeddings, maps, labels and predictions; no model needed).

        Args:
            k: clusters per class; None (default) picks one from the class's size.
            seed: the clustering's random starts (the same seed gives the same slices).

        Returns:
            :class:`~camwidget.audit.slices.Slice` list, worst first: ``.indices`` (dataset indices),
            ``.size``, ``.accuracy``, ``.baseline_accuracy`` (the rest of the class), ``.mean_map`` (at
            the maps' resolution), ``.description`` naming the class, the prediction, where the maps
            concentrate and a named region when one matches.
        """
        from camwidget.audit.slices import find_slices

        key = f"slices:{k}:{seed}"
        if key in self._derived:  # found once per report (refresh() forgets them)
            return list(self._derived[key])
        t = self.table()
        positions = self._with_embedding()
        usable = np.isfinite(t["label"][positions]) & np.isfinite(t["predicted"][positions])
        positions = positions[usable]
        if len(positions) == 0:
            return []
        found = find_slices(
            self._vectors("embedding")[positions],
            self._all_maps()[positions],
            t["label"][positions].astype(np.int64),
            t["predicted"][positions].astype(np.int64),
            indices=t["idx"][positions],
            k=k,
            class_names=self.class_names,
            regions=self.region_masks(),
            seed=seed,
        )
        self._derived[key] = found
        return list(found)

    # -- mistakes ---------------------------------------------------------------------------------------
    def confusion(self) -> pd.DataFrame:
        """The confusion matrix: counts of images per (true class, predicted class), error rows and
        unlabelled images left out. Rows are true classes, columns predicted classes, both by name, over
        the classes that occur as a label or a prediction (in class order)."""
        from camwidget.audit.confusion import confusion_matrix

        pd = _pandas()
        labels, predictions, _ = self._labelled()
        matrix, classes = confusion_matrix(labels, predictions)
        names = [str(self._name(k)) for k in classes]
        return pd.DataFrame(
            matrix,
            index=pd.Index(names, name="label"),
            columns=pd.Index(names, name="predicted"),
        )

    def confusion_pairs(self, examples: int = 6) -> pd.DataFrame:
        """The (label, prediction) pairs the model confuses, most frequent first.

        Args:
            examples: dataset indices kept per pair, the most confident mistakes first. Default 6.

        Returns:
            One row per off-diagonal pair with at least one image: ``label``, ``label_name``,
            ``predicted``, ``predicted_name``, ``count``, ``share`` (of the label's labelled images, 0..1),
            ``examples`` (list of dataset indices).
        """
        from camwidget.audit.confusion import confused_pairs

        pd = _pandas()
        labels, predictions, positions = self._labelled()
        t = self.table()
        rows = []
        for pair in confused_pairs(labels, predictions, t["probability"][positions], examples):
            rows.append(
                {
                    "label": pair.label,
                    "label_name": self._name(pair.label),
                    "predicted": pair.predicted,
                    "predicted_name": self._name(pair.predicted),
                    "count": pair.count,
                    "share": pair.share,
                    "examples": [int(i) for i in t["idx"][positions][pair.members]],
                }
            )
        columns = ["label", "label_name", "predicted", "predicted_name", "count", "share", "examples"]
        return pd.DataFrame(rows, columns=columns)

    def _labelled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels, predictions, positions) of the rows with a label and a prediction (no error rows)."""
        t = self.table()
        ok = ~t["error_flag"] & np.isfinite(t["label"]) & np.isfinite(t["predicted"])
        positions = np.flatnonzero(ok)
        return t["label"][positions].astype(np.int64), t["predicted"][positions].astype(np.int64), positions

    def error_understanding(
        self, *, model: nn.Module | None = None, ranges: Sequence[float] = (0.25, 0.5, 0.75, 1.0)
    ) -> pd.DataFrame:
        """Error understanding ("Less is More", ICLR 2024) of the misclassified images, per true class
        and overall, with the map of the **true** class and with the map of the **predicted** class.

        On an image the model gets wrong, does the map find the evidence for the true class? Pixels
        ranked by the map are kept on a black substrate, 4% at a time, and the true class's softmax is
        followed along that path (:func:`camwidget.metrics.error_understanding`). The audit records
        those curves with ``metrics=(..., "error_understanding")``; otherwise pass ``model=`` (and let
        the report know the dataset) to compute them now from the stored maps.

        Args:
            model: the audited model, to compute the figures when the audit did not record them.
            ranges: the shares p of pixels for the average highest confidence. Default 25/50/75/100%.

        Returns:
            A DataFrame indexed by (``class``: the true class's name or "all", ``map``: "true" or
            "predicted"), with ``images`` (misclassified images), ``average_highest_confidence@<p>``
            (0..1), ``area_at_highest@<p>`` (share of pixels kept where the maximum occurs, 0..1) per
            range, and ``insertion_auc`` (of the true class, 0..1).

        Raises:
            ValueError: no curves were recorded and no model was given (or the dataset is unknown).
        """
        import torch

        from camwidget.metrics.error_understanding import ErrorUnderstanding

        pd = _pandas()
        t = self.table()
        result = self._recorded_error_understanding(tuple(ranges)) if model is None else None
        if result is None:
            if model is None:
                raise ValueError(
                    "this audit did not record error understanding; pass model= (the audited model, and "
                    "the dataset if the report does not know it) to compute it now from the stored maps, "
                    "or audit with metrics=('energy', 'error_understanding')"
                )
            result = self._compute_error_understanding(model, tuple(ranges))
        eu, positions = result
        assert isinstance(eu, ErrorUnderstanding)
        m = len(positions)
        labels = t["label"][positions].astype(np.int64)
        rows, index = [], []
        groups = [(str(self._name(c)), np.flatnonzero(labels == c)) for c in sorted(set(labels.tolist()))]
        for name, members in [*groups, ("all", np.arange(m))]:
            for which, offset in (("true", 0), ("predicted", m)):
                chosen = torch.as_tensor(members + offset, dtype=torch.long)
                rows.append({"images": len(members), **eu.summary_of(chosen)})
                index.append((name, which))
        return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["class", "map"]))

    # -- two models, and the shareable report ---------------------------------------------------------
    def compare(self, other: AuditReport, *, names: tuple[str, str] = ("a", "b")) -> Comparison:
        """Compare this audit with ``other``, another model's audit of the same dataset: where their
        predictions and their maps disagree, per image and per true class (no model needed).

        See :class:`camwidget.audit.comparison.Comparison` (``per_image()``, ``per_class()``,
        ``summary()``); ``AuditExplorer(report, compare=other)`` shows the two maps side by side.

        Args:
            other: the other audit (same data fingerprint).
            names: what to call the two models in the tables. Default ("a", "b").
        """
        from camwidget.audit.comparison import compare_reports

        if not isinstance(other, AuditReport):
            raise TypeError(f"other must be an AuditReport, got {type(other).__name__}")
        return compare_reports(self, other, names)

    def export_json(
        self,
        path: str | os.PathLike[str],
        *,
        shortcuts: Shortcuts | None = None,
        model: nn.Module | None = None,
        examples: int = 6,
        slices: int = 8,
    ) -> Path:
        """Write the audit's findings as JSON for a reviewer who does not run Python: the class mean maps,
        the shortcut findings with examples and flip rates (when tested), the confusion matrix and pairs,
        the slices and the error-understanding table (see :mod:`camwidget.audit.export`).

        Args:
            path: the file to write.
            shortcuts: the findings (e.g. ``report.shortcuts(model=model)``); default computed here,
                tested when ``model`` is given and the dataset is known.
            model: the audited model (tests the findings; computes error understanding if not recorded).
            examples: example dataset indices per finding, pair and slice. Default 6.
            slices: slices reported, worst first. Default 8.

        Returns:
            The path written.
        """
        from camwidget.audit.export import collect, write_json

        data = collect(self, shortcuts=shortcuts, model=model, examples=examples, slices=slices)
        return write_json(data, path)

    def export_html(
        self,
        path: str | os.PathLike[str],
        *,
        shortcuts: Shortcuts | None = None,
        model: nn.Module | None = None,
        examples: int = 6,
        slices: int = 8,
    ) -> Path:
        """Write ONE self-contained HTML page of the audit (images embedded as data URIs, inline style, no
        script and nothing fetched from the network): the class mean maps, the shortcut findings with
        examples and flip rates, the confusion matrix and the most confused pairs, the slices, and the
        error-understanding table. The arguments are those of :meth:`export_json`.

        Returns:
            The path written.
        """
        from camwidget.audit.export import collect, write_html

        data = collect(self, shortcuts=shortcuts, model=model, examples=examples, slices=slices)
        return write_html(self, data, path)

    def confidence_paths(self, index: int) -> dict[str, np.ndarray] | None:
        """The error-understanding confidence paths the audit recorded for misclassified image ``index``:
        ``{"kept": (S,) share of pixels kept, "true": (S,) true-class probability with the pixels the
        TRUE class's map ranks first, "predicted": (S,) the same with the PREDICTED class's map}``, or
        None (a correct image, or an audit without ``"error_understanding"``)."""
        meta = self._store.get_meta("error_understanding")
        rows = self._store.read(["eu_true_path", "eu_predicted_path"], "WHERE idx = ?", (int(index),))
        if meta is None or not rows or rows[0][0] is None:
            return None
        return {
            "kept": np.asarray(meta["kept"], dtype=np.float32),
            "true": np.frombuffer(rows[0][0], dtype="<f4").copy(),
            "predicted": np.frombuffer(rows[0][1], dtype="<f4").copy(),
        }

    def _recorded_error_understanding(self, ranges: tuple[float, ...]) -> tuple[Any, np.ndarray] | None:
        import torch

        from camwidget.metrics.error_understanding import ErrorUnderstanding

        meta = self._store.get_meta("error_understanding")
        if meta is None or "eu_true_path" not in self._store.columns():
            return None
        rows = self._store.read(
            ["eu_true_path", "eu_true_insertion", "eu_predicted_path", "eu_predicted_insertion"]
        )
        positions = np.array([i for i, r in enumerate(rows) if r[0] is not None], dtype=np.int64)
        steps = int(meta["steps"])
        if len(positions) == 0:  # no mistake (or none yet): a table of zero images
            return _no_error_understanding(steps, ranges), positions
        curves = [
            _decode_vectors([rows[i][c] for i in positions], None, "<f4") for c in range(4)
        ]  # true path, true insertion, predicted path, predicted insertion
        t = self.table()
        labels = torch.as_tensor(t["label"][positions].astype(np.int64)).repeat(2)
        predictions = torch.as_tensor(t["predicted"][positions].astype(np.int64)).repeat(2)
        eu = ErrorUnderstanding(
            path=torch.from_numpy(np.concatenate([curves[0], curves[2]])),
            kept=torch.tensor(meta["kept"], dtype=torch.float32),
            insertion=torch.from_numpy(np.concatenate([curves[1], curves[3]])),
            labels=labels,
            predictions=predictions,
            ranges=ranges,
            steps=steps,
        )
        return eu, positions

    def _compute_error_understanding(
        self, model: nn.Module, ranges: tuple[float, ...]
    ) -> tuple[Any, np.ndarray]:
        import torch

        from camwidget.engine.batching import model_device
        from camwidget.metrics.error_understanding import error_understanding

        t = self.table()
        labels, predictions, positions = self._labelled()
        positions = positions[labels != predictions]
        if len(positions) == 0:
            return _no_error_understanding(25, ranges), positions
        idx = t["idx"][positions]
        x = self.inputs(idx)
        size = tuple(x.shape[-2:])
        maps = np.concatenate(
            [self.maps(idx, size=size, which="true"), self.maps(idx, size=size, which="predicted")]
        )
        channels = x.shape[1]
        mean = self.display.get("mean") or (0.0,) * channels
        std = self.display.get("std") or (1.0,) * channels
        device = model_device(model)
        truth = t["label"][positions].astype(np.int64).tolist() * 2
        eu = error_understanding(
            model,
            torch.cat([x, x]).to(device),
            truth,
            torch.from_numpy(maps).to(device),
            mean=mean,
            std=std,
            ranges=ranges,
        )
        return eu, positions


def _no_error_understanding(steps: int, ranges: tuple[float, ...]) -> Any:
    """The error-understanding figures of no image (their summaries are NaN)."""
    import torch

    from camwidget.metrics.error_understanding import ErrorUnderstanding

    empty = torch.zeros(0, dtype=torch.long)
    return ErrorUnderstanding(
        path=torch.zeros(0, steps - 1),
        kept=torch.zeros(steps - 1),
        insertion=torch.zeros(0, 2),
        labels=empty,
        predictions=empty,
        ranges=ranges,
        steps=steps,
    )


def _decode_maps(rows: Sequence[tuple[Any, ...]], shape: tuple[int, int]) -> np.ndarray:
    """Rows of (float16 blob, h, w, scale) -> (N, *shape) float32 maps (zeros where the blob is NULL)."""
    out = np.zeros((len(rows), *shape), dtype=np.float32)
    for i, (blob, mh, mw, scale) in enumerate(rows):
        if blob is None:
            continue
        m = np.frombuffer(blob, dtype=np.float16).reshape(mh, mw).astype(np.float32) * float(scale or 0)
        out[i] = m if (mh, mw) == tuple(shape) else _resize(m, shape)
    return out


def _decode_vectors(blobs: Sequence[Any], scales: Sequence[Any] | None, dtype: str) -> np.ndarray:
    """Blobs of one vector each (``dtype`` "<f2" or "<f4", times ``scales`` when given) -> (N, D)
    float32, NaN rows where the blob is NULL; (N, 0) when none is stored."""
    sizes = {len(b) for b in blobs if b is not None}
    width = np.dtype(dtype).itemsize
    if not sizes:
        return np.zeros((len(blobs), 0), dtype=np.float32)
    if len(sizes) > 1:
        raise ValueError(f"the stored vectors have different lengths ({sorted(s // width for s in sizes)})")
    d = sizes.pop() // width
    present = np.array([b is not None for b in blobs], dtype=bool)
    out = np.full((len(blobs), d), np.nan, dtype=np.float32)
    joined = b"".join(b for b in blobs if b is not None)
    values = np.frombuffer(joined, dtype=dtype).reshape(-1, d).astype(np.float32)
    if scales is not None:
        s = np.array([0.0 if v is None else v for v, p in zip(scales, present, strict=True) if p])
        values *= s.astype(np.float32)[:, None]
    out[present] = values
    return out


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
