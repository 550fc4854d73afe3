"""The explorer's work without the widget: its inputs, its caches, what to compute next, the computing.

A :class:`Session` is plain, synchronous Python: no traits, no threads. Given a :class:`Selection` it
*plans* the next unit of :class:`Work` (a prediction, a map, a preview map, insertion/deletion curves),
*runs* one when asked, and describes what the widget should show (:meth:`Session.view`). The widget
(:mod:`camwidget.widget.explorer`) owns the thread that calls :meth:`Session.run` and publishes views as
traits; tests drive a Session directly.

The engine is called in four ways only: ``Explainer(model, layer, ...)``, ``explainer(x, target=...,
method=...)``, ``explainer.predict(x)`` and :func:`camwidget.metrics.insertion_deletion`. Every result is
cached under its :class:`~camwidget.widget.map_key.MapKey` in one LRU table of :class:`Entry` (map,
timing, precision, curves, errors), so going back to an earlier choice costs nothing.

Where later features plug in: a new kind of work (a what-if map of a masked image, a frame of a video) is
a ``Work.kind`` planned in :meth:`Session.plan` and computed in :meth:`Session.run`; a new dimension of a
map is a field of ``MapKey`` and ``Selection``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from camwidget.class_names import ClassNames
from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.batching import Cancelled, model_device
from camwidget.engine.explainer import Explainer
from camwidget.engine.layers import LayerCatalog, NoSpatialLayerError
from camwidget.engine.model_lock import model_lock
from camwidget.methods.registry import METHODS, get_method
from camwidget.metrics.insertion_deletion import blur_images, insertion_deletion
from camwidget.widget.codecs import encode_levels, load_images, step_order, to_display
from camwidget.widget.map_key import MapKey, Selection

__all__ = ["PREVIEW_METHOD", "Entry", "Session", "View", "Work"]

PREVIEW_METHOD = "hirescam"  # shown while a slow method computes: one forward and backward pass
MAP_CACHE = 192  # maps kept (each H*W float32: 200 KB at 224x224)

_log = logging.getLogger("camwidget")


def short_error(exc: BaseException) -> str:
    """``"TypeName: message"``, at most ~600 characters, for the status line."""
    text = str(exc).strip() or type(exc).__name__
    if len(text) > 600:
        text = text[:600] + "…"
    return f"{type(exc).__name__}: {text}"


def label(method: str) -> str:
    """How a method is shown to people ("Score-CAM"): the method's own ``label``."""
    return get_method(method).label


def _seconds(secs: float) -> str:
    return f"{secs * 1000:.0f} ms" if secs < 1 else f"{secs:.1f} s"


@dataclass
class Work:
    """One unit of background work.

    Attributes:
        kind: "predict" (class probabilities of an image), "map" or "curves".
        image: the image it is about.
        key: the map it computes (or the map whose curves it computes); None for "predict".
        label: what the status line says while it runs ("Score-CAM · layer4").
        slow: many forward passes (its progress is shown, and a change of selection cancels it).
    """

    kind: str
    image: int
    key: MapKey | None
    label: str
    slow: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        """Ask the work to stop at its next progress report."""
        self.cancelled.set()


@dataclass
class Entry:
    """Everything computed about one map key."""

    map: torch.Tensor | None = None  # (H, W) float32 in [0, 1], on the inputs' device (CPU)
    levels: bytes = b""  # the map as the browser gets it (encode_levels), encoded once
    seconds: float = 0.0
    precision: str = "fp32"
    warnings: tuple[str, ...] = ()  # why the map carries no information (the engine's diagnostics)
    error: str = ""
    curves: dict[str, Any] | None = None  # the published curve payload without its key
    order: bytes = b""  # step_order of the map, for the browser's perturbed frames
    curves_error: str = ""


