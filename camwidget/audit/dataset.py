"""Turning what a user passes as ``dataset`` into indexed, validated batches for the audit.

Accepted:

- a map-style ``torch.utils.data.Dataset`` (``__len__`` + ``__getitem__``) yielding ``(image, label)`` or
  ``(image, label, box_or_mask)``;
- a ``DataLoader`` over such a dataset: its dataset, batch size and workers are used, but the audit walks
  the indices in order itself (a shuffling sampler is ignored) so that results can be resumed;
- a folder in ImageFolder layout (``root/<class>/<image>``), read with torchvision's ``ImageFolder``.

``image`` is a (3, H, W) float tensor preprocessed as the model expects, or a PIL image / uint8 array
when a ``transform`` is given. ``label`` is an int (or a 0-d integer tensor). ``box_or_mask`` is an
object box ``(x0, y0, x1, y1)`` in input pixels (x = column, y = row, half-open), an (H, W) boolean mask,
or None.

Loading errors (an unreadable or corrupt file: any exception raised by ``dataset[i]`` or the transform)
become error rows. Items of the wrong *type* are programming errors and stop the audit with a message
naming the index and what was found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD, imagenet_transform

__all__ = ["Batch", "Failed", "Item", "LoaderSpec", "normalisation_of", "resolve_dataset"]


@dataclass
class Item:
    """One valid dataset item."""

    index: int
    image: torch.Tensor  # (3, H, W) float32
    label: int | None
    box: tuple[float, float, float, float] | None = None
    mask: torch.Tensor | None = None  # (H, W) bool
    path: str | None = None


@dataclass
class Failed:
    """An item that could not be loaded (an error row) or had the wrong type (``fatal``)."""

    index: int
    message: str
    label: int | None = None
    path: str | None = None
    fatal: bool = False


@dataclass
class Batch:
    """What the loader yields: the valid items and the failures of one batch, in index order."""

    items: list[Item]
    failures: list[Failed]


@dataclass
class LoaderSpec:
    """A resolved dataset: the map-style dataset plus how to read it."""

    dataset: Dataset
    describe: dict[str, Any]
    transform: Callable[[Any], Any] | None
    batch_size: int
    num_workers: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    class_names: list[str] | None


def _type_name(obj: Any) -> str:
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return f"{type(obj).__name__} of shape {tuple(obj.shape)} and dtype {obj.dtype}"
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def default_folder_transform() -> Callable[[Any], torch.Tensor]:
    """The standard ImageNet evaluation transform (:func:`camwidget.defaults.imagenet_transform`)."""
    return imagenet_transform()


def normalisation_of(transform: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) of the last ``Normalize`` inside a transform (a torchvision ``Compose``, nested
    ones, or a bare ``Normalize``), or None when there is none."""
    from torchvision import transforms as T

    found = None
    if isinstance(transform, T.Normalize):
        return tuple(float(m) for m in transform.mean), tuple(float(s) for s in transform.std)
    for step in getattr(transform, "transforms", None) or ():
        inner = normalisation_of(step)
        if inner is not None:
            found = inner
    return found


