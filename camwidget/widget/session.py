"""The explorer's work without the widget: its inputs, its caches, what to compute next, the computing.

A :class:`Session` is plain, synchronous Python: no traits, no threads. Given a :class:`Selection` it
*plans* the next unit of :class:`Work` (a prediction, a map, a preview map, insertion/deletion curves),
*runs* one when asked, and describes what the widget should show (:meth:`Session.view`). The widget
(:mod:`camwidget.widget.explorer`) owns the thread that calls :meth:`Session.run` and publishes views as
traits; tests drive a Session directly.

The engine is called in these ways only: ``Explainer(model, layer, ...)``, ``explainer(x, target=...,
method=...)``, one plain forward pass per image (:func:`model_output`, read by
:class:`~camwidget.widget.choices.Choices`), and the metrics :func:`~camwidget.metrics.insertion_deletion`,
:func:`~camwidget.metrics.perturbed_image` (the what-if brush's painted input, on the curves' own
substrates) and :func:`~camwidget.metrics.error_understanding`. Every result is cached under its
:class:`~camwidget.widget.map_key.MapKey` in one LRU table of :class:`Entry` (map, timing, precision,
curves, error-understanding figures, errors), so going back to an earlier choice costs nothing.

What a map explains is one of the image's *choices* (:mod:`camwidget.widget.choices`: a class, a label, a
segmentation class, a detection, or one fixed target); a what-if mask (:meth:`Session.register_mask`) is a
field of the key, so a painted image's predictions and maps are cached like any other. Video and volumes
(N, C, T, H, W) work alike: their maps are (T, H, W), and the brush paints every frame.

Where later features plug in: a new kind of work is a ``Work.kind`` planned in :meth:`Session.plan` and
computed in :meth:`Session.run`; a new dimension of a map is a field of ``MapKey`` and ``Selection``.
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

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.batching import Cancelled, model_device
from camwidget.engine.explainer import Explainer
from camwidget.engine.hooks import preserved_state
from camwidget.engine.layers import LayerCatalog, NoSpatialLayerError
from camwidget.engine.model_lock import model_lock
from camwidget.engine.validation import running_model
from camwidget.methods.registry import METHODS, get_method
from camwidget.metrics.error_understanding import error_understanding
from camwidget.metrics.insertion_deletion import SUBSTRATES, blur_images, insertion_deletion, perturbed_image
from camwidget.targets import describe_output
from camwidget.widget.choices import Choices, Reading, names_index
from camwidget.widget.codecs import encode_levels, load_images, step_order, to_display, unpack_mask
from camwidget.widget.map_key import MapKey, Selection, mask_id

__all__ = ["PREVIEW_METHOD", "UNDERSTANDING_RANGES", "Entry", "Session", "View", "Work", "model_output"]

PREVIEW_METHOD = "hirescam"  # shown while a slow method computes: one forward and backward pass
MAP_CACHE = 192  # maps kept (each H*W float32: 200 KB at 224x224)
MASK_CACHE = 64  # what-if masks kept (their readings: MASK_CACHE * images at most)
PAINTED_CACHE = 8  # painted inputs kept (each one C*H*W float32 input)
UNDERSTANDING_RANGES = (
    0.25,
    0.5,
    1.0,
)  # error understanding: highest confidence within these shares of pixels

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


def model_output(model: nn.Module, x: torch.Tensor) -> Any:
    """The model's output on ``x`` (one plain forward pass in eval mode under ``inference_mode``, on the
    model's device; the model is left as it came and other camwidget calls on it wait)."""
    with preserved_state(model), torch.inference_mode(), running_model(x):
        return model(x.to(model_device(model)))


@dataclass
class Work:
    """One unit of background work.

    Attributes:
        kind: "predict" (what an image's output says about its choices), "map", "curves" or "understanding"
            (the error-understanding figures of a misclassified image's map).
        image: the image it is about.
        key: the map it computes (or the map whose curves or figures it computes); None for "predict".
        label: what the status line says while it runs ("Score-CAM · layer4").
        slow: many forward passes (its progress is shown, and a change of selection cancels it).
        mask: "predict": the what-if mask of the painted image to read ("" for the image as it is).
    """

    kind: str
    image: int
    key: MapKey | None
    label: str
    slow: bool = False
    mask: str = ""
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
    understanding: dict[str, Any] | None = None  # error-understanding figures (misclassified images)
    understanding_error: str = ""


