"""CamExplorer: the notebook widget. Traits, their validation, observers and publishing; nothing else.

The work (caches, planning, computing) is a :class:`~camwidget.widget.session.Session`; this class turns
trait changes into a :class:`~camwidget.widget.map_key.Selection`, runs the session's work in one
background thread (:class:`~camwidget.widget.jobs.BackgroundWorker`) and publishes the session's
:class:`~camwidget.widget.session.View` as traits. The browser side (``js/src``, bundled into
``camwidget/static/widget.js``) draws them; colormap and opacity are applied there, without the kernel.

Traits (all synced):

- selection, written by the front end and validated here: ``image_index``, ``method``, ``layer`` (any
  alias is accepted and canonicalised by the model's :class:`~camwidget.engine.layers.LayerCatalog`),
  ``class_index``, ``compare`` ("off" | "method" | "class"), ``compare_method``, ``compare_class``;
  display only: ``opacity`` (0..1), ``colormap``;
- what can be chosen: ``methods``, ``layers``, ``class_names``, ``thumbnails``, ``about`` (model, device);
- the current image: ``image`` (uint8 RGB bytes, shape, the blurred insertion start, the deletion
  colour) and its ``top_classes``;
- results, one entry per slot (slot 1 while comparing): ``maps`` (uint8 levels, the encoded
  :class:`~camwidget.widget.map_key.MapKey`, class, timing, precision) and ``curves`` (insertion/deletion
  curves, AUCs, each pixel's uint16 step);
- status: ``status``, ``progress``, ``message``, ``error``, ``curves_status``.

A later panel (a what-if brush, a frame scrubber, a smoothing toggle) is a trait here, a field of the
selection when it changes the map, and a module in ``js/src``.
"""

from __future__ import annotations

import base64
import pathlib
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import numpy as np
import torch
import traitlets as t
from torch import nn

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.batching import model_device
from camwidget.methods.registry import get_method
from camwidget.widget.codecs import thumbnails
from camwidget.widget.jobs import BackgroundWorker
from camwidget.widget.map_key import COMPARE_MODES, MapKey, Selection
from camwidget.widget.session import PREVIEW_METHOD, Session, Work, label, short_error

__all__ = ["COLORMAPS", "CamExplorer"]

_STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
COLORMAPS = ("viridis", "jet", "inferno", "gray")
STATES = ("ready", "running", "cancelled", "error")
SELECTION = ("image_index", "method", "layer", "class_index", "compare", "compare_method", "compare_class")
_PROGRESS_EVERY = 0.1  # seconds between progress trait updates
_THUMB = 64


def front_end() -> tuple[str, str]:
    """The bundled ES module and stylesheet (built from js/ by ``make js``)."""
    try:
        return (_STATIC / "widget.js").read_text("utf-8"), (_STATIC / "widget.css").read_text("utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"camwidget's front end is missing ({exc.filename}); rebuild it with 'make js' "
            "(npm ci && npm run build in js/)"
        ) from exc