def resolve_dataset(
    dataset: Any,
    *,
    transform: Callable[[Any], Any] | None,
    batch_size: int,
    num_workers: int,
    class_names: Sequence[str] | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> LoaderSpec:
    """Check ``dataset`` and return a :class:`LoaderSpec`; raise TypeError/ValueError on bad input."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if transform is not None and not callable(transform):
        raise TypeError(
            f"transform must be callable (e.g. a torchvision transform), got {_type_name(transform)}"
        )
    describe: dict[str, Any]
    names = list(class_names) if class_names is not None else None
    if isinstance(dataset, (str, os.PathLike)):
        root = Path(dataset)
        if not root.is_dir():
            raise ValueError(
                f"dataset {str(dataset)!r} is not a folder; pass a folder in ImageFolder layout "
                "(root/<class name>/<image files>), a torch Dataset or a DataLoader"
            )
        from torchvision.datasets import ImageFolder

        try:
            folder = ImageFolder(str(root))
        except (FileNotFoundError, RuntimeError) as exc:
            raise ValueError(
                f"cannot read {str(root)!r} as an ImageFolder (root/<class>/<image>): {exc}"
            ) from exc
        if transform is None:
            transform = default_folder_transform()
            if mean is None and std is None:
                mean, std = IMAGENET_MEAN, IMAGENET_STD
        if names is None:
            names = list(folder.classes)
        describe = {
            "kind": "folder",
            "root": str(root.resolve()),
            "classes": list(folder.classes),
            "length": len(folder),
        }
        dataset = folder
    elif isinstance(dataset, DataLoader):
        loader = dataset
        if isinstance(loader.dataset, IterableDataset):
            raise TypeError(
                "the DataLoader wraps an IterableDataset; the audit needs a map-style Dataset "
                "(with __len__ and __getitem__) so that it can resume and shard by index"
            )
        dataset = loader.dataset
        if loader.batch_size is not None and batch_size == 64:
            batch_size = int(loader.batch_size)
        num_workers = max(num_workers, int(loader.num_workers))
        describe = {"kind": "dataset", "length": _length(dataset)}
    elif isinstance(dataset, IterableDataset):
        raise TypeError(
            "an IterableDataset cannot be audited: the audit needs a map-style Dataset (with __len__ "
            "and __getitem__) so that it can resume and shard by index"
        )
    elif hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        if isinstance(dataset, (torch.Tensor, np.ndarray)):
            raise TypeError(
                f"dataset is a {_type_name(dataset)}; wrap images and labels in a Dataset, e.g. "
                "torch.utils.data.TensorDataset(images, labels)"
            )
        describe = {"kind": "dataset", "length": _length(dataset)}
    else:
        raise TypeError(
            f"dataset must be a torch Dataset, a DataLoader or a folder path; got {_type_name(dataset)}"
        )
    if mean is None and std is None:
        norm = normalisation_of(transform) or normalisation_of(getattr(dataset, "transform", None))
        if norm is not None and len(norm[0]) == 3 and len(norm[1]) == 3:
            mean, std = norm
    if names is None:
        found = getattr(dataset, "classes", None) or getattr(dataset, "class_names", None)
        if isinstance(found, (list, tuple)) and all(isinstance(c, str) for c in found):
            names = list(found)
    if names is not None and not all(isinstance(c, str) for c in names):
        raise TypeError("class_names must be a sequence of strings")
    for label, value in (("mean", mean), ("std", std)):
        if value is not None and (len(value) != 3 or not all(isinstance(v, (int, float)) for v in value)):
            raise ValueError(f"{label} must be 3 numbers (one per channel), got {value!r}")
    if (mean is None) != (std is None):
        raise ValueError("pass mean and std together (the input normalisation), or neither")
    if std is not None and any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std!r}")
    return LoaderSpec(
        dataset=dataset,
        describe=describe,
        transform=transform,
        batch_size=batch_size,
        num_workers=num_workers,
        mean=tuple(float(m) for m in mean) if mean is not None else None,
        std=tuple(float(s) for s in std) if std is not None else None,
        class_names=names,
    )


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _length(dataset: Any) -> int:
    try:
        return len(dataset)
    except TypeError as exc:
        raise TypeError(
            f"the dataset has no usable length ({exc}); the audit needs a map-style Dataset"
        ) from exc


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer scalar (int, numpy integer, one-element integer tensor)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            return None
        return int(value.item())
    if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.integer):
        return int(value.item())
    return None


class Items(Dataset):
    """Wraps the user's dataset: catches loading errors, applies the transform, validates types.

    ``items[i]`` returns an :class:`Item` or a :class:`Failed`; it never raises for a bad item, so a
    corrupt file cannot kill a DataLoader worker.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Any], Any] | None) -> None:
        self.dataset = dataset
        self.transform = transform
        targets = getattr(dataset, "targets", None)
        self.targets = targets if isinstance(targets, (list, tuple)) else None
        samples = getattr(dataset, "samples", None)
        self.paths: list[str] | None = None
        if isinstance(samples, list) and samples and isinstance(samples[0], tuple):
            self.paths = [str(s[0]) for s in samples]

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _known(self, index: int) -> tuple[int | None, str | None]:
        label = None
        if self.targets is not None and index < len(self.targets):
            label = _as_int(self.targets[index])
        path = self.paths[index] if self.paths is not None and index < len(self.paths) else None
        return label, path

    def __getitem__(self, index: int) -> Item | Failed:
        label_known, path = self._known(index)
        try:
            raw = self.dataset[index]
        except Exception as exc:  # an unreadable file, a decoder error: an error row
            return Failed(index, f"{type(exc).__name__}: {exc}", label_known, path)
        if not isinstance(raw, (tuple, list)) or len(raw) not in (2, 3):
            return Failed(
                index,
                f"dataset item {index} is a {_type_name(raw)}{_len_hint(raw)}; the audit needs "
                "(image, label) or (image, label, box_or_mask) tuples",
                fatal=True,
            )
        image, label, extra = raw[0], raw[1], (raw[2] if len(raw) == 3 else None)
        if self.transform is not None:
            try:
                image = self.transform(image)
            except Exception as exc:
                return Failed(index, f"transform failed: {type(exc).__name__}: {exc}", label_known, path)
        if not isinstance(image, torch.Tensor):
            hint = (
                "; pass transform= (e.g. torchvision's ToTensor + Normalize) to turn it into a (3, H, W) "
                "float tensor"
                if self.transform is None
                else "; the transform must return a (3, H, W) float tensor"
            )
            return Failed(
                index, f"dataset item {index}: the image is a {_type_name(image)}{hint}", fatal=True
            )
        if image.ndim != 3 or not image.is_floating_point():
            return Failed(
                index,
                f"dataset item {index}: the image is a {_type_name(image)}; expected a (C, H, W) float "
                "tensor, preprocessed as the model expects",
                fatal=True,
            )
        label_int = _as_int(label)
        if label_int is None:
            return Failed(
                index,
                f"dataset item {index}: the label is a {_type_name(label)}; expected an int",
                fatal=True,
            )
        image = image.detach().float()  # NaN/inf images become error rows, checked per batch
        item = Item(index, image, label_int, path=path)
        if extra is not None:
            problem = _set_object(item, extra)
            if problem:
                return Failed(index, f"dataset item {index}: {problem}", fatal=True)
        return item


