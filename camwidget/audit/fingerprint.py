"""What an audit explained, in a few bytes: fingerprints of the model, the data and the transform.

The store records them with the audit's settings and refuses a writer (or a report's ``dataset=``) whose
fingerprints differ, with a message that says *what* differs:

- **model**: class, parameter count and a digest of evenly spaced values of every parameter and buffer
  (:func:`model_fingerprint`);
- **data**: the dataset's length and a digest of ``samples`` items spread evenly through it (always the
  first and the last), hashed as the dataset returns them (image, label, box): another dataset of the
  same length, relabelled items or edited images change it (:func:`data_fingerprint`);
- **transform**: the transform's description (its ``repr``, memory addresses removed) and a digest of
  the model inputs it produces on the sampled items, so that two transforms that print alike but
  compute differently are told apart. A random transform (two calls disagree) is recorded by its
  description alone.

Hashing 16 items costs reading them once more: milliseconds for tensors, a few hundred for decoded
photos.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "SAMPLES",
    "data_fingerprint",
    "describe_mismatch",
    "describe_transform",
    "model_fingerprint",
    "sample_indices",
]

SAMPLES = 16
"""Items hashed for the data and transform fingerprints."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def model_fingerprint(model: nn.Module, *, samples: int = 512) -> dict[str, Any]:
    """Class name, parameter count and a digest of the parameters and buffers.

    The digest covers every tensor's name, shape and dtype and the exact bytes of ``samples`` values
    spread evenly through it: cheap (no full pass over the weights), identical on any device, and
    changed by any training step or different checkpoint (which move nearly every weight).
    """
    digest = hashlib.sha1()
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            flat = t.detach().reshape(-1)
            n = flat.numel()
            digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            if n:
                picks = torch.linspace(0, n - 1, min(n, samples), device=flat.device).long()
                digest.update(flat[picks].cpu().numpy().tobytes())
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "digest": digest.hexdigest()[:16],
    }


def sample_indices(length: int, samples: int = SAMPLES) -> list[int]:
    """``samples`` dataset indices spread evenly over ``range(length)``, first and last included."""
    if length <= 0:
        return []
    return sorted({round(float(v)) for v in np.linspace(0, length - 1, min(length, samples))})


def describe_transform(transform: Callable[[Any], Any] | None) -> str:
    """A transform's ``repr`` without memory addresses (``"none"`` for None)."""
    if transform is None:
        return "none"
    return _ADDRESS.sub("", repr(transform))


def _update(digest: Any, value: Any) -> None:
    """Feed ``value`` (tensors, arrays, PIL images, numbers, strings, nested tuples) into ``digest``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        digest.update(f"A{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
        return
    try:
        from PIL import Image

        if isinstance(value, Image.Image):
            digest.update(f"P{value.mode}{value.size}".encode())
            digest.update(value.tobytes())
            return
    except ImportError:  # pragma: no cover - pillow is a dependency
        pass
    if isinstance(value, (tuple, list)):
        digest.update(f"L{len(value)}(".encode())
        for v in value:
            _update(digest, v)
        digest.update(b")")
        return
    if isinstance(value, dict):
        digest.update(b"D{")
        for k in sorted(value, key=str):
            digest.update(str(k).encode())
            _update(digest, value[k])
        digest.update(b"}")
        return
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        digest.update(f"S{type(value).__name__}:{value!r}".encode())
        return
    digest.update(f"O{type(value).__module__}.{type(value).__qualname__}".encode())


def data_fingerprint(
    dataset: Any,
    transform: Callable[[Any], Any] | None,
    *,
    samples: int = SAMPLES,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fingerprints of the data and of the transform that turns it into model inputs.

    Args:
        dataset: a map-style dataset (``len`` and ``[i]``) yielding ``(image, label[, box_or_mask])``.
        transform: what the audit applies to each image (None: the images are the inputs). A dataset's
            own ``transform`` attribute (torchvision style) is described too.
        samples: how many items to hash (spread evenly, first and last included). Default 16.

    Returns:
        ``(data, transform)``: ``{"length", "samples", "digest"}`` and ``{"description",
        "dataset_transform", "inputs", "random"}`` (JSON-ready; ``inputs`` is None for a random
        transform). Items that fail to load count as "unreadable", not as an error.
    """
    length = len(dataset)
    picks = sample_indices(length, samples)
    data_digest = hashlib.sha1(f"n{length}".encode())
    input_digest = hashlib.sha1()
    random = False
    first_image: Any = None
    for i in picks:
        try:
            item = dataset[i]
        except Exception as exc:  # an unreadable item is part of what the data is
            data_digest.update(f"{i}:unreadable:{type(exc).__name__}".encode())
            input_digest.update(f"{i}:unreadable".encode())
            continue
        data_digest.update(f"{i}:".encode())
        _update(data_digest, item)
        image = item[0] if isinstance(item, (tuple, list)) and item else item
        if first_image is None:
            first_image = image
        try:
            x = transform(image) if transform is not None else image
        except Exception as exc:
            input_digest.update(f"{i}:transform failed:{type(exc).__name__}".encode())
            continue
        input_digest.update(f"{i}:".encode())
        _update(input_digest, x)
    if transform is not None and first_image is not None:
        try:
            a, b = transform(first_image), transform(first_image)
            same = (
                torch.equal(a, b)
                if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                else _digest_of(a) == _digest_of(b)
            )
            random = not same
        except Exception:
            random = False
    own = getattr(dataset, "transform", None)
    data = {"length": int(length), "samples": len(picks), "digest": data_digest.hexdigest()[:16]}
    described = {
        "description": describe_transform(transform),
        "dataset_transform": describe_transform(own) if callable(own) else "none",
        "inputs": None if random else input_digest.hexdigest()[:16],
        "random": random,
    }
    return data, described