class CamExplorer(anywidget.AnyWidget):
    """Interactive class activation maps for an image classifier, in a notebook.

    Shows each image next to its heatmap and their overlay, lets you pick the CAM method, the layer and
    the class (top-k predictions first, any other class by typing part of its name), compares two
    methods or two classes side by side, and plots the insertion/deletion curves of the current map
    (hover them to see the perturbed image at each step). Colormap and opacity change in the browser
    instantly; maps are computed in a background thread and cached, so going back is instant. Works in
    JupyterLab, Notebook 7, Voilà and marimo (``mo.ui.anywidget(CamExplorer(...))``); follows the host's
    light/dark theme and lays itself out by its own width. :func:`camwidget.export_html` saves it as one
    offline HTML file.

    While the thread works (the status line shows progress), it briefly holds forward hooks on the
    model's chosen layer and switches it to eval mode, restoring both when each job ends. Other
    explorers of the same model wait their turn; your own code should not run the same model object in
    another thread at that moment (call ``cancel()`` first, or use a copy). The thread stops and the
    caches are dropped when the widget is closed, when the front end closes its connection, or when its
    last view goes away (a rerun cell); the explorer recomputes what it shows if displayed again.

    Args:
        model: a ``torch.nn.Module`` returning (N, K) logits; used on its own device, left unchanged.
        images: a PIL image, a file path, an (H, W, 3) uint8/float numpy array, a preprocessed
            (3, H, W) / (N, 3, H, W) float tensor, or a list of these.
        class_names: K names; default ImageNet's when K == 1000, else "class 0", "class 1", ...
        preprocess: PIL image -> (3, H, W) model input; default resize 256, centre crop 224, ImageNet
            normalisation (with ``mean``/``std``).
        layers: restrict the layer selector to these module names (default: every spatial layer).
        methods: restrict the method selector (default: all of :data:`camwidget.METHODS`).
        topk: how many top predictions to list.
        method: the method shown first; default "hirescam" (fast). Slow methods (Score-CAM, Opti-CAM,
            Ablation-CAM) show a HiResCAM preview while they compute.
        layer: the layer shown first (a name or an alias); default the last spatial layer before pooling.
        target: the class shown first (index or class name); default each image's predicted class.
        compare: the compare mode shown first: "off" (default), "method" or "class".
        compare_class: with ``compare="class"``, the second class (index or name); default the
            second-ranked prediction.
        mean, std: the normalisation inside ``preprocess`` (undone for display).
        colormap: "viridis" (default), "jet", "inferno" or "gray".
        opacity: heatmap opacity over the image, 0..1.
        curves: compute insertion/deletion curves in the background (default True).
        curve_steps: number of insertion/deletion steps (default 32).

    Raises:
        TypeError, ValueError, FileNotFoundError: bad images, unknown method/layer/class names, or a
            model that fails on the first image (the message says which and what to do).
    """

    # Traits rather than anywidget's file paths so that their values differ from the defaults:
    # ipywidgets' embed drops default-valued traits, and a state without its front end renders nothing.
    _esm = t.Unicode("").tag(sync=True)
    _css = t.Unicode("").tag(sync=True)

    # selection (front end <-> kernel)
    image_index = t.Int(0).tag(sync=True)
    method = t.Unicode(PREVIEW_METHOD).tag(sync=True)
    layer = t.Unicode("").tag(sync=True)
    class_index = t.Int(-1).tag(sync=True)
    compare = t.Enum(COMPARE_MODES, "off").tag(sync=True)
    compare_method = t.Unicode(PREVIEW_METHOD).tag(sync=True)
    compare_class = t.Int(-1).tag(sync=True)
    # display, applied in the browser
    opacity = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    colormap = t.Enum(COLORMAPS, "viridis").tag(sync=True)
    # what can be chosen (kernel -> front end)
    methods = t.List(t.Dict()).tag(sync=True)
    layers = t.List(t.Dict()).tag(sync=True)
    class_names = t.List(t.Unicode()).tag(sync=True)
    thumbnails = t.Dict().tag(sync=True)
    about = t.Dict().tag(sync=True)
    # the current image
    image = t.Dict().tag(sync=True)
    top_classes = t.List(t.Dict()).tag(sync=True)
    # results, one entry per slot
    maps = t.List(t.Dict()).tag(sync=True)
    curves = t.List(t.Dict()).tag(sync=True)
    # status
    status = t.Enum(STATES, "ready").tag(sync=True)
    progress = t.Float(-1.0).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    curves_status = t.Unicode("").tag(sync=True)

    # plain attributes, at class level so that close() works on an instance whose __init__ failed
    _closing = False
    _session: Session | None = None
    _worker: BackgroundWorker[Work] | None = None

    def __init__(
        self,
        model: nn.Module,
        images: Any,
        *,
        class_names: Sequence[str] | None = None,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        layers: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        topk: int = 5,
        method: str | None = None,
        layer: str | None = None,
        target: int | str | None = None,
        compare: str = "off",
        compare_class: int | str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        colormap: str = "viridis",
        opacity: float = 0.5,
        curves: bool = True,
        curve_steps: int = 32,
    ) -> None:
        if colormap not in COLORMAPS:
            raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}")
        if not 0.0 <= float(opacity) <= 1.0:
            raise ValueError(f"opacity must lie in [0, 1]; got {opacity}")
        if int(topk) < 1:
            raise ValueError(f"topk must be at least 1; got {topk}")
        if compare not in COMPARE_MODES:
            raise ValueError(f"compare must be one of {', '.join(COMPARE_MODES)}; got {compare!r}")
        session = Session.open(
            model,
            images,
            class_names=class_names,
            preprocess=preprocess,
            layers=layers,
            methods=methods,
            mean=mean,
            std=std,
            curves=curves,
            curve_steps=curve_steps,
        )
        first = get_method(method).name if method is not None else None
        if first is not None and first not in session.methods:
            raise ValueError(f"method {first!r} is not in methods={list(session.methods)}")
        first = first or (PREVIEW_METHOD if PREVIEW_METHOD in session.methods else session.methods[0])
        first_layer = session.catalog.default if layer is None else session.catalog.canonical(layer)
        pinned = None if target is None else session.class_names.index(target)
        second = None if compare_class is None else session.class_names.index(compare_class)
        self._lock = threading.RLock()
        self._session = session
        self._topk = int(topk)
        self._pinned = pinned
        self._paused = False
        self._closing = False
        self._ready = False  # observers wait until the constructor has set every trait
        self._views = 0
        self._last_progress = 0.0

        esm, css = front_end()
        # in the constructor, so they are part of the state the comm opens with
        super().__init__(_esm=esm, _css=css)
        slow = [m for m in session.methods if m not in session.interactive and m != first]
        others = [m for m in session.methods if m != first]
        with self.hold_sync():
            self.methods = [
                {"name": m, "label": label(m), "fast": m in session.interactive} for m in session.methods
            ]
            self.layers = [
                {"name": i.name, "shape": list(i.shape), "aliases": list(i.aliases)} for i in session.catalog
            ]
            self.class_names = list(session.class_names)
            self.thumbnails = {
                "count": len(session.inputs),
                "size": _THUMB,
                "rgb": thumbnails(session.display, _THUMB),
            }
            self.about = {"model": type(model).__name__, "device": str(model_device(model))}
            self.colormap, self.opacity = colormap, float(opacity)
            self.layer, self.method = first_layer, first
            self.compare_method = (slow or others or [first])[0]
            self._show_image()
            self.compare = compare  # before the worker starts, so nothing races with the first values
            if second is not None:
                self.compare_class = second
        # the first map now (fast methods: one pass), so the widget and its PNG show it at once
        work = session.plan(self._selection())
        if work is not None and work.kind == "map":
            session.run(work)
        self._publish(None)
        self._ready = True
        self.on_msg(self._on_front_end_msg)
        self._start()

    # ------------------------------------------------------------------------------------ validation
    @t.validate("image_index")
    def _valid_image(self, proposal: t.Bunch) -> int:
        n = len(self._session.inputs)
        if not 0 <= proposal.value < n:
            raise t.TraitError(f"image_index {proposal.value} out of range: {n} images (0..{n - 1})")
        return proposal.value

    @t.validate("method", "compare_method")
    def _valid_method(self, proposal: t.Bunch) -> str:
        try:
            name = get_method(proposal.value).name
        except (TypeError, ValueError) as exc:
            raise t.TraitError(str(exc)) from None
        if name not in self._session.methods:
            raise t.TraitError(
                f"method {name!r} is not offered here; choose one of {', '.join(self._session.methods)}"
            )
        return name

    @t.validate("layer")
    def _valid_layer(self, proposal: t.Bunch) -> str:
        try:
            return self._session.catalog.canonical(proposal.value)
        except (TypeError, ValueError) as exc:
            raise t.TraitError(str(exc)) from None

    @t.validate("class_index", "compare_class")
    def _valid_class(self, proposal: t.Bunch) -> int:
        k = len(self._session.class_names)
        if not -1 <= proposal.value < k:
            raise t.TraitError(
                f"{proposal.trait.name} {proposal.value} out of range: the model has {k} classes (0..{k - 1})"
            )
        return proposal.value

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Apply the front end's changes; an invalid value is refused, shown as the error, and the front
        end is sent the kernel's values back."""
        try:
            super().set_state(sync_data)
        except t.TraitError as exc:
            with self._lock:
                self.status, self.error = "error", f"Invalid selection: {exc}"
            self.send_state([k for k in sync_data if k in self.keys])

    # ------------------------------------------------------------------------------------- observers
    @t.observe(*SELECTION)
    def _on_selection(self, change: t.Bunch) -> None:
        with self._lock:
            if self._closing or not self._ready:
                return
            if change.name == "image_index":
                self._show_image()
            self._paused = False
            running = self._worker.current if self._worker is not None else None
            if (
                running is not None
                and running.slow
                and running.key not in self._session.wanted(self._selection())
            ):
                running.cancel()
            self._publish(running)
        self._wake()

    @t.observe("comm")
    def _watch_comm(self, change: t.Bunch) -> None:
        """Stop and drop everything when the host closes the connection: the front end closing it (Jupyter:
        ``on_close``) or the kernel side closing it (marimo closes a rerun cell's comms with ``close()``)."""
        comm = change.new
        if comm is None:
            return
        ref = weakref.ref(self)

        def closed(*_: Any, **__: Any) -> None:
            widget = ref()
            if widget is not None:
                widget.close()

        comm.on_close(closed)
        close = comm.close

        def close_and_release(*args: Any, **kwargs: Any) -> Any:
            try:
                return close(*args, **kwargs)
            finally:
                closed()

        comm.close = close_and_release

    def _on_front_end_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "cancel":
            self.cancel()
        elif action in ("retry", "compute"):
            self.retry()
        elif action == "view-open":
            self._views += 1
            self._start()
        elif action == "view-closed":
            self._views = max(0, self._views - 1)
            if self._views == 0:  # the output was cleared or the cell rerun: nobody looks any more
                self._stop(release=True)

    # ------------------------------------------------------------------------------------- publishing
    def _selection(self) -> Selection:
        return Selection(
            self.image_index,
            self.method,
            self.layer,
            self.class_index,
            self.compare,
            self.compare_method,
            self.compare_class,
        )

    def _show_image(self) -> None:
        """Publish the current image and its predictions."""
        session, index = self._session, self.image_index
        h, w = session.inputs.shape[-2:]
        self.image = {
            "index": index,
            "shape": [int(h), int(w)],
            "rgb": session.display[index].tobytes(),
            "base": session.insertion_base(index),
            "substrate": [round(m * 255) for m in session.mean],
        }
        self._show_predictions()

    def _show_predictions(self) -> None:
        """Publish the current image's top classes, choosing the class when it is not pinned."""
        session = self._session
        probs = session.probabilities(self.image_index)
        if probs is None or np.isnan(probs).all():
            self.top_classes = []
            if self._pinned is None:
                self.class_index = -1
            return
        order = [int(i) for i in np.argsort(-probs, kind="stable")[: self._topk]]
        names = session.class_names
        self.top_classes = [{"index": i, "name": names[i], "prob": round(float(probs[i]), 6)} for i in order]
        if self._pinned is None:  # each image's own top class
            self.class_index = order[0]
        elif self.class_index < 0:  # a pinned class stays, also when the user picked another since
            self.class_index = self._pinned
        second = [i for i in order if i != self.class_index]
        if second and (
            self.compare_class < 0 or self.compare_class == self.class_index or self._pinned is None
        ):
            self.compare_class = second[0]

    def _publish(self, running: Work | None) -> None:
        """Show what the session has for the selection (a slot without a new map keeps its old one)."""
        with self._lock, self.hold_sync():
            view = self._session.view(self._selection(), running=running, paused=self._paused)
            old = list(self.maps)
            self.maps = [new or (old[i] if i < len(old) else {}) for i, new in enumerate(view.maps)]
            self.curves = [c or {} for c in view.curves]
            base = self._session.insertion_base(self.image_index)
            if self.image.get("base") != base:
                self.image = {**self.image, "base": base}
            self.curves_status = view.curves_status
            if view.status == "running":
                self.status, self.error = "running", ""
            else:
                self.status, self.error, self.message = view.status, view.error, view.message
                self.progress = view.progress

    # ---------------------------------------------------------------------------------------- worker
    def _start(self) -> None:
        with self._lock:
            if self._closing:
                return
            if self._worker is None or not self._worker.alive:
                self._worker = BackgroundWorker(self._plan, self._run, self._on_idle, self._on_crash)
        self._wake()

    def _stop(self, release: bool) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
        if release and self._session is not None:
            self._session.release()

    def _wake(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    def _plan(self) -> Work | None:
        with self._lock:
            if self._closing:
                return None
            return self._session.plan(self._selection(), paused=self._paused)

    def _run(self, work: Work) -> None:
        with self._lock, self.hold_sync():
            self.status, self.message = "running", f"{work.label}…"
            self.progress = 0.0 if work.slow else -1.0
            if work.kind == "curves" and work.key == self._selection().keys()[0]:
                self.curves_status = "Computing insertion/deletion curves…"
        self._session.run(work, lambda done, total: self._on_progress(work, done, total))
        with self._lock:
            if self._closing:
                return
            if work.kind == "predict" and work.image == self.image_index:
                self._show_predictions()
            self._publish(None)

    def _on_progress(self, work: Work, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self._last_progress >= _PROGRESS_EVERY or done >= total:
            self._last_progress = now
            with self._lock, self.hold_sync():
                self.progress = float(done) / float(total) if total else -1.0
                self.message = f"{work.label} · {done}/{total}"

    def _on_idle(self) -> None:
        with self._lock:
            if not self._closing:
                self._publish(None)

    def _on_crash(self, exc: BaseException) -> None:
        with self._lock, self.hold_sync():
            self.status = "error"
            self.error = f"Internal error in the background worker: {short_error(exc)}"

    # ----------------------------------------------------------------------------------- public API
    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the background thread has computed everything the current selection needs.

        Returns True when idle, False after ``timeout`` seconds. Handy in scripts and tests; in a
        notebook the widget updates by itself.
        """
        worker = self._worker
        return True if worker is None else worker.wait_idle(timeout)

    def cancel(self) -> None:
        """Stop the running computation (what the widget's Cancel button does)."""
        with self._lock:
            self._paused = True
            work = self._worker.current if self._worker is not None else None
            if work is not None and work.kind in ("map", "curves"):
                work.cancel()
        self._wake()

    def retry(self) -> None:
        """Forget the errors of the current selection and compute again (the Retry/Compute button)."""
        with self._lock:
            self._paused = False
            self._session.forget_errors(self._selection())
            self._publish(None)
        self._start()

    def heatmap_array(self, slot: int = 0) -> np.ndarray | None:
        """The (H, W) float32 map shown in ``slot`` (0, or 1 when comparing), if any."""
        maps = self.maps
        if slot >= len(maps) or not maps[slot].get("key"):
            return None
        cam = self._session.map(MapKey.decode(maps[slot]["key"]))
        return None if cam is None else cam.cpu().numpy().copy()

    @property
    def inputs(self) -> torch.Tensor:
        """The (N, 3, H, W) model inputs (CPU)."""
        return self._session.inputs

    @property
    def session(self) -> Session:
        """The explorer's :class:`~camwidget.widget.session.Session` (inputs, caches, computing)."""
        return self._session

    def close(self) -> None:
        """Stop the background thread, drop the caches and close the widget."""
        if self._closing or self._session is None:  # closed already, or its __init__ failed
            return
        with self._lock:
            self._closing = True
        self._stop(release=True)
        super().close()

    # -------------------------------------------------------------------------------- static output
    def to_png(self, colormap: str | None = None, opacity: float | None = None) -> bytes:
        """PNG of the current view: image, overlay and heatmap side by side (what hosts without the
        widget's front end show); ``colormap``/``opacity`` default to the widget's."""
        from camwidget.widget.export import explorer_png

        return explorer_png(self, colormap or self.colormap, self.opacity if opacity is None else opacity)

    def summary(self) -> str:
        """One line saying what is shown: ``CamExplorer(SqueezeNet: HiResCAM at features.12 for 'tabby')``."""
        maps = self.maps
        if not maps or not maps[0].get("key"):
            return f"CamExplorer({self.about.get('model', '')}, {len(self._session.inputs)} images)"
        key = MapKey.decode(maps[0]["key"])
        return (
            f"CamExplorer({self.about.get('model', '')}: {label(key.method)} at {key.layer} for "
            f"{maps[0]['class_name']!r}, image {key.image + 1} of {len(self._session.inputs)})"
        )

    @staticmethod
    def published_traits() -> list[str]:
        """The synced traits the front end reads (those declared here, without the front-end code).
        (``CamExplorer`` by name: anywidget gives each instance a subclass of its own.)"""
        return [name for name in CamExplorer.class_own_traits(sync=True) if not name.startswith("_")]

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def _ipython_display_(self, **kwargs: Any) -> None:
        """In IPython kernels: the widget, then its static PNG as a second output (hidden while the widget
        is live; what nbconvert's HTML and a notebook reopened without its kernel show)."""
        from IPython.display import display

        from camwidget.widget.export import fallback_bundle

        bundle = super()._repr_mimebundle_()
        if bundle is None:  # closed
            display({"text/plain": self.summary()}, raw=True)
            return
        data, metadata = bundle
        display({**data, "text/plain": self.summary()}, metadata=metadata, raw=True)
        display(fallback_bundle(self), raw=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        return {
            **data,
            "image/png": base64.b64encode(self.to_png()).decode("ascii"),
            "text/plain": self.summary(),
        }, metadata
