"""CamExplorer: the notebook widget. Traits, their validation, observers and publishing; nothing else.

The work (caches, planning, computing) is a :class:`~camwidget.widget.session.Session`; this class turns
trait changes into a :class:`~camwidget.widget.map_key.Selection`, runs the session's work in one
background thread (:class:`~camwidget.widget.jobs.BackgroundWorker`) and publishes the session's
:class:`~camwidget.widget.session.View` as traits. The browser side (``js/src``, bundled into
``camwidget/static/widget.js``) draws them; colormap and opacity are applied there, without the kernel.

Traits (all synced):

- selection, written by the front end and validated here: ``image_index``, ``method``, ``layer`` (any
  alias is accepted and canonicalised by the model's :class:`~camwidget.engine.layers.LayerCatalog`),
  ``class_index`` (which of the image's choices is explained: a class, a label, a detection; see
  :mod:`camwidget.widget.choices`), ``compare`` ("off" | "method" | "class"), ``compare_method``,
  ``compare_class``; the what-if brush: ``brush_mask`` (the painted pixels as packed bits, see
  :func:`~camwidget.widget.codecs.unpack_mask`) and ``brush_fill`` (what they become: "blur", "black",
  "zeros", the insertion/deletion curves' substrates); ``smoothing`` ("none" | "aug" | "eigen": the
  engine's ``aug_smooth`` / ``eigen_smooth``; "eigen" only for methods that form per-channel terms) and
  ``extra_layers`` (further layers fused with ``layer``, canonicalised like it); ``true_class`` (explain
  each image's true class rather than the prediction); display only: ``opacity`` (0..1), ``colormap``,
  ``frame`` (the frame of a clip shown);
- what can be chosen: ``methods`` (each with ``eigen``: whether eigen smoothing applies, and ``layers``:
  whether it uses the chosen layer, so takes further layers), ``layers``, ``class_names``, ``choices``
  (what the class selector lists and what its numbers are), ``thumbnails``, ``about`` (model, device);
  ``labels``, the true class per image (-1 unknown), written by either side;
- the current image: ``image`` (uint8 RGB bytes, shape, frames, the blurred insertion start, the deletion
  colour), its ``top_classes``, its ``annotations`` (a segmentation's predicted classes, a detector's
  boxes), ``whatif`` (the explained choice's number before and after painting) and ``understanding`` (the
  error-understanding figures of a misclassified image's map);
- results, one entry per slot (slot 1 while comparing): ``maps`` (uint8 levels, the encoded
  :class:`~camwidget.widget.map_key.MapKey`, class, timing, precision) and ``curves`` (insertion/deletion
  curves, AUCs, each pixel's uint16 step);
- status: ``status``, ``progress``, ``message``, ``error``, ``curves_status``.

A later panel is a trait here, a field of the selection when it changes the map, and a module in
``js/src``.
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

from camwidget.defaults import COLORMAPS, DEFAULT_COLORMAP, IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.batching import model_device
from camwidget.methods.registry import get_method
from camwidget.metrics.insertion_deletion import SUBSTRATES
from camwidget.widget.choices import names_index
from camwidget.widget.codecs import thumbnails
from camwidget.widget.jobs import BackgroundWorker
from camwidget.widget.map_key import COMPARE_MODES, SMOOTHINGS, MapKey, Selection
from camwidget.widget.session import PREVIEW_METHOD, Session, Work, label, short_error

__all__ = ["CamExplorer"]

_STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
STATES = ("ready", "running", "cancelled", "error")
SELECTION = (
    "image_index",
    "method",
    "layer",
    "class_index",
    "compare",
    "compare_method",
    "compare_class",
    "brush_mask",
    "brush_fill",
    "smoothing",
    "extra_layers",
)
_PROGRESS_EVERY = 0.1  # seconds between progress trait updates
_THUMB = 64
_NO_EIGEN = (
    "it forms no per-channel terms (w_k·A_k) to take the first principal component of, or its map is one"
)
_PIXEL_TIED = ("segmentation", "detections")  # choices whose targets aug_smooth cannot flip


def _bytes_from_json(value: Any, widget: Any) -> bytes:
    """A bytes trait from the front end: ipywidgets hands binary buffers over as memoryviews."""
    return b"" if value is None else bytes(value)


def _no_aug(kind: str) -> str:
    """Why aug smoothing is refused for a segmentation model's or a detector's choices."""
    what = "a segmentation class's pixels are" if kind == "segmentation" else "a detection's box is"
    return f"aug smoothing flips the image, but {what} tied to pixel positions: choose 'none' or 'eigen'"


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
    """Interactive class activation maps for an image model, in a notebook.

    Shows each image next to its heatmap and their overlay, lets you pick the CAM method, the layer and
    the class (top-k predictions first, any other class by typing part of its name), compares two
    methods or two classes side by side, and plots the insertion/deletion curves of the current map
    (hover them to see the perturbed image at each step). Colormap and opacity change in the browser
    instantly; maps are computed in a background thread and cached, so going back is instant. Works in
    JupyterLab, Notebook 7, Voilà and marimo (``mo.ui.anywidget(CamExplorer(...))``); follows the host's
    light/dark theme and lays itself out by its own width. :func:`camwidget.export_html` saves it as one
    offline HTML file.

    **What if?** The brush paints over a region of the image (or a box, also with the keyboard) and the
    model sees it hidden (blurred, black or the dataset's mean colour: the insertion/deletion curves'
    substrates): the class list and the map follow the painted image, with the explained class's number
    before and after ("p(tiger cat): 0.39 → 0.05"); erasing restores pixels.

    **Beyond classifiers.** What the selector lists follows the model's output
    (:mod:`camwidget.widget.choices`): a segmentation model's classes with the share of pixels predicted as
    each (the image can outline the chosen class's pixels); a detector's detections, drawn as boxes that
    explain themselves when clicked; a multi-label head's labels (``multilabel=True``, each explained by
    its sigmoid); or one ``target=`` of :mod:`camwidget.targets` or any callable ``f(output) -> Tensor[N]``,
    shown by its name. The insertion/deletion curves score the same target. Video and volumes
    (N, 3, T, H, W) get a frame scrubber; the image and the map follow the frame.

    **Mistakes.** With ``labels=`` (the true class per image), a misclassified image gets a "true class"
    toggle beside the prediction that switches the map and the curves to the true class, and
    :func:`camwidget.metrics.error_understanding`'s figures for its map (the highest true-class probability
    when keeping 25/50/100% of the pixels, the true-class insertion AUC).

    While the thread works (the status line shows progress), it briefly holds forward hooks on the
    model's chosen layer and switches it to eval mode, restoring both when each job ends. Other
    explorers of the same model wait their turn; your own code should not run the same model object in
    another thread at that moment (call ``cancel()`` first, or use a copy). The thread stops and the
    caches are dropped when the widget is closed, when the front end closes its connection, or when its
    last view goes away (a rerun cell); the explorer recomputes what it shows if displayed again.

    Args:
        model: a ``torch.nn.Module``: a classifier returning (N, K) logits, a segmentation model
            ((N, K, H, W) or torchvision's ``{"out": ...}``), a torchvision-style detector (a list of dicts
            with boxes, labels, scores), or any model with a callable ``target``; used on its own device,
            left unchanged.
        images: a PIL image, a file path, an (H, W, 3) uint8/float numpy array, a preprocessed
            (3, H, W) / (N, 3, H, W) float tensor, or a list of these; clips or volumes as a preprocessed
            (N, 3, T, H, W) tensor or a list of (3, T, H, W) tensors.
        class_names: K names; default ImageNet's when K == 1000, else "class 0", "class 1", ...
        preprocess: PIL image -> (3, H, W) model input; default resize 256, centre crop 224, ImageNet
            normalisation (with ``mean``/``std``).
        layers: restrict the layer selector to these module names (default: every spatial layer).
        methods: restrict the method selector (default: all of :data:`camwidget.METHODS`).
        topk: how many top predictions to list.
        method: the method shown first; default "hirescam" (fast). Slow methods (Score-CAM, Opti-CAM,
            Ablation-CAM) show a HiResCAM preview while they compute.
        layer: the layer shown first (a name or an alias); default the last spatial layer before pooling.
        extra_layers: further layers whose maps are fused with ``layer``'s (names or aliases; the engine's
            ``layer=[layer, *extra_layers]`` with the method's default fusion, "mean" of the normalised
            maps for most). Default none. The widget's *+ Layer* select picks one.
        smoothing: "none" (default), "aug" (``aug_smooth=True``: six passes, computed in the background
            with the unsmoothed map as preview) or "eigen" (``eigen_smooth=True``: the first principal
            component of the method's per-channel terms; methods without such terms do not offer it).
        target: what is explained: the class shown first (an index or a class name; default each image's
            top choice), or a target of :mod:`camwidget.targets`: ``Logit(c)`` / ``Probability(c)``
            (classes scored so, starting at ``c``), ``Sigmoid(c)`` (a multi-label head, starting at label
            ``c``), ``SegmentationClass(c)`` (starting at class ``c``), or any other target or callable
            ``f(output) -> Tensor[N]`` (the one thing explained, shown by its name; for a detector, a
            ``DetectionBox`` or a callable).
        multilabel: the (N, K) outputs are independent labels: list their sigmoids and explain
            ``Sigmoid(c)`` (a model that already ends in a sigmoid needs ``target=Output(c)`` instead).
            Default False (one softmax over the classes).
        labels: the true class of each image (an index, a class name, or None where unknown); a
            misclassified image gets the true-class toggle and error-understanding figures. Classifiers
            only.
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
    brush_mask = t.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    brush_fill = t.Enum(SUBSTRATES, "blur").tag(sync=True)
    smoothing = t.Enum(SMOOTHINGS, "none").tag(sync=True)
    extra_layers = t.List(t.Unicode()).tag(sync=True)
    true_class = t.Bool(False).tag(sync=True)
    # display, applied in the browser
    opacity = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    colormap = t.Enum(COLORMAPS, DEFAULT_COLORMAP).tag(sync=True)
    frame = t.Int(0).tag(sync=True)
    # what can be chosen (kernel -> front end)
    methods = t.List(t.Dict()).tag(sync=True)
    layers = t.List(t.Dict()).tag(sync=True)
    class_names = t.List(t.Unicode()).tag(sync=True)
    choices = t.Dict().tag(sync=True)
    thumbnails = t.Dict().tag(sync=True)
    about = t.Dict().tag(sync=True)
    labels = t.List(t.Int()).tag(sync=True)
    # the current image
    image = t.Dict().tag(sync=True)
    top_classes = t.List(t.Dict()).tag(sync=True)
    annotations = t.Dict().tag(sync=True)
    whatif = t.Dict().tag(sync=True)
    understanding = t.Dict().tag(sync=True)
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
        extra_layers: Sequence[str] = (),
        smoothing: str = "none",
        target: object = None,
        multilabel: bool = False,
        labels: Sequence[Any] | None = None,
        compare: str = "off",
        compare_class: int | str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        colormap: str = DEFAULT_COLORMAP,
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
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHINGS)}; got {smoothing!r}")
        if isinstance(extra_layers, str):
            raise TypeError(f"extra_layers must be a list of layer names; got the string {extra_layers!r}")
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
            target=target,
            multilabel=bool(multilabel),
            labels=labels,
        )
        if compare == "class" and session.choices.kind == "target":
            raise ValueError(
                f"compare='class' compares two of the image's choices; this explorer explains one target "
                f"({session.choices.fixed.name!r}): compare methods instead"
            )
        first = get_method(method).name if method is not None else None
        if first is not None and first not in session.methods:
            raise ValueError(f"method {first!r} is not in methods={list(session.methods)}")
        first = first or (PREVIEW_METHOD if PREVIEW_METHOD in session.methods else session.methods[0])
        first_layer = session.catalog.default if layer is None else session.catalog.canonical(layer)
        fused = [session.catalog.canonical(name) for name in extra_layers]
        if fused and not get_method(first).uses_layer:
            raise ValueError(f"{label(first)} reads every layer it needs itself; it takes no extra_layers")
        if smoothing == "eigen" and not get_method(first).eigen_smoothable():
            raise ValueError(f"eigen smoothing does not apply to {label(first)}: {_NO_EIGEN}")
        if smoothing == "aug" and session.choices.kind in _PIXEL_TIED:
            raise ValueError(_no_aug(session.choices.kind))
        pinned = session.first
        second = None if compare_class is None else names_index(session.class_names, compare_class)
        self._lock = threading.RLock()
        self._session = session
        self._topk = int(topk)
        self._pinned = pinned
        self._paused = False
        self._closing = False
        self._ready = False  # observers wait until the constructor has set every trait
        self._views = 0
        self._last_progress = 0.0
        self._toggling = False  # true_class is being set to follow a class the user picked
        self._choosing = False  # the class is being chosen for a new image, not picked by the user

        esm, css = front_end()
        # in the constructor, so they are part of the state the comm opens with
        super().__init__(_esm=esm, _css=css)
        slow = [m for m in session.methods if m not in session.interactive and m != first]
        others = [m for m in session.methods if m != first]
        with self.hold_sync():
            self.methods = [
                {
                    "name": m,
                    "label": label(m),
                    "fast": m in session.interactive,
                    "eigen": get_method(m).eigen_smoothable(),
                    "layers": get_method(m).uses_layer,
                }
                for m in session.methods
            ]
            self.layers = [
                {"name": i.name, "shape": list(i.shape), "aliases": list(i.aliases)} for i in session.catalog
            ]
            self.class_names = list(session.class_names)
            self.choices = session.choices.describe()
            self.labels = list(session.labels)
            self.thumbnails = {
                "count": len(session.inputs),
                "size": _THUMB,
                "rgb": thumbnails(session.stills, _THUMB),
            }
            self.about = {"model": type(model).__name__, "device": str(model_device(model))}
            self.colormap, self.opacity = colormap, float(opacity)
            self.layer, self.method = first_layer, first
            self.extra_layers, self.smoothing = fused, smoothing
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

    @t.validate("smoothing")
    def _valid_smoothing(self, proposal: t.Bunch) -> str:
        if proposal.value == "aug" and self._session.choices.kind in _PIXEL_TIED:
            raise t.TraitError(_no_aug(self._session.choices.kind))
        if proposal.value == "eigen":
            for name in self._shown_methods():
                if not get_method(name).eigen_smoothable():
                    raise t.TraitError(f"eigen smoothing does not apply to {label(name)}: {_NO_EIGEN}")
        return proposal.value

    @t.validate("extra_layers")
    def _valid_extra_layers(self, proposal: t.Bunch) -> list[str]:
        if isinstance(proposal.value, str):
            raise t.TraitError(f"extra_layers must be a list of layer names; got {proposal.value!r}")
        try:
            names = [self._session.catalog.canonical(name) for name in proposal.value]
        except (TypeError, ValueError) as exc:
            raise t.TraitError(str(exc)) from None
        for name in self._shown_methods() if names else ():
            if not get_method(name).uses_layer:
                raise t.TraitError(
                    f"{label(name)} reads every layer it needs itself; it takes no extra layers"
                )
        return list(dict.fromkeys(names))

    def _shown_methods(self) -> list[str]:
        """The methods whose maps are shown: the method, and the second one while comparing methods."""
        return [self.method] + ([self.compare_method] if self.compare == "method" else [])

    @t.validate("class_index", "compare_class")
    def _valid_class(self, proposal: t.Bunch) -> int:
        session = self._session
        k = session.choice_count(self.image_index)
        if proposal.value == -1 or (k is not None and 0 <= proposal.value < k):
            return proposal.value
        noun = session.choices.noun
        if session.choices.kind == "detections":
            has = f"image {self.image_index} has {k or 0} detections" + (f" (0..{k - 1})" if k else "")
        elif session.choices.kind == "target":
            has = f"the explorer explains one target, {session.choices.fixed.name!r} (0)"
        else:
            has = f"the model has {k} {'classes' if noun == 'class' else noun + 's'} (0..{k - 1})"
        raise t.TraitError(f"{proposal.trait.name} {proposal.value} out of range: {has}")

    @t.validate("compare")
    def _valid_compare(self, proposal: t.Bunch) -> str:
        if proposal.value == "class" and self._session.choices.kind == "target":
            raise t.TraitError("compare 'class' needs choices to compare; this explorer explains one target")
        return proposal.value

    @t.validate("brush_mask")
    def _valid_mask(self, proposal: t.Bunch) -> bytes:
        h, w = self._session.inputs.shape[-2:]
        size = (int(h) * int(w) + 7) // 8
        if proposal.value and len(proposal.value) != size:
            raise t.TraitError(
                f"brush_mask must be {size} bytes (the {h}x{w} mask's packed bits) or empty; got "
                f"{len(proposal.value)}"
            )
        return bytes(proposal.value)

    @t.validate("frame")
    def _valid_frame(self, proposal: t.Bunch) -> int:
        frames = self._session.frames
        if not 0 <= proposal.value < frames:
            raise t.TraitError(f"frame {proposal.value} out of range: the clips have {frames} frames")
        return proposal.value

    @t.validate("labels")
    def _valid_labels(self, proposal: t.Bunch) -> list[int]:
        if not proposal.value:
            return [-1] * len(self._session.inputs)
        try:
            return self._session.check_labels(proposal.value)
        except (TypeError, ValueError) as exc:
            raise t.TraitError(str(exc)) from None

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
            elif change.name in ("brush_mask", "brush_fill"):
                self._show_brush()
            elif change.name == "class_index":
                self._follow_true_class()
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

    @t.observe("method", "compare_method", "compare")
    def _fit_options(self, change: t.Bunch) -> None:
        """A method that cannot take the smoothing or the further layers turns them off (selects follow)."""
        shown = [get_method(name) for name in self._shown_methods()]
        if self.smoothing == "eigen" and not all(m.eigen_smoothable() for m in shown):
            self.smoothing = "none"
        if self.extra_layers and not all(m.uses_layer for m in shown):
            self.extra_layers = []

    @t.observe("true_class")
    def _on_true_class(self, change: t.Bunch) -> None:
        """The toggle: explain the true class (when the image has one), or the prediction again."""
        with self._lock:
            if self._closing or not self._ready or self._toggling:
                return
            label_ = self._session.labels[self.image_index]
            probs = self._session.probabilities(self.image_index)
            if change.new and label_ >= 0:
                self.class_index = label_
            elif not change.new and probs is not None and not np.isnan(probs).all():
                self.class_index = int(np.argmax(probs))

    @t.observe("labels")
    def _on_labels(self, change: t.Bunch) -> None:
        with self._lock:
            self._session.set_labels(change.new)
            if self._closing or not self._ready:
                return
            if self.true_class:
                self._show_predictions()
            self._publish(self._worker.current if self._worker is not None else None)
        self._wake()

    def _follow_true_class(self) -> None:
        """A class picked by hand that is not the true class turns the toggle off (and the true class on)."""
        if self._choosing:
            return
        is_label = self.class_index >= 0 and self.class_index == self._session.labels[self.image_index]
        if self.true_class != is_label and (is_label or self.true_class):
            self._toggling = True
            try:
                self.true_class = is_label
            finally:
                self._toggling = False

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
            self._mask(),
            self.smoothing,
            tuple(self.extra_layers),
        )

    def _mask(self) -> str:
        """The id of the brush's mask ("" when nothing is painted)."""
        return self._session.register_mask(self.brush_mask, self.brush_fill)

    def _show_image(self) -> None:
        """Publish the current image and its predictions."""
        session, index = self._session, self.image_index
        h, w = session.inputs.shape[-2:]
        self.image = {
            "index": index,
            "shape": [int(h), int(w)],
            "frames": session.frames,
            "rgb": session.display[index].tobytes(),
            "base": self._base(),
            "substrate": [round(m * 255) for m in session.mean],
        }
        if self.frame >= session.frames:
            self.frame = 0
        self._show_predictions()

    def _base(self) -> bytes:
        """The blurred image (insertion's start; the brush's blur fill, computed as soon as it paints)."""
        session, index = self._session, self.image_index
        if self.brush_fill == "blur" and self._mask():
            return session.blurred(index)
        return session.insertion_base(index)

    def _show_predictions(self) -> None:
        """Publish the current image's top classes, choosing the class: the true class while the toggle is
        on and the image has one, else the pinned class, else the image's top choice."""
        self._choosing = True  # not the user's pick: the toggle stays as it is
        try:
            self._choose()
        finally:
            self._choosing = False

    def _choose(self) -> None:
        session = self._session
        reading = session.reading(self.image_index)
        if reading is None or reading.failed or not reading.count:
            if self._pinned is None:
                self.class_index = -1
            self._show_top()
            return
        order = reading.order(self._topk)
        label_ = session.labels[self.image_index]
        if self.true_class and label_ >= 0:
            self.class_index = label_
        elif self._pinned is None:  # each image's own top choice
            self.class_index = order[0]
        elif self.class_index < 0:  # a pinned class stays, also when the user picked another since
            self.class_index = self._pinned
        second = [i for i in order if i != self.class_index]
        if (
            second
            and session.choices.kind != "target"
            and (self.compare_class < 0 or self.compare_class == self.class_index or self._pinned is None)
        ):
            self.compare_class = second[0]
        self._show_top()

    def _show_top(self) -> None:
        """Publish the top choices (of the painted image under the brush), the annotations and the what-if."""
        session, index = self._session, self.image_index
        mask = self._mask()
        painted = session.reading(index, mask) if mask else None
        self.top_classes = session.top(index, self._topk, mask if painted is not None else "")
        annotations = session.annotations(index, self._topk)
        if annotations != self.annotations:
            self.annotations = annotations
        self.whatif = self._whatif(mask, painted)

    def _whatif(self, mask: str, painted: Any) -> dict[str, Any]:
        session, index, choice = self._session, self.image_index, self.class_index
        base = session.reading(index)
        if not mask or base is None or not 0 <= choice < base.count:
            return {}
        after = None
        if painted is not None and choice < painted.count and not np.isnan(painted.scores[choice]):
            after = round(float(painted.scores[choice]), 6)
        return {
            "mask": mask,
            "index": choice,
            "name": session.name(index, choice),
            "score": session.choices.score,
            "before": round(float(base.scores[choice]), 6),
            "after": after,
        }

    def _show_brush(self) -> None:
        """The brush's mask or fill changed: the lists and the what-if follow (the maps via the selection)."""
        base = self._base()
        if base and self.image.get("base") != base:
            self.image = {**self.image, "base": base}
        self._show_top()

    def _publish(self, running: Work | None) -> None:
        """Show what the session has for the selection (a slot without a new map keeps its old one)."""
        with self._lock, self.hold_sync():
            view = self._session.view(self._selection(), running=running, paused=self._paused)
            old = list(self.maps)
            if view.understanding != self.understanding:
                self.understanding = view.understanding
            self.maps = [new or (old[i] if i < len(old) else {}) for i, new in enumerate(view.maps)]
            self.curves = [c or {} for c in view.curves]
            base = self._base()
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
                if work.mask:
                    self._show_top()
                else:
                    self._show_predictions()
            elif self.class_index >= 0 and self.whatif and self.whatif.get("index") != self.class_index:
                self._show_top()
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
        """The (H, W) float32 map shown in ``slot`` (0, or 1 when comparing), if any ((T, H, W) for clips)."""
        maps = self.maps
        if slot >= len(maps) or not maps[slot].get("key"):
            return None
        cam = self._session.map(MapKey.decode(maps[slot]["key"]))
        return None if cam is None else cam.cpu().numpy().copy()

    @property
    def inputs(self) -> torch.Tensor:
        """The (N, 3, H, W) model inputs (CPU); (N, 3, T, H, W) for clips."""
        return self._session.inputs

    def paint(self, mask: Any, fill: str | None = None) -> None:
        """Paint ``mask`` with the what-if brush, as the front end does: an (H, W) bool array (True = hidden)
        at the model input's resolution, or None / an empty mask to restore the image; ``fill`` one of
        "blur", "black", "zeros" (default: the current ``brush_fill``)."""
        h, w = self._session.inputs.shape[-2:]
        bits = b""
        if mask is not None:
            array = np.asarray(mask, dtype=bool)
            if array.shape != (h, w):
                raise ValueError(
                    f"the mask must be ({h}, {w}) at the model input's resolution; got {array.shape}"
                )
            bits = np.packbits(array.reshape(-1)).tobytes() if array.any() else b""
        with self.hold_sync():
            if fill is not None:
                self.brush_fill = fill
            self.brush_mask = bits

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
