"""``AuditReport``: read an audit store back, and find where a model looks for each class.

Tables come back as pandas DataFrames, indexed by the dataset index. Maps come
back as numpy arrays at the explained layer's resolution. The audited inputs themselves (the dataset
items after the audit's transform) come back from :meth:`AuditReport.inputs` when the report knows the
dataset; shortcut findings (:mod:`camwidget.audit.shortcuts`) and their counterfactual test
(:mod:`camwidget.audit.counterfactual`) build on both.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camwidget.audit.shortcuts import Shortcut, Shortcuts, find_shortcuts
from camwidget.audit.store import AuditStore, SettingsMismatch, check_store_path, region_column, shard_stores

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from camwidget.audit.counterfactual import Counterfactual

__all__ = ["AuditReport", "Shortcut", "Shortcuts"]

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