def _len_hint(raw: Any) -> str:
    if isinstance(raw, (tuple, list)):
        return f" of length {len(raw)}"
    return ""


def _set_object(item: Item, extra: Any) -> str | None:
    """Parse a box or mask into ``item``; return a message when it has the wrong type."""
    h, w = item.image.shape[-2:]
    arr: Any = extra
    if isinstance(arr, np.ndarray):
        arr = torch.from_numpy(arr)
    if isinstance(arr, (tuple, list)):
        if len(arr) != 4 or not all(isinstance(v, (int, float, np.integer, np.floating)) for v in arr):
            return f"the box {extra!r} must be 4 numbers (x0, y0, x1, y1)"
        arr = torch.tensor([float(v) for v in arr])
    if not isinstance(arr, torch.Tensor):
        return (
            f"the third element is a {_type_name(extra)}; expected a box (x0, y0, x1, y1) or an (H, W) mask"
        )
    if arr.ndim == 1 and arr.numel() == 4:
        x0, y0, x1, y1 = (float(v) for v in arr.tolist())
        if not (x1 > x0 and y1 > y0):
            return (
                f"the box {[x0, y0, x1, y1]} is empty or reversed; boxes are (x0, y0, x1, y1) with "
                "x1 > x0 and y1 > y0"
            )
        item.box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
        return None
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        if tuple(arr.shape) != (h, w):
            return (
                f"the mask has shape {tuple(arr.shape)} but the image is {h}x{w}; masks must match the input"
            )
        item.mask = arr.bool() if arr.dtype == torch.bool else arr.float() > 0.5
        return None
    return f"the third element is a {_type_name(extra)}; expected a box (x0, y0, x1, y1) or an (H, W) mask"


def collate(batch: list[Item | Failed]) -> Batch:
    """DataLoader collate_fn: keep items as a list (images are stacked per shape later)."""
    items = [b for b in batch if isinstance(b, Item)]
    failures = [b for b in batch if isinstance(b, Failed)]
    return Batch(items, failures)


def make_loader(spec: LoaderSpec, indices: Sequence[int], batch_size: int | None = None) -> DataLoader:
    """A DataLoader over ``indices`` (in order) yielding :class:`Batch` objects."""
    items = Items(spec.dataset, spec.transform)
    return DataLoader(
        items,  # type: ignore[arg-type]
        batch_size=batch_size or spec.batch_size,
        sampler=list(indices),  # type: ignore[arg-type]
        num_workers=spec.num_workers,
        collate_fn=collate,
        persistent_workers=False,
    )
