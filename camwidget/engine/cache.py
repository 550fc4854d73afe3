"""Per-image result caches that prove, on every hit, that they still describe the live model.

A cached result (Score-CAM's masked logits of one image) is reused only for the very same input
(``torch.equal``, no hashing collisions) *and* only if the live model's fp32 logits on that input, which
every call computes anyway, still equal the ones recorded with the entry (up to float rounding, see
:func:`camwidget.engine.twin.same_logits`). A model changed in any way that changes its output on that
image (weights edited through ``.data``, a module swapped, a hook added, an attribute changed) misses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from camwidget.engine.twin import same_logits

__all__ = ["CacheEntry", "ImageCache"]


@dataclass
class CacheEntry:
    """One cached image: its exact input, the live logits it was recorded with, and the value."""

    image: torch.Tensor
    logits: torch.Tensor
    value: torch.Tensor
    precision: str = "fp32"  # what the value was computed at


class ImageCache:
    """A small LRU of per-image tensors.

    Args:
        size: images kept per key (least recently used dropped first). Default 16.
    """

    def __init__(self, size: int = 16) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"cache_size must be an int >= 0; got {size!r}")
        self.size = size
        self._entries: OrderedDict[Hashable, list[CacheEntry]] = OrderedDict()

    def get(self, key: Hashable, image: torch.Tensor, logits: torch.Tensor) -> CacheEntry | None:
        """The entry for ``image`` (C, H, W) under ``key`` if the live ``logits`` (K,) on it still match
        the recorded ones; a mismatching entry is dropped."""
        entries = self._entries.get(key, [])
        for i, entry in enumerate(entries):
            if entry.image.shape == image.shape and torch.equal(entry.image, image):
                if not same_logits(logits.view(1, -1), entry.logits.view(1, -1)):
                    del entries[i]  # the model changed since: never reuse
                    return None
                entries.append(entries.pop(i))
                return entry
        return None

    def put(
        self, key: Hashable, image: torch.Tensor, logits: torch.Tensor, value: torch.Tensor
    ) -> CacheEntry:
        """Store ``value`` for ``image`` with the live ``logits`` it was computed for; returns the entry."""
        entry = CacheEntry(image.detach().clone(), logits.detach().clone(), value)
        if self.size == 0:
            return entry
        entries = self._entries.setdefault(key, [])
        entries.append(entry)
        del entries[: max(0, len(entries) - self.size)]
        return entry

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())
