"""Reproducible explanations: maps kept with everything that made them, saved as a file, checked on load.

A :class:`Record` holds the (N, *S) maps, optionally the inputs they explain, and a JSON-able description of
what made them: a fingerprint of the model (SHA-256 over every parameter's and buffer's name, dtype, shape
and bytes, all of them), the model's class, the layer(s), the method with every option (the seed a
stochastic method used included), smoothing and fusion, the target (its name, kind and class indices), the
precision asked for and the one used, the input size, the normalisation, and the library versions.

Files are ``.npz`` archives of plain arrays (maps, inputs) plus the description as a JSON string; loading
never unpickles anything (``numpy.load(allow_pickle=False)``). ``Record.load(path, model)`` refuses a model
whose fingerprint differs, with a message saying so; :meth:`Record.replay` recomputes the maps with the same
settings.

Made by :meth:`camwidget.Explainer.record` or ``camwidget.explain(..., record=True)``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["FORMAT", "Record", "RecordMismatch", "model_fingerprint"]

FORMAT = "camwidget.record/1"


class RecordMismatch(ValueError):
    """A record was loaded or replayed against a model other than the one that made it."""


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) over every parameter and buffer of ``model``, in name order: each one's name, dtype,
    shape and raw bytes (no sampling; bfloat16 and other dtypes numpy lacks are hashed as their bytes)."""
    digest = hashlib.sha256()
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update({f"buffer:{k}": v for k, v in model.named_buffers(remove_duplicate=False)})
    for name in sorted(named):
        t = named[name].detach()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        data = t.contiguous().cpu()
        if data.numel():
            digest.update(data.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import torchvision

    import camwidget

    return {
        "camwidget": camwidget.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _jsonable(value: Any) -> Any:
    """Options as JSON: tuples become lists, tensors lists; anything else not JSON-able its repr."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _describe_target(target: Any) -> dict[str, Any]:
    """What a bound target was: its type and name, and its classes (kind, comparisons) where it has them."""
    out: dict[str, Any] = {"type": type(target).__name__, "name": getattr(target, "name", repr(target))}
    classes = getattr(target, "classes", None)
    if isinstance(classes, torch.Tensor):
        out["classes"] = classes.detach().cpu().tolist()
    for attr in ("kind", "explicit", "alpha"):
        if hasattr(target, attr):
            out[attr] = getattr(target, attr)
    comparisons = getattr(target, "comparisons", None)
    if isinstance(comparisons, torch.Tensor):
        out["comparisons"] = comparisons.detach().cpu().tolist()
    return out


@dataclass
class Record:
    """Maps and what made them (see the module doc).

    Attributes:
        maps: (N, *S) float32 CPU maps in [0, 1].
        inputs: (N, C, *S) float32 CPU inputs, or None when not kept.
        meta: the description (JSON-able dict): "format", "fingerprint", "model", "layers", "method",
            "options", "seed", "aug_smooth", "eigen_smooth", "fusion", "aug_scales", "target", "precision",
            "precision_used", "batch_size", "input_shape", "input_dtype", "mean", "std", "reshape_transform",
            "versions", "created".
    """

    maps: torch.Tensor
    inputs: torch.Tensor | None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_call(
        cls, explainer: Any, maps: torch.Tensor, inputs: torch.Tensor | None, settings: dict[str, Any]
    ) -> Record:
        """The record of one :class:`~camwidget.Explainer` call (used by :meth:`Explainer.record`)."""
        model = explainer.model
        shape = list(inputs.shape) if inputs is not None else [int(maps.shape[0]), -1, *maps.shape[1:]]
        meta = {
            "format": FORMAT,
            "fingerprint": model_fingerprint(model),
            "model": type(model).__name__,
            "layers": list(explainer.layer_names),
            "method": settings["method"],
            "options": _jsonable(settings["options"]),
            "seed": settings["options"].get("seed"),
            "aug_smooth": settings["aug_smooth"],
            "eigen_smooth": settings["eigen_smooth"],
            "fusion": settings["fusion"],
            "aug_scales": settings["aug_scales"],
            "target": _describe_target(settings["target"]),
            "precision": explainer.precision,
            "precision_used": settings["precision_used"],
            "batch_size": explainer.batch_size,
            "input_shape": shape,
            "input_dtype": str(inputs.dtype) if inputs is not None else None,
            "mean": list(explainer.mean),
            "std": list(explainer.std),
            "reshape_transform": None
            if explainer.reshape_transform is None
            else getattr(explainer.reshape_transform, "__qualname__", repr(explainer.reshape_transform)),
            "versions": _versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        kept = None if inputs is None else inputs.detach().float().cpu().clone()
        return cls(maps.detach().float().cpu().clone(), kept, meta)

    # -- files --------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the record to ``path`` (``.npz`` is appended if missing); returns the path written."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays: dict[str, np.ndarray] = {
            "maps": self.maps.numpy(),
            "meta": np.array(json.dumps(self.meta, sort_keys=True)),
        }
        if self.inputs is not None:
            arrays["inputs"] = self.inputs.numpy()
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> Record:
        """Read a record; with ``model``, refuse it unless that model is the one that made it.

        Raises:
            RecordMismatch: ``model`` differs from the record's (its parameters' fingerprint differs).
            ValueError: the file is not a camwidget record.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            if "meta" not in data or "maps" not in data:
                raise ValueError(f"{path} is not a camwidget record (no 'maps' and 'meta' arrays)")
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path} is a {meta.get('format')!r} file; this camwidget reads {FORMAT!r}")
            maps = torch.from_numpy(data["maps"].copy())
            inputs = torch.from_numpy(data["inputs"].copy()) if "inputs" in data else None
        record = cls(maps, inputs, meta)
        if model is not None:
            record.check(model)
        return record

    # -- checks -------------------------------------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
        """Raise :class:`RecordMismatch` unless ``model``'s fingerprint is the record's."""
        got = model_fingerprint(model)
        want = self.meta.get("fingerprint")
        if got != want:
            raise RecordMismatch(
                f"this record was made with a {self.meta.get('model')} whose parameters hash to "
                f"{str(want)[:12]}…; the {type(model).__name__} given hashes to {got[:12]}…: it is another "
                "model (or the same one changed since). Pass the model the record was made with, or load "
                "it without a model to read it"
            )

    def replay(
        self,
        model: nn.Module,
        *,
        target: object = None,
        reshape_transform: Any = None,
        **overrides: Any,
    ) -> torch.Tensor:
        """Recompute the maps on ``model`` with the recorded settings (same layers, method, options and
        seed, smoothing, fusion, precision, normalisation) and return them (N, *S) on the CPU.

        Args:
            model: must be the record's model (checked first).
            target: needed only when the recorded target was not a class (segmentation, detection,
                callables are not stored); class targets are rebuilt from the record.
            reshape_transform: the token reshape, when the record used one (callables are not stored).
            **overrides: Explainer settings to change (``precision``, ``batch_size``...).

        Raises:
            RecordMismatch: another model. ValueError: the inputs were not kept, or the target cannot be
                rebuilt and none was given.
        """
        from camwidget.engine.explainer import Explainer

        self.check(model)
        if self.inputs is None:
            raise ValueError("this record kept no inputs (keep_inputs=False); it can be read, not replayed")
        if self.meta.get("reshape_transform") and reshape_transform is None:
            raise ValueError(
                f"this record used reshape_transform {self.meta['reshape_transform']}; pass it to replay()"
            )
        if target is None:
            target = _rebuild_target(self.meta["target"])
        settings = {
            "precision": self.meta["precision"],
            "batch_size": self.meta["batch_size"],
            "mean": self.meta["mean"],
            "std": self.meta["std"],
            "aug_smooth": self.meta["aug_smooth"],
            "eigen_smooth": self.meta["eigen_smooth"],
            "fusion": self.meta["fusion"],
            "aug_scales": self.meta["aug_scales"],
            "reshape_transform": reshape_transform,
            **overrides,
        }
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with Explainer(model, self.meta["layers"], self.meta["method"], **settings) as explainer:
            maps = explainer(self.inputs.to(device=device, dtype=dtype), target, **self.meta["options"])
        return maps.cpu()


def _rebuild_target(described: dict[str, Any]) -> Any:
    """The bound class target a record describes (ClassIndex of its kind, or Finer-CAM's contrast)."""
    from camwidget.targets import ClassIndex, FinerContrast

    if "classes" not in described:
        raise ValueError(f"the recorded target ({described['name']}) is not a class; pass it as target=")
    classes = torch.tensor(described["classes"])
    if described["type"] == "FinerContrast":
        bound = FinerContrast(ClassIndex(classes), described["alpha"])
        bound.classes = classes
        bound.comparisons = torch.tensor(described["comparisons"])
        return bound
    return ClassIndex(classes, described.get("kind", "logit"), explicit=bool(described.get("explicit")))
