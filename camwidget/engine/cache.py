"""Per-image result caches keyed by the image's exact content (and the model's parameter versions)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["CacheEntry", "ImageCache", "parameter_version"]


def parameter_version(model: nn.Module) -> int:
    """Sum of the parameters' and buffers' in-place version counters: changes whenever an optimiser step,
    ``load_state_dict`` or BatchNorm statistics update touches them, so results for an older model are
    never reused."""
    return sum(t._version for t in model.parameters()) + sum(t._version for t in model.buffers())


@dataclass
class CacheEntry:
    """One cached image: its exact input (for an equality check, no hashing collisions) and a value."""

    image: torch.Tensor
    version: int
    logits: torch.Tensor


class ImageCache:
    """A small LRU of per-image tensors, looked up by ``torch.equal`` on the image itself.

    Args:
        model: the model whose parameter versions invalidate entries.
        size: images kept per key (least recently used dropped first).
    """

    def __init__(self, model: nn.Module, size: int = 16) -> None:
        self.model = model
        self.size = size
        self._entries: OrderedDict[Hashable, list[CacheEntry]] = OrderedDict()

    def get(self, key: Hashable, image: torch.Tensor) -> CacheEntry | None:
        """The entry for ``image`` (3, H, W) under ``key``, or None."""
        version = parameter_version(self.model)
        entries = self._entries.get(key, [])
        for i, entry in enumerate(entries):
            if (
                entry.version == version
                and entry.image.shape == image.shape
                and torch.equal(entry.image, image)
            ):
                entries.append(entries.pop(i))
                return entry
        return None

    def put(self, key: Hashable, image: torch.Tensor, logits: torch.Tensor) -> CacheEntry:
        """Store ``logits`` for ``image`` under ``key`` and return the new entry."""
        entry = CacheEntry(image.detach().clone(), parameter_version(self.model), logits)
        entries = self._entries.setdefault(key, [])
        entries.append(entry)
        del entries[: max(0, len(entries) - self.size)]
        return entry

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())