@dataclass(frozen=True)
class View:
    """What the widget shows for a selection.

    Attributes:
        maps: per slot, the payload of the map to show, or None to keep what is shown (stale).
        curves: per slot, the curve payload, or None when there are none for that slot's map.
        status: "ready", "running", "cancelled" or "error". message, error: the status line. progress: 0..1
            or -1 (unknown). curves_status: why slot 0 has no curves ("" when it has them).
    """

    maps: tuple[dict[str, Any] | None, ...]
    curves: tuple[dict[str, Any] | None, ...]
    status: str
    message: str
    error: str
    progress: float
    curves_status: str


class Session:
    """The explorer's data and caches, and the computing of what a selection needs.

    Build one with :meth:`open` (it checks every argument and runs the model once). Thread-safety: one
    thread may :meth:`run` work while another reads (:meth:`view`, :meth:`plan`); results are stored
    under a lock. Calls on the model are serialised by :func:`~camwidget.engine.model_lock.model_lock`.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        display: np.ndarray,
        *,
        catalog: LayerCatalog,
        methods: Sequence[str],
        class_names: ClassNames,
        mean: Sequence[float],
        std: Sequence[float],
        curves: bool,
        curve_steps: int,
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.display = display
        self.catalog = catalog
        self.methods = tuple(methods)
        self.class_names = class_names
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.curves = curves
        self.curve_steps = max(2, int(curve_steps))
        self.interactive = {m for m in self.methods if get_method(m).interactive}
        self._lock = threading.RLock()
        self._entries: OrderedDict[MapKey, Entry] = OrderedDict()
        self._probs: dict[int, np.ndarray] = {}
        self._predict_errors: dict[int, str] = {}
        self._bases: dict[int, bytes] = {}
        self._explainers: dict[str, Explainer] = {}
        self._progress: Callable[[int, int], None] | None = None
        self._running: Work | None = None

    # ------------------------------------------------------------------------------------------ build
    @classmethod
    def open(
        cls,
        model: nn.Module,
        images: Any,
        *,
        class_names: Sequence[str] | None = None,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        layers: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        curves: bool = True,
        curve_steps: int = 32,
    ) -> Session:
        """Check the arguments, load the images and survey the model (one forward pass of the first image).

        Args: as :class:`~camwidget.CamExplorer`.

        Raises:
            TypeError, ValueError, FileNotFoundError: a bad model, image, method, layer or class name
                list, or a model that fails on the first image (the message says which and what to do).
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError("mean and std must have 3 entries (RGB), std > 0")
        chosen = list(METHODS) if methods is None else [get_method(m).name for m in methods]
        if not chosen:
            raise ValueError(f"methods is empty: pass some of {', '.join(METHODS)}")
        inputs, display = load_images(images, preprocess, mean, std)
        x0 = inputs[:1]
        try:
            catalog = LayerCatalog.of(model, x0.to(model_device(model)))
            probs0 = Explainer(model, None, PREVIEW_METHOD, mean=mean, std=std).predict(x0).softmax(dim=1)[0]
        except NoSpatialLayerError:
            raise
        except Exception as exc:
            raise ValueError(
                f"the model failed on the first image (input shape {tuple(x0.shape)}): {short_error(exc)}. "
                "Check that preprocess produces what the model expects."
            ) from exc
        session = cls(
            model,
            inputs,
            display,
            catalog=catalog if layers is None else catalog.restrict(layers),
            methods=list(dict.fromkeys(chosen)),
            class_names=ClassNames(class_names, probs0.shape[0]),
            mean=mean,
            std=std,
            curves=curves,
            curve_steps=curve_steps,
        )
        session._probs[0] = probs0.cpu().numpy()
        return session

    # ---------------------------------------------------------------------------------------- queries
    def probabilities(self, image: int) -> np.ndarray | None:
        """(K,) class probabilities of ``image`` once predicted (NaN when the model failed on it)."""
        return self._probs.get(image)

    def entry(self, key: MapKey) -> Entry | None:
        """What is cached about ``key``."""
        with self._lock:
            return self._entries.get(key)

    def map(self, key: MapKey) -> torch.Tensor | None:
        """The cached (H, W) map of ``key``, if computed."""
        entry = self.entry(key)
        return None if entry is None else entry.map

    def cached(self) -> list[MapKey]:
        """The keys with a cached map, oldest first."""
        with self._lock:
            return [k for k, e in self._entries.items() if e.map is not None]

    def insertion_base(self, image: int) -> bytes:
        """The display pixels insertion starts from (RISE: a blurred copy of the image), once curves of
        that image were computed; else empty."""
        return self._bases.get(image, b"")

    def preview_key(self, key: MapKey | None) -> MapKey | None:
        """The fast map shown while ``key``'s slow method computes (None for interactive methods)."""
        if key is None or key.method in self.interactive or PREVIEW_METHOD not in METHODS:
            return None
        return key.replace(method=PREVIEW_METHOD)

    def wanted(self, selection: Selection) -> set[MapKey]:
        """Every map the selection may show, previews included (running work on others is cancelled)."""
        keys = {k for k in selection.keys() if k is not None}
        preview = self.preview_key(selection.keys()[0])
        return keys | ({preview} if preview is not None else set())

    # ------------------------------------------------------------------------------------------- plan
    def plan(self, selection: Selection, *, paused: bool = False) -> Work | None:
        """The most useful missing result for ``selection``, or None when all is there (or ``paused``).

        Order: the image's prediction; a fast preview when slot 0's method is slow and nothing of it is
        shown yet; the slots' maps; then their curves.
        """
        with self._lock:
            image = selection.image
            if image not in self._probs:
                return Work("predict", image, None, "Predicting")
            if paused:
                return None
            keys = [k for k in selection.keys() if k is not None]
            if not keys:
                return None
            first, preview = keys[0], self.preview_key(keys[0])
            if preview is not None and not self._settled(first) and not self._settled(preview):
                return self._map_work(preview, preview=True)
            for key in keys:
                if not self._settled(key):
                    return self._map_work(key)
            if self.curves:
                for key in keys:
                    entry = self._entries[key]
                    if entry.map is not None and entry.curves is None and not entry.curves_error:
                        return Work("curves", key.image, key, "Insertion/deletion curves", slow=True)
            return None

    def _settled(self, key: MapKey) -> bool:
        entry = self._entries.get(key)
        return entry is not None and (entry.map is not None or bool(entry.error))

    def _map_work(self, key: MapKey, preview: bool = False) -> Work:
        text = f"{'Preview ' if preview else ''}{label(key.method)} · {key.layer}"
        return Work("map", key.image, key, text, slow=key.method not in self.interactive)

    # -------------------------------------------------------------------------------------------- run
    def run(self, work: Work, progress: Callable[[int, int], None] | None = None) -> None:
        """Compute ``work`` and cache its result or its error (never raises for a model failure).

        ``progress(done, total)`` is called during long work; :meth:`Work.cancel` stops it at the next
        report (nothing is cached then).
        """
        self._progress, self._running = progress, work
        try:
            if work.kind == "predict":
                self._run_predict(work.image)
            elif work.kind == "map":
                assert work.key is not None
                self._run_map(work.key)
            elif work.kind == "curves":
                assert work.key is not None
                self._run_curves(work.key)
            else:
                raise ValueError(f"unknown kind of work {work.kind!r}")
        except Cancelled:
            pass
        finally:
            self._progress, self._running = None, None

    def predict(self, image: int) -> np.ndarray:
        """(K,) class probabilities of ``image`` (computed once, then cached). Raises the model's error."""
        probs = self._probs.get(image)
        if probs is None:
            out = self._explainer("").predict(self.inputs[image : image + 1])
            probs = torch.softmax(out.float(), dim=1)[0].cpu().numpy()
            self._probs[image] = probs
        return probs

    def prediction_error(self, image: int) -> str:
        """Why ``image`` could not be predicted ("" when it was)."""
        return self._predict_errors.get(image, "")

    def _run_predict(self, image: int) -> None:
        try:
            self.predict(image)
        except Exception as exc:
            _log.debug("".join(traceback.format_exception(exc)))
            self._predict_errors[image] = f"The model failed on image {image}: {short_error(exc)}"
            self._probs[image] = np.full(len(self.class_names), np.nan, dtype=np.float32)

    def _report(self, done: int, total: int) -> None:
        """The engine's progress callback: forward to the caller, stop cancelled work."""
        work = self._running
        if work is not None and work.cancelled.is_set():
            raise Cancelled()
        if self._progress is not None:
            self._progress(done, total)

    def _explainer(self, layer: str) -> Explainer:
        """One Explainer per layer (its method instances keep Score-CAM's per-image scores)."""
        ex = self._explainers.get(layer)
        if ex is None:
            ex = Explainer(  # warn=False: the widget shows the warnings with the map
                self.model,
                layer or None,
                PREVIEW_METHOD,
                progress=self._report,
                mean=self.mean,
                std=self.std,
                warn=False,
            )
            self._explainers[layer] = ex
        return ex

    def _run_map(self, key: MapKey) -> None:
        start = time.perf_counter()
        try:
            with model_lock(self.model):
                ex = self._explainer(key.layer)
                cam = ex(self.inputs[key.image : key.image + 1], target=key.target, method=key.method)
            cam = cam[0].detach().float()
            entry = Entry(
                map=cam,
                levels=encode_levels(cam),
                precision=ex.precision_used or "fp32",
                warnings=tuple(ex.last_warnings),
            )
            entry.seconds = time.perf_counter() - start
        except Cancelled:
            raise
        except Exception as exc:
            _log.debug("".join(traceback.format_exception(exc)))
            entry = Entry(error=f"{label(key.method)} at {key.layer} failed: {short_error(exc)}")
        self._store(key, entry)

    def _store(self, key: MapKey, entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > MAP_CACHE:
                self._entries.popitem(last=False)

    def _run_curves(self, key: MapKey) -> None:
        entry = self.entry(key)
        if entry is None or entry.map is None:
            return
        cam = entry.map
        h, w = cam.shape
        step = max(1, math.ceil(h * w / self.curve_steps))
        x = self.inputs[key.image : key.image + 1]
        try:
            out = insertion_deletion(
                self.model,
                x,
                cam[None],
                target=[key.target],
                step=step,
                substrate="zeros",
                mean=self.mean,
                std=self.std,
                progress=self._report,
            )
            curves = {
                "fractions": [round(float(f), 6) for f in out.fractions.tolist()],
                "insertion": [round(float(v), 6) for v in out.insertion[0].tolist()],
                "deletion": [round(float(v), 6) for v in out.deletion[0].tolist()],
                "insertion_auc": float(out.insertion_auc[0]),
                "deletion_auc": float(out.deletion_auc[0]),
                "n_steps": out.n_steps,
                "precision": out.precision,
            }
            order = step_order(cam, out.step)
            if key.image not in self._bases:
                self._bases[key.image] = to_display(
                    blur_images(x, out.blur)[0], self.mean, self.std
                ).tobytes()
            with self._lock:
                entry.curves, entry.order, entry.curves_error = curves, order, ""
        except Cancelled:
            raise
        except Exception as exc:
            _log.debug("".join(traceback.format_exception(exc)))
            with self._lock:
                entry.curves_error = f"Curves failed: {short_error(exc)}"

    # ------------------------------------------------------------------------------------------- view
    def map_payload(self, key: MapKey) -> dict[str, Any] | None:
        """What the front end needs to draw ``key``'s cached map (None when not computed)."""
        entry = self.entry(key)
        if entry is None or entry.map is None:
            return None
        probs = self._probs.get(key.image)
        prob = None if probs is None or np.isnan(probs[key.target]) else round(float(probs[key.target]), 6)
        return {
            "key": key.encode(),
            "levels": entry.levels,
            "class_name": self.class_names[key.target],
            "class_prob": prob,
            "seconds": round(entry.seconds, 4),
            "precision": entry.precision,
            "warnings": list(entry.warnings),
        }

    def view(self, selection: Selection, *, running: Work | None = None, paused: bool = False) -> View:
        """What to show for ``selection``: each slot's map (its preview while slot 0 computes), curves and
        the status line, given the work ``running`` now and whether the user ``paused`` (cancelled)."""
        with self._lock:
            keys = selection.keys()
            maps: list[dict[str, Any] | None] = []
            curves: list[dict[str, Any] | None] = []
            for slot, key in enumerate(keys):
                payload = None if key is None else self.map_payload(key)
                if payload is None and slot == 0:
                    preview = self.preview_key(key)
                    payload = None if preview is None else self.map_payload(preview)
                maps.append(payload)
                entry = None if key is None else self._entries.get(key)
                if entry is not None and entry.curves is not None:
                    curves.append({"key": key.encode(), "order": entry.order, **entry.curves})
                else:
                    curves.append(None)
            return View(
                maps=tuple(maps),
                curves=tuple(curves),
                curves_status=self._curves_status(keys[0], running, paused),
                **self._status(selection, running, paused),
            )

    def _status(self, selection: Selection, running: Work | None, paused: bool) -> dict[str, Any]:
        keys = [k for k in selection.keys() if k is not None]
        errors = [e.error for k in keys if (e := self._entries.get(k)) is not None and e.error]
        if self._predict_errors.get(selection.image):
            errors.insert(0, self._predict_errors[selection.image])
        if errors:
            return {"status": "error", "message": "", "error": "\n".join(errors), "progress": -1.0}
        if running is not None:
            return {"status": "running", "message": f"{running.label}…", "error": "", "progress": -1.0}
        missing = [k for k in keys if self.map(k) is None]
        if paused and missing:
            names = " and ".join(label(k.method) for k in missing)
            return {
                "status": "cancelled",
                "message": f"Cancelled. Press Compute to run {names}.",
                "error": "",
                "progress": -1.0,
            }
        entry = self._entries.get(keys[0]) if keys else None
        message = ""
        if entry is not None and entry.map is not None:
            message = f"{label(keys[0].method)} in {_seconds(entry.seconds)} · {entry.precision}"
        return {"status": "ready", "message": message, "error": "", "progress": 1.0}

    def _curves_status(self, key: MapKey | None, running: Work | None, paused: bool) -> str:
        if not self.curves:
            return "Curves off (curves=False)."
        entry = None if key is None else self._entries.get(key)
        if entry is not None and entry.curves is not None:
            return ""
        if entry is not None and entry.curves_error:
            return entry.curves_error
        if running is not None and running.kind == "curves" and running.key == key:
            return "Computing insertion/deletion curves…"
        if paused:
            return "Curves not computed (cancelled)."
        return "Curves follow once the map is ready…"

    # --------------------------------------------------------------------------------------- lifetime
    def forget_errors(self, selection: Selection) -> None:
        """Drop the errors of the selection's maps and curves, so they are computed again."""
        with self._lock:
            for key in selection.keys():
                entry = None if key is None else self._entries.get(key)
                if entry is None:
                    continue
                if entry.error:
                    del self._entries[key]
                else:
                    entry.curves_error = ""

    def release(self) -> None:
        """Drop every cache (maps, curves, predictions, the explainers' per-image scores)."""
        with self._lock:
            for ex in self._explainers.values():
                ex.release()
            self._explainers.clear()
            self._entries.clear()
            self._bases.clear()

    @property
    def cache_size(self) -> int:
        """How many map keys have something cached."""
        return len(self._entries)