def _digest_of(value: Any) -> str:
    d = hashlib.sha1()
    _update(d, value)
    return d.hexdigest()


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_dataset(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    parts = []
    a, b = stored.get("fingerprint"), wanted.get("fingerprint")
    if a is None and b is not None:
        return [
            "the store was written by an older camwidget that did not record what data it audited, so "
            "this data cannot be checked against it"
        ]
    for key in ("kind", "root"):
        if stored.get(key) != wanted.get(key):
            parts.append(f"dataset {key}: stored {_short(stored.get(key))}, now {_short(wanted.get(key))}")
    if stored.get("classes") != wanted.get("classes"):
        parts.append(
            f"class folders: stored {_short(stored.get('classes'))}, now {_short(wanted.get('classes'))}"
        )
    if a is not None and b is not None:
        if a.get("length") != b.get("length"):
            parts.append(
                f"the data differs: the store audited {a.get('length')} items, this dataset has "
                f"{b.get('length')}"
            )
        elif a.get("digest") != b.get("digest"):
            picks = sample_indices(int(b.get("length", 0)), int(b.get("samples", SAMPLES)))
            shown = ", ".join(str(i) for i in picks[:4]) + (
                ", ..., " + str(picks[-1]) if len(picks) > 4 else ""
            )
            parts.append(
                f"the data differs: the sampled items (indices {shown}) hold other images or labels than "
                f"the audited ones (same length {b.get('length')}); another dataset, or this one changed"
            )
    return parts


def _describe_transform(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    if stored is None:
        return [
            "the store was written by an older camwidget that did not record the transform, so this "
            "transform cannot be checked against it"
        ]
    parts = []
    for key, what in (("description", "the transform"), ("dataset_transform", "the dataset's own transform")):
        if stored.get(key) != wanted.get(key):
            parts.append(f"{what} differs: stored {_short(stored.get(key))}, now {_short(wanted.get(key))}")
    if not parts and stored.get("random") != wanted.get("random"):
        parts.append(
            f"the transform differs: it was {'random' if stored.get('random') else 'deterministic'} in the "
            f"audit, it is {'random' if wanted.get('random') else 'deterministic'} now"
        )
    if not parts and stored.get("inputs") != wanted.get("inputs"):
        parts.append(
            f"the transform differs: {_short(wanted.get('description'))} gives other inputs on the sampled "
            "items than the audited transform did (same description, other parameters or code)"
        )
    return parts


def describe_mismatch(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    """What differs between two audits' settings, one clause per difference, in words.

    The data and the transform get sentences of their own ("the data differs: ...", "the transform
    differs: ..."); other keys are shown as ``key: stored X, now Y``.
    """
    parts: list[str] = []
    data_differs = False
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if a == b:
            continue
        if key == "dataset" and isinstance(a, dict) and isinstance(b, dict):
            found = _describe_dataset(a, b)
            data_differs = bool(found)
            parts += found
        elif key == "transform" and isinstance(b, dict):
            parts += _describe_transform(a if isinstance(a, dict) else None, b)
        else:
            parts.append(f"{key}: stored {_short(a, 120)}, now {_short(b, 120)}")
    if data_differs:  # other data makes other inputs: the transform is not to blame
        parts = [p for p in parts if not (p.startswith("the transform differs") and "other inputs" in p)]
    return "; ".join(parts) or "nothing visible (the settings differ in formatting only)"