@dataclass(frozen=True)
class View:
    """What the widget shows for a selection.

    Attributes:
        maps: per slot, the payload of the map to show, or None to keep what is shown (stale).
        curves: per slot, the curve payload, or None when there are none for that slot's map.
        status: "ready", "running", "cancelled" or "error". message, error: the status line. progress: 0..1
            or -1 (unknown). curves_status: why slot 0 has no curves ("" when it has them); under the brush
            the curves are the unpainted image's.
        understanding: the error-understanding figures of slot 0's map when its image is misclassified
            (``{"status": ...}`` while they compute, ``{}`` when they do not apply).
    """

    maps: tuple[dict[str, Any] | None, ...]
    curves: tuple[dict[str, Any] | None, ...]
    status: str
    message: str
    error: str
    progress: float
    curves_status: str
    understanding: dict[str, Any] = field(default_factory=dict)


class Session:
    """The explorer's data and caches, and the computing of what a selection needs.

    Build one with :meth:`open` (it checks every argument and runs the model once). Thread-safety: one
    thread may :meth:`run` work while another reads (:meth:`view`, :meth:`plan`); results are stored
    under a lock. Calls on the model are serialised by :func:`~camwidget.engine.model_lock.model_lock`.

    Attributes:
        choices: what can be explained in an image (:class:`~camwidget.widget.choices.Choices`).
        labels: the true class of each image, -1 where unknown (classifiers only).
        first: the choice ``target=`` asked to show first (None: each image's top choice).
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        display: np.ndarray,
        *,
        catalog: LayerCatalog,
        methods: Sequence[str],
        choices: Choices,
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
        self.choices = choices
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.curves = curves
        self.curve_steps = max(2, int(curve_steps))
        self.interactive = {m for m in self.methods if get_method(m).interactive}
        self.labels: list[int] = [-1] * len(inputs)
        self.first: int | None = None
        self._lock = threading.RLock()
        self._entries: OrderedDict[MapKey, Entry] = OrderedDict()
        self._readings: dict[int, Reading] = {}
        self._painted_readings: OrderedDict[tuple[int, str], Reading] = OrderedDict()
        self._predict_errors: dict[tuple[int, str], str] = {}
        self._masks: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._painted: OrderedDict[tuple[int, str], torch.Tensor] = OrderedDict()
        self._bases: dict[int, bytes] = {}
        self._explainers: dict[tuple[str, ...], Explainer] = {}
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
        target: object = None,
        multilabel: bool = False,
        labels: Sequence[Any] | None = None,
    ) -> Session:
        """Check the arguments, load the images and survey the model (one forward pass of the first image).

        Args: as :class:`~camwidget.CamExplorer`.

        Raises:
            TypeError, ValueError, FileNotFoundError: a bad model, image, method, layer, target, label or
                class name list, or a model that fails on the first image (the message says which and what
                to do).
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
            output = model_output(model, x0)
        except NoSpatialLayerError:
            raise
        except Exception as exc:
            raise ValueError(
                f"the model failed on the first image (input shape {tuple(x0.shape)}): {short_error(exc)}. "
                "Check that preprocess produces what the model expects."
            ) from exc
        choices, first = Choices.of(output, target=target, multilabel=multilabel, class_names=class_names)
        session = cls(
            model,
            inputs,
            display,
            catalog=catalog if layers is None else catalog.restrict(layers),
            methods=list(dict.fromkeys(chosen)),
            choices=choices,
            mean=mean,
            std=std,
            curves=curves,
            curve_steps=curve_steps,
        )
        session.first = first
        try:
            session._readings[0] = choices.read(output, session._run_model)
        except (TypeError, ValueError):
            raise
        except Exception as exc:
            raise ValueError(
                f"the target failed on the model's output ({describe_output(output)}): {short_error(exc)}"
            ) from exc
        if labels is not None:
            session.set_labels(session.check_labels(labels))
        return session

    def check_labels(self, labels: Sequence[Any]) -> list[int]:
        """One true class per image (an index, a class name, or None / -1 where unknown) -> indices (-1).

        Raises:
            TypeError, ValueError: not one per image, an unknown class, or a model whose choices are not
                classes (the true class is a classifier's notion).
        """
        if isinstance(labels, str | bytes) or not isinstance(labels, Sequence | np.ndarray | torch.Tensor):
            raise TypeError(f"labels must be one class per image (a list); got {type(labels).__name__}")
        values = labels.tolist() if isinstance(labels, np.ndarray | torch.Tensor) else list(labels)
        if len(values) != len(self.inputs):
            raise ValueError(
                f"labels has {len(values)} entries for {len(self.inputs)} images; pass one per image"
            )
        unknown = [v is None or (isinstance(v, int) and not isinstance(v, bool) and v == -1) for v in values]
        if not all(unknown) and self.choices.kind != "classes":
            kinds = {"labels": "labels", "segmentation": "segmentation classes", "detections": "detections"}
            raise ValueError(
                "labels= (the true class per image) needs a classifier's classes; this explorer lists "
                f"{kinds.get(self.choices.kind, 'one target')}"
            )
        return [-1 if u else names_index(self.class_names, v) for u, v in zip(unknown, values, strict=True)]

    def set_labels(self, labels: Sequence[int]) -> None:
        """Set the true classes (checked indices, -1 where unknown); error-understanding figures follow."""
        with self._lock:
            self.labels = [int(v) for v in labels]

    # ---------------------------------------------------------------------------------------- queries
    @property
    def class_names(self) -> Sequence[str]:
        """The names of the model's classes (labels, segmentation classes, a detector's labels)."""
        return self.choices.class_names

    @property
    def frames(self) -> int:
        """T for video or volumes (N, C, T, H, W), else 1."""
        return int(self.inputs.shape[2]) if self.inputs.ndim == 5 else 1

    @property
    def stills(self) -> np.ndarray:
        """(N, H, W, 3) uint8: the images, or each clip's middle frame."""
        return self.display[:, self.frames // 2] if self.inputs.ndim == 5 else self.display

    def reading(self, image: int, mask: str = "") -> Reading | None:
        """What ``image``'s output (painted with ``mask``) says about its choices, once predicted."""
        with self._lock:
            if not mask:
                return self._readings.get(image)
            return self._painted_readings.get((image, mask))

    def probabilities(self, image: int) -> np.ndarray | None:
        """The number beside each choice of ``image`` (class probabilities for a classifier), once
        predicted; NaN when the model failed on it."""
        reading = self.reading(image)
        return None if reading is None else reading.scores

    def entry(self, key: MapKey) -> Entry | None:
        """What is cached about ``key``."""
        with self._lock:
            return self._entries.get(key)

    def map(self, key: MapKey) -> torch.Tensor | None:
        """The cached (H, W) map of ``key`` ((T, H, W) for clips), if computed."""
        entry = self.entry(key)
        return None if entry is None else entry.map

    def cached(self) -> list[MapKey]:
        """The keys with a cached map, oldest first."""
        with self._lock:
            return [k for k, e in self._entries.items() if e.map is not None]

    def insertion_base(self, image: int) -> bytes:
        """The display pixels insertion starts from (RISE: a blurred copy of the image), once curves of
        that image were computed or :meth:`blurred` was asked; else empty."""
        return self._bases.get(image, b"")

    def blurred(self, image: int) -> bytes:
        """The display pixels of the RISE blur of ``image`` (insertion's start, the brush's "blur" fill)."""
        base = self._bases.get(image)
        if base is None:
            x = self.inputs[image : image + 1]
            base = self._bases[image] = to_display(blur_images(x)[0], self.mean, self.std).tobytes()
        return base

    def preview_key(self, key: MapKey | None) -> MapKey | None:
        """The fast map shown while ``key`` computes slowly: a slow method's is HiResCAM's, an ``aug_smooth``
        map's is the same map unsmoothed (None for interactive methods without ``aug_smooth``)."""
        if key is None or PREVIEW_METHOD not in METHODS:
            return None
        smoothing = "none" if key.smoothing == "aug" else key.smoothing
        if key.method in self.interactive:
            return None if key.smoothing != "aug" else key.replace(smoothing=smoothing)
        if smoothing == "eigen" and not get_method(PREVIEW_METHOD).eigen_smoothable():
            smoothing = "none"
        return key.replace(method=PREVIEW_METHOD, smoothing=smoothing)

    def wanted(self, selection: Selection) -> set[MapKey]:
        """Every map the selection may show, previews included (running work on others is cancelled)."""
        keys = {k for k in selection.keys() if k is not None}
        preview = self.preview_key(selection.keys()[0])
        plain = {k.replace(mask="") for k in keys} if self.curves else set()
        return keys | plain | ({preview} if preview is not None else set())

    def choice_count(self, image: int) -> int | None:
        """How many choices ``image`` offers (None while a detector's image is not predicted yet)."""
        count = self.choices.count
        if count is not None:
            return count
        reading = self.reading(image)
        return None if reading is None else reading.count

    def name(self, image: int, choice: int) -> str:
        """How choice ``choice`` of ``image`` is shown (a class name, a detection, the target's name)."""
        return self.choices.name(self.reading(image), choice)

    def target(self, key: MapKey) -> Any:
        """What the engine explains for ``key`` (a class index or a :class:`~camwidget.targets.Target`)."""
        return self.choices.target(self.reading(key.image), key.target)

    def understands(self, image: int) -> bool:
        """Whether ``image`` gets error-understanding figures: a classifier's image with a known true class
        that the model gets wrong (and a still image: the metric is defined on (N, C, H, W))."""
        reading = self.reading(image)
        label = self.labels[image]
        return (
            self.choices.kind == "classes"
            and label >= 0
            and self.inputs.ndim == 4
            and reading is not None
            and not reading.failed
            and reading.order(1)[0] != label
        )

    # ------------------------------------------------------------------------------------- what-if
    def register_mask(self, bits: bytes, fill: str) -> str:
        """Remember a what-if mask (packed bits of an (H, W) bool mask, see
        :func:`~camwidget.widget.codecs.unpack_mask`) painted with ``fill`` (a substrate of
        :data:`camwidget.metrics.SUBSTRATES`: what painted pixels become); returns its id
        (:func:`~camwidget.widget.map_key.mask_id`), "" when nothing is painted.

        Raises:
            ValueError: a mask of the wrong size or an unknown fill.
        """
        if fill not in SUBSTRATES:
            raise ValueError(f"fill must be one of {', '.join(SUBSTRATES)}; got {fill!r}")
        h, w = self.inputs.shape[-2:]
        if bits and len(bits) != (h * w + 7) // 8:
            unpack_mask(bits, h, w)  # raises with the sizes
        mid = mask_id(bits, fill)
        with self._lock:
            if mid and mid not in self._masks:
                self._masks[mid] = torch.from_numpy(unpack_mask(bits, h, w))
                while len(self._masks) > MASK_CACHE:
                    self._masks.popitem(last=False)
            elif mid:
                self._masks.move_to_end(mid)
        return mid

    def painted(self, image: int, mask: str) -> torch.Tensor:
        """(1, C, *S) the model input of ``image`` with the pixels of ``mask`` replaced by its fill, as the
        insertion/deletion curves replace pixels (:func:`~camwidget.metrics.perturbed_image`; video: the
        mask on every frame). ``mask`` "" is the input itself.

        Raises:
            KeyError: ``mask`` was never registered (or was dropped from the cache).
        """
        x = self.inputs[image : image + 1]
        if not mask:
            return x
        with self._lock:
            cached = self._painted.get((image, mask))
            painted = self._masks[mask]
        if cached is None:
            fill = mask.split(":", 1)[0]
            where = painted.expand(*x.shape[2:]).float()[None]  # (1, *S): 1 on the painted pixels
            count = int(where.sum())
            cached = perturbed_image(
                x, where, 0, 1, "deletion", step=count, substrate=fill, mean=self.mean, std=self.std
            )[None]
            with self._lock:
                self._painted[(image, mask)] = cached
                while len(self._painted) > PAINTED_CACHE:
                    self._painted.popitem(last=False)
        return cached

    # ------------------------------------------------------------------------------------------- plan
    def plan(self, selection: Selection, *, paused: bool = False) -> Work | None:
        """The most useful missing result for ``selection``, or None when all is there (or ``paused``).

        Order: the image's prediction (and the painted image's, under the what-if brush); a fast preview
        when slot 0's method is slow and nothing of it is shown yet; the slots' maps; under the brush the
        unpainted maps (for their curves); then the curves; then the error-understanding figures of slot 0
        for a misclassified image with a true class.
        """
        with self._lock:
            image, mask = selection.image, selection.mask
            if image not in self._readings:
                return Work("predict", image, None, "Predicting")
            if mask and (image, mask) not in self._painted_readings and mask in self._masks:
                if (image, mask) not in self._predict_errors:
                    return Work("predict", image, None, "Predicting the painted image", mask=mask)
            if paused:
                return None
            keys = [k for k in selection.keys() if k is not None and self._valid(k)]
            if not keys:
                return None
            if mask and mask not in self._masks:
                return None
            first, preview = keys[0], self.preview_key(keys[0])
            if preview is not None and not self._settled(first) and not self._settled(preview):
                return self._map_work(preview, preview=True)
            for key in keys:
                if not self._settled(key):
                    return self._map_work(key)
            if self.curves:
                plain = list(dict.fromkeys(k.replace(mask="") for k in keys))
                for key in plain:
                    if not self._settled(key):
                        return self._map_work(key)
                for key in plain:
                    entry = self._entries[key]
                    if entry.map is not None and entry.curves is None and not entry.curves_error:
                        return Work("curves", key.image, key, "Insertion/deletion curves", slow=True)
            plain0 = keys[0].replace(mask="")
            entry = self._entries.get(plain0)
            if (
                entry is not None
                and entry.map is not None
                and entry.understanding is None
                and not entry.understanding_error
                and self.understands(image)
            ):
                return Work("understanding", image, plain0, "Error understanding", slow=True)
            return None

    def _valid(self, key: MapKey) -> bool:
        count = self.choice_count(key.image)
        return count is not None and 0 <= key.target < count

    def _settled(self, key: MapKey) -> bool:
        entry = self._entries.get(key)
        return entry is not None and (entry.map is not None or bool(entry.error))

    def _map_work(self, key: MapKey, preview: bool = False) -> Work:
        text = f"{'Preview ' if preview else ''}{label(key.method)} · {' + '.join(key.layer_names)}"
        if key.smoothing != "none":
            text += f" · {key.smoothing} smooth"
        if key.mask:
            text += " · painted"
        slow = key.method not in self.interactive or key.smoothing == "aug"  # aug_smooth: six passes
        return Work("map", key.image, key, text, slow=slow)

    # -------------------------------------------------------------------------------------------- run
    def run(self, work: Work, progress: Callable[[int, int], None] | None = None) -> None:
        """Compute ``work`` and cache its result or its error (never raises for a model failure).

        ``progress(done, total)`` is called during long work; :meth:`Work.cancel` stops it at the next
        report (nothing is cached then).
        """
        self._progress, self._running = progress, work
        try:
            if work.kind == "predict":
                self._run_predict(work.image, work.mask)
            elif work.kind == "map":
                assert work.key is not None
                self._run_map(work.key)
            elif work.kind == "curves":
                assert work.key is not None
                self._run_curves(work.key)
            elif work.kind == "understanding":
                assert work.key is not None
                self._run_understanding(work.key)
            else:
                raise ValueError(f"unknown kind of work {work.kind!r}")
        except Cancelled:
            pass
        finally:
            self._progress, self._running = None, None

    def predict(self, image: int, mask: str = "") -> Reading:
        """What ``image``'s output (painted with ``mask``) says about its choices (computed once, then
        cached). Raises the model's error."""
        reading = self.reading(image, mask)
        if reading is not None:
            return reading
        base = self.predict(image) if mask else None
        out = model_output(self.model, self.painted(image, mask))
        reading = self.choices.read(out, self._run_model, base=base)
        with self._lock:
            if not mask:
                self._readings[image] = reading
            else:
                self._painted_readings[(image, mask)] = reading
                while len(self._painted_readings) > MASK_CACHE * 4:
                    self._painted_readings.popitem(last=False)
        return reading

    def prediction_error(self, image: int, mask: str = "") -> str:
        """Why ``image`` (painted with ``mask``) could not be predicted ("" when it was)."""
        return self._predict_errors.get((image, mask), "")

    def _run_predict(self, image: int, mask: str) -> None:
        try:
            self.predict(image, mask)
        except Exception as exc:
            _log.debug("".join(traceback.format_exception(exc)))
            what = f"image {image}" + (" (painted)" if mask else "")
            self._predict_errors[(image, mask)] = f"The model failed on {what}: {short_error(exc)}"
            failed = self.choices.failed(self.choices.count or 0)
            with self._lock:
                if not mask:
                    self._readings[image] = failed
                else:
                    self._painted_readings[(image, mask)] = failed

    def _run_model(self, x: torch.Tensor) -> Any:
        """The model's output on ``x`` (for targets that embed a reference image)."""
        return model_output(self.model, x)

    def _report(self, done: int, total: int) -> None:
        """The engine's progress callback: forward to the caller, stop cancelled work."""
        work = self._running
        if work is not None and work.cancelled.is_set():
            raise Cancelled()
        if self._progress is not None:
            self._progress(done, total)

    def _explainer(self, layers: Sequence[str]) -> Explainer:
        """One Explainer per layer or set of fused layers (its method instances keep Score-CAM's per-image
        scores); several layers are fused with the method's default fusion."""
        names = tuple(layers)
        ex = self._explainers.get(names)
        if ex is None:
            ex = Explainer(  # warn=False: the widget shows the warnings with the map
                self.model,
                list(names) if len(names) > 1 else (names[0] or None),
                PREVIEW_METHOD,
                progress=self._report,
                mean=self.mean,
                std=self.std,
                warn=False,
            )
            self._explainers[names] = ex
        return ex

    def _run_map(self, key: MapKey) -> None:
        start = time.perf_counter()
        try:
            target = self.target(key)
            x = self.painted(key.image, key.mask)
            with model_lock(self.model):
                ex = self._explainer(key.layer_names)
                cam = ex(
                    x,
                    target=target,
                    method=key.method,
                    aug_smooth=key.smoothing == "aug",
                    eigen_smooth=key.smoothing == "eigen",
                )
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
            where = " + ".join(key.layer_names)
            entry = Entry(error=f"{label(key.method)} at {where} failed: {short_error(exc)}")
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
        step = max(1, math.ceil(cam.numel() / self.curve_steps))
        x = self.inputs[key.image : key.image + 1]
        target = self.target(key)
        try:
            out = insertion_deletion(
                self.model,
                x,
                cam[None],
                target=[target] if isinstance(target, int) else target,
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
                "score": self.choices.curve_label(),
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

    def _run_understanding(self, key: MapKey) -> None:
        entry = self.entry(key)
        if entry is None or entry.map is None:
            return
        label_ = self.labels[key.image]
        try:
            out = error_understanding(
                self.model,
                self.inputs[key.image : key.image + 1],
                [label_],
                entry.map[None],
                ranges=UNDERSTANDING_RANGES,
                mean=self.mean,
                std=self.std,
                progress=self._report,
            )
            figures = {
                "key": key.encode(),
                "label": label_,
                "label_name": self.class_names[label_],
                "prediction": int(out.predictions[0]),
                "prediction_name": self.class_names[int(out.predictions[0])],
                "explained": key.target,
                "explained_name": self.name(key.image, key.target),
                "ranges": list(UNDERSTANDING_RANGES),
                "highest": [round(float(out.highest(p)[0]), 6) for p in UNDERSTANDING_RANGES],
                "area": [round(float(out.area_at_highest(p)[0]), 6) for p in UNDERSTANDING_RANGES],
                "insertion_auc": round(float(out.insertion_auc[0]), 6),
                "precision": out.precision,
            }
            with self._lock:
                entry.understanding, entry.understanding_error = figures, ""
        except Cancelled:
            raise
        except Exception as exc:
            _log.debug("".join(traceback.format_exception(exc)))
            with self._lock:
                entry.understanding_error = f"Error understanding failed: {short_error(exc)}"

    # ------------------------------------------------------------------------------------------- view
    def map_payload(self, key: MapKey) -> dict[str, Any] | None:
        """What the front end needs to draw ``key``'s cached map (None when not computed)."""
        entry = self.entry(key)
        if entry is None or entry.map is None:
            return None
        reading = self.reading(key.image, key.mask)
        prob = None
        if (
            reading is not None
            and 0 <= key.target < reading.count
            and not np.isnan(reading.scores[key.target])
        ):
            prob = round(float(reading.scores[key.target]), 6)
        return {
            "key": key.encode(),
            "levels": entry.levels,
            "class_name": self.name(key.image, key.target),
            "class_prob": prob,
            "seconds": round(entry.seconds, 4),
            "precision": entry.precision,
            "warnings": list(entry.warnings),
        }

    def top(self, image: int, k: int, mask: str = "") -> list[dict[str, Any]]:
        """The ``k`` choices of ``image`` with the highest numbers (of the image painted with ``mask``),
        best first: ``{"index", "name", "prob"}``, and ``"before"`` (the unpainted number) under a mask."""
        reading = self.reading(image, mask)
        base = self.reading(image) if mask else None
        if reading is None or reading.failed or not reading.count:
            return []
        rows = []
        for i in reading.order(k):
            row: dict[str, Any] = {
                "index": i,
                "name": self.name(image, i),
                "prob": round(float(reading.scores[i]), 6),
            }
            if base is not None and i < base.count:
                row["before"] = round(float(base.scores[i]), 6)
            rows.append(row)
        return rows

    def annotations(self, image: int, k: int) -> dict[str, Any]:
        """What is drawn over ``image``: a segmentation's predicted class per pixel (uint8 bytes at the
        input's resolution, nearest), a detector's ``k`` best boxes; ``{}`` before the image is predicted."""
        reading = self.reading(image)
        if reading is None or reading.failed:
            return {}
        h, w = self.inputs.shape[-2:]
        if reading.pixels is not None and len(self.class_names) <= 256:
            pixels = reading.pixels[None, None].float()
            if tuple(pixels.shape[-2:]) != (h, w):
                pixels = torch.nn.functional.interpolate(pixels, size=(int(h), int(w)), mode="nearest")
            return {"image": image, "pixels": pixels[0, 0].to(torch.uint8).numpy().tobytes()}
        if reading.boxes is not None:
            boxes = [
                {
                    "index": i,
                    "box": [round(float(v), 2) for v in reading.boxes[i]],
                    "name": self.name(image, i),
                    "score": round(float(reading.scores[i]), 6),
                }
                for i in reading.order(k)
            ]
            return {"image": image, "boxes": boxes}
        return {"image": image}

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
                plain = None if key is None else key.replace(mask="")
                entry = None if plain is None else self._entries.get(plain)
                if plain is not None and entry is not None and entry.curves is not None:
                    curves.append({"key": plain.encode(), "order": entry.order, **entry.curves})
                else:
                    curves.append(None)
            first = None if keys[0] is None else keys[0].replace(mask="")
            return View(
                maps=tuple(maps),
                curves=tuple(curves),
                curves_status=self._curves_status(first, running, paused),
                understanding=self._understanding(first, running),
                **self._status(selection, running, paused),
            )

    def _understanding(self, key: MapKey | None, running: Work | None) -> dict[str, Any]:
        if key is None or not self.understands(key.image):
            return {}
        entry = self._entries.get(key)
        if entry is not None and entry.understanding is not None:
            return entry.understanding
        if entry is not None and entry.understanding_error:
            return {"status": entry.understanding_error}
        if running is not None and running.kind == "understanding" and running.key == key:
            return {"status": "Computing error understanding…"}
        return {"status": "Error understanding follows the curves…"}

    def _status(self, selection: Selection, running: Work | None, paused: bool) -> dict[str, Any]:
        keys = [k for k in selection.keys() if k is not None]
        errors = [e.error for k in keys if (e := self._entries.get(k)) is not None and e.error]
        for mask in dict.fromkeys(("", selection.mask)):
            if self._predict_errors.get((selection.image, mask)):
                errors.insert(0, self._predict_errors[(selection.image, mask)])
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
            first = keys[0]
            what = label(first.method) + "".join(f" + {name}" for name in first.extra_layers)
            if first.smoothing != "none":
                what += f" · {first.smoothing}-smoothed"
            message = f"{what} in {_seconds(entry.seconds)} · {entry.precision}"
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
        """Drop the errors of the selection's maps, curves and figures, so they are computed again."""
        with self._lock:
            for key in selection.keys():
                for k in () if key is None else dict.fromkeys((key, key.replace(mask=""))):
                    entry = self._entries.get(k)
                    if entry is None:
                        continue
                    if entry.error:
                        del self._entries[k]
                    else:
                        entry.curves_error = entry.understanding_error = ""

    def release(self) -> None:
        """Drop every cache (maps, curves, painted images, the explainers' per-image scores)."""
        with self._lock:
            for ex in self._explainers.values():
                ex.release()
            self._explainers.clear()
            self._entries.clear()
            self._bases.clear()
            self._painted.clear()
            self._painted_readings.clear()
            self._masks.clear()

    @property
    def cache_size(self) -> int:
        """How many map keys have something cached."""
        return len(self._entries)
