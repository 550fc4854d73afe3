"""CamExplorer: an anywidget that explains an image classifier's predictions with class activation maps.

The kernel side keeps the model, the inputs and the caches; it computes in one background thread (so
the kernel stays responsive) and sends results as byte traits. The browser side (``js/src``, bundled
into ``camwidget/static/widget.js``) draws them: colormap and opacity are applied there, with no
round trip to the kernel.

Trait overview (all synced):

- selections, written by the front end: ``image_index``, ``method``, ``layer``, ``class_index``,
  ``opacity``, ``colormap``, ``compare`` ("off" | "method" | "class"), ``compare_method``,
  ``compare_class``;
- lists: ``methods``, ``layers`` (with output shapes), ``top_classes`` (top-k with probabilities),
  ``class_names``, ``thumbnails`` (+ ``thumb_size``, ``n_images``);
- binary data: ``image`` (uint8 RGB, ``image_shape``), ``heatmap`` / ``heatmap2`` (uint8 levels,
  ``heatmap_shape``, ``heatmap_dtype``; ``heatmap_info`` / ``heatmap2_info`` say what each shows),
  ``curve_order`` / ``curve_order2`` (uint16 insertion step of each pixel, for the perturbed frames);
- curves: ``curves`` / ``curves2`` (fractions, insertion, deletion, AUCs), ``curves_status``;
- status: ``status`` ("ready" | "running" | "cancelled" | "error"), ``progress`` (0..1, -1 unknown),
  ``message``, ``error``.
"""

from __future__ import annotations

import base64
import difflib
import math
import pathlib
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import anywidget
import numpy as np
import torch
import traitlets as t
from torch import nn

from camwidget.engine.model_lock import model_lock
from camwidget.methods.registry import METHOD_CLASSES, METHODS
from camwidget.metrics.insertion_deletion import insertion_deletion
from camwidget.widget.codecs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    blend,
    colorize,
    encode_levels,
    load_images,
    png_bytes,
    step_order,
    thumbnails,
    to_display,
)
from camwidget.widget.jobs import BackgroundWorker, Task

__all__ = ["METHOD_LABELS", "CamExplorer"]

_STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"

METHOD_LABELS = {name: cls.label for name, cls in METHOD_CLASSES.items()}  # the methods own their labels
PREVIEW_METHOD = "hirescam"
COLORMAPS = ("viridis", "jet", "inferno", "gray")
COMPARE_MODES = ("off", "method", "class")
_MAP_CACHE = 192  # maps kept (each H*W float32: 200 KB at 224x224)
_PROGRESS_EVERY = 0.1  # seconds between progress trait updates

MapKey = tuple[int, str, str, int]  # (image, method, layer, class)


def _front_end() -> tuple[str, str]:
    """The bundled ES module and stylesheet (built from js/ by ``make js``)."""
    try:
        return (_STATIC / "widget.js").read_text("utf-8"), (_STATIC / "widget.css").read_text("utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"camwidget's front end is missing ({exc.filename}); rebuild it with 'make js' "
            "(npm ci && npm run build in js/)"
        ) from exc


def _engine() -> Any:
    from camwidget.engine import explainer

    return explainer


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if len(text) > 600:
        text = text[:600] + "…"
    return f"{type(exc).__name__}: {text}"


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Hashable, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class CamExplorer(anywidget.AnyWidget):
    """Interactive class activation maps for an image classifier, in a Jupyter notebook.

    Shows each image next to its heatmap and their overlay, lets you pick the CAM method, the layer and
    the class (top-k predictions first, any other class by typing part of its name), compares two
    methods or two classes side by side, and plots the insertion/deletion curves of the current map
    (hover them to see the perturbed image at each step). Colormap and opacity change in the browser
    instantly; maps are computed in a background thread and cached, so going back is instant.

    While that thread works (the status line shows progress), it briefly holds forward hooks on the
    model's chosen layer and switches it to eval mode, restoring both when each job ends. Other
    explorers of the same model wait their turn; your own code should not run the same model object in
    another thread at that moment (call ``cancel()`` first, or use a copy).

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
        layer: the layer shown first; default the last spatial layer before global pooling.
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

    # Declared as traits (set in __init__) rather than anywidget's file paths so that their values
    # differ from the defaults: ipywidgets' embed (static HTML export) drops default-valued traits,
    # and an export without its front end would render nothing.
    _esm = t.Unicode("").tag(sync=True)
    _css = t.Unicode("").tag(sync=True)

    # selections (front end -> kernel)
    image_index = t.Int(0).tag(sync=True)
    method = t.Unicode("hirescam").tag(sync=True)
    layer = t.Unicode("").tag(sync=True)
    class_index = t.Int(-1).tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    colormap = t.Unicode("viridis").tag(sync=True)
    compare = t.Unicode("off").tag(sync=True)
    compare_method = t.Unicode("scorecam").tag(sync=True)
    compare_class = t.Int(-1).tag(sync=True)
    # lists (kernel -> front end)
    methods = t.List(t.Dict()).tag(sync=True)
    layers = t.List(t.Dict()).tag(sync=True)
    top_classes = t.List(t.Dict()).tag(sync=True)
    class_names = t.List(t.Unicode()).tag(sync=True)
    n_images = t.Int(0).tag(sync=True)
    thumbnails = t.Bytes(b"").tag(sync=True)
    thumb_size = t.Int(64).tag(sync=True)
    model_name = t.Unicode("").tag(sync=True)
    device = t.Unicode("").tag(sync=True)
    # binary data
    image = t.Bytes(b"").tag(sync=True)
    image_shape = t.List(t.Int(), [0, 0]).tag(sync=True)
    heatmap = t.Bytes(b"").tag(sync=True)
    heatmap2 = t.Bytes(b"").tag(sync=True)
    heatmap_shape = t.List(t.Int(), [0, 0]).tag(sync=True)
    heatmap_dtype = t.Unicode("uint8").tag(sync=True)
    heatmap_info = t.Dict().tag(sync=True)
    heatmap2_info = t.Dict().tag(sync=True)
    curves = t.Dict().tag(sync=True)
    curves2 = t.Dict().tag(sync=True)
    curve_order = t.Bytes(b"").tag(sync=True)
    curve_order2 = t.Bytes(b"").tag(sync=True)
    insertion_base = t.Bytes(b"").tag(sync=True)
    curves_status = t.Unicode("").tag(sync=True)
    substrate_rgb = t.List(t.Int(), [0, 0, 0]).tag(sync=True)
    # status
    status = t.Unicode("ready").tag(sync=True)
    progress = t.Float(-1.0).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)

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
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if colormap not in COLORMAPS:
            raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}")
        if not 0.0 <= float(opacity) <= 1.0:
            raise ValueError(f"opacity must lie in [0, 1]; got {opacity}")
        if int(topk) < 1:
            raise ValueError(f"topk must be at least 1; got {topk}")
        if compare not in COMPARE_MODES:
            raise ValueError(f"compare must be one of {', '.join(COMPARE_MODES)}; got {compare!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError("mean and std must have 3 entries (RGB), std > 0")

        engine = _engine()
        all_methods = METHODS
        self._fast = {name for name, cls in METHOD_CLASSES.items() if cls.interactive}
        self._model = model
        self._mean = tuple(float(m) for m in mean)
        self._std = tuple(float(s) for s in std)
        self._topk = int(topk)
        self._curve_steps = max(2, int(curve_steps))
        self._want_curves = bool(curves)
        self._metric = insertion_deletion if curves else None
        self._Cancelled = engine.Cancelled

        # images -> inputs + display pixels
        self._inputs, self._display = load_images(images, preprocess, self._mean, self._std)
        n = self._inputs.shape[0]

        # methods
        chosen_methods = list(all_methods) if methods is None else [self._check_method(m) for m in methods]
        if not chosen_methods:
            raise ValueError(f"methods is empty: pass some of {', '.join(all_methods)}")
        first = method or ("hirescam" if "hirescam" in chosen_methods else chosen_methods[0])
        first = self._check_method(first)
        if first not in chosen_methods:
            raise ValueError(f"method {first!r} is not in methods={chosen_methods}")
        self._method_names = chosen_methods

        # one forward pass on the first image: clear error now if the model cannot run
        x0 = self._inputs[:1]
        self._model_lock = model_lock(model)
        self._explainers: dict[str, Any] = {}
        self._probs: dict[int, np.ndarray] = {}
        try:
            probs0 = self._predict(0)
        except Exception as exc:
            raise ValueError(
                f"the model failed on the first image (input shape {tuple(x0.shape)}): {_short_error(exc)}. "
                "Check that preprocess produces what the model expects."
            ) from exc
        num_classes = probs0.shape[0]

        # class names
        if class_names is None:
            names = self._default_class_names(num_classes)
        else:
            names = [str(c) for c in class_names]
            if len(names) != num_classes:
                raise ValueError(
                    f"class_names has {len(names)} entries but the model outputs {num_classes} classes"
                )
        self._names = names
        self._pinned_target = target is not None
        target_index = None if target is None else self._resolve_class(target, names)
        compare_index = None if compare_class is None else self._resolve_class(compare_class, names)

        # layers
        from camwidget.engine.layers import candidate_layers

        with self._model_lock:
            infos = candidate_layers(model, x0)
        if not infos:
            raise ValueError(
                f"{type(model).__name__} has no layer with a spatial (N, C, h, w) output to explain"
            )
        all_infos = list(infos)
        by_name: dict[str, Any] = {}
        for info in infos:
            by_name[info.name] = info
            for alias in getattr(info, "aliases", ()):
                by_name.setdefault(alias, info)
        if layers is not None:
            chosen = []
            for name in layers:
                if name not in by_name:
                    close = difflib.get_close_matches(str(name), list(by_name), n=4)
                    hint = f" Did you mean {', '.join(close)}?" if close else ""
                    raise ValueError(
                        f"layer {name!r} is not a spatial layer of {type(model).__name__}.{hint} "
                        f"Candidates: {', '.join(i.name for i in infos)}"
                    )
                if by_name[name] not in chosen:
                    chosen.append(by_name[name])
            infos = chosen
        self._layer_infos = {i.name: i for i in infos}
        self._layer_alias = {a: i.name for i in infos for a in (i.name, *getattr(i, "aliases", ()))}
        if layer is not None:
            if layer not in self._layer_alias:
                close = difflib.get_close_matches(str(layer), list(self._layer_alias), n=4)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ValueError(
                    f"layer {layer!r} is not one of the explorer's layers.{hint} "
                    f"Choose from: {', '.join(self._layer_infos)}"
                )
            first_layer = self._layer_alias[layer]
        else:
            # engine.layers.default_layer's rule, on the infos we have (saves two forward passes):
            # the last spatial layer, passing over class-score maps (one channel per class).
            features = [i for i in all_infos if i.shape[0] != num_classes] or all_infos
            default = features[-1].name
            first_layer = self._layer_alias.get(default, infos[-1].name)

        # caches and state
        self._lock = threading.RLock()
        self._maps: _LRU = _LRU(_MAP_CACHE)
        self._curves: _LRU = _LRU(_MAP_CACHE)
        self._errors: dict[Hashable, str] = {}
        self._timings: dict[Hashable, float] = {}
        self._precisions: dict[Hashable, str] = {}  # what each map's forwards ran at
        self._bases: dict[int, bytes] = {}
        self._paused = False
        self._closed = False
        self._last_progress = 0.0
        self._current_task: Task | None = None
        self._publishing = False

        h, w = self._inputs.shape[-2:]
        esm, css = _front_end()
        # in the constructor so they are part of the state the comm opens with (the front end loads
        # the module from that first state)
        super().__init__(_esm=esm, _css=css)
        with self.hold_sync():
            self.methods = [
                {"name": m, "label": METHOD_LABELS.get(m, m), "fast": m in self._fast} for m in chosen_methods
            ]
            self.layers = [{"name": i.name, "shape": list(i.shape)} for i in infos]
            self.class_names = names
            self.n_images = n
            self.thumbnails = thumbnails(self._display, 64)
            self.thumb_size = 64
            self.model_name = type(model).__name__
            self.device = str(self._device())
            self.image_shape = [int(h), int(w)]
            self.heatmap_shape = [int(h), int(w)]
            self.substrate_rgb = [round(m * 255) for m in self._mean]
            self.colormap = colormap
            self.opacity = float(opacity)
            self.layer = first_layer
            self.method = first
            slow = [m for m in chosen_methods if m not in self._fast]
            others = [m for m in chosen_methods if m != first]
            self.compare_method = slow[0] if slow and slow[0] != first else (others[0] if others else first)
            self.image = self._display[0].tobytes()
            self._set_predictions(0, target_index)
            # set before the background thread starts, so nothing races with these first values
            self.compare = compare
            if compare_index is not None:
                self.compare_class = compare_index
            if not self._want_curves:
                self.curves_status = "Curves off (curves=False)."
            elif self._metric is None:
                self.curves_status = (
                    "Curves unavailable: camwidget.metrics.insertion_deletion is not installed."
                )

        # the first map now (fast methods: one pass), so the widget and its PNG show it at once
        first_key = self._key_a()
        preview = first_key if first in self._fast else self._preview_key(first_key)
        if preview is not None:
            self._compute_map(preview, None)
            self._publish_all()

        self._worker = BackgroundWorker(self._plan, self._on_idle, self._on_crash)
        self.on_msg(self._on_front_end_msg)
        self.observe(
            self._on_selection,
            names=[
                "image_index",
                "method",
                "layer",
                "class_index",
                "compare",
                "compare_method",
                "compare_class",
            ],
        )
        self._refresh_status()
        self._worker.wake()

    # ---------------------------------------------------------------- public helpers
    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the background thread has computed everything the current selection needs.

        Returns True when idle, False after ``timeout`` seconds. Handy in scripts and tests; in a
        notebook the widget updates by itself.
        """
        return self._worker.wait_idle(timeout)

    def cancel(self) -> None:
        """Stop the running computation (what the widget's Cancel button does)."""
        with self._lock:
            self._paused = True
            task = self._worker.current
            if task is not None and task.kind in ("map", "curves"):
                task.cancel()
        self._worker.wake()

    def retry(self) -> None:
        """Forget the errors of the current selection and compute again (the Retry/Compute button)."""
        with self._lock:
            self._paused = False
            for key in self._wanted_keys():
                self._errors.pop(key, None)
                self._errors.pop(("curves", key), None)
        self._refresh_status()
        self._worker.wake()

    def heatmap_array(self, which: str = "a") -> np.ndarray | None:
        """The map shown in slot "a" (or "b" when comparing) as an (H, W) float32 array, if any."""
        info = self.heatmap_info if which == "a" else self.heatmap2_info
        if not info:
            return None
        key = (info["image_index"], info["method"], info["layer"], info["class_index"])
        cam = self._maps.get(key)
        return None if cam is None else cam.copy()

    @property
    def inputs(self) -> torch.Tensor:
        """The (N, 3, H, W) model inputs (CPU)."""
        return self._inputs

    def close(self) -> None:
        """Stop the background thread, drop the caches and close the widget."""
        self._closed = True
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        for ex in getattr(self, "_explainers", {}).values():
            ex.release()
        super().close()

    # ---------------------------------------------------------------- validation helpers
    @staticmethod
    def _check_method(name: Any) -> str:
        all_methods = METHODS
        if not isinstance(name, str):
            raise TypeError(f"method must be a string, one of {', '.join(all_methods)}; got {name!r}")
        key = name.lower().replace("-", "").replace("_", "").replace("plusplus", "++")
        for m in all_methods:
            if m.replace("-", "") == key:
                return m
        close = difflib.get_close_matches(name.lower(), all_methods, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown method {name!r}.{hint} Choose one of: {', '.join(all_methods)}")

    @staticmethod
    def _default_class_names(k: int) -> list[str]:
        if k == 1000:
            try:
                from torchvision.models import ResNet18_Weights

                names = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
                if len(names) == 1000:
                    return names
            except Exception:
                pass
        return [f"class {i}" for i in range(k)]

    @staticmethod
    def _resolve_class(target: int | str, names: Sequence[str]) -> int:
        if isinstance(target, bool):
            raise TypeError("target must be a class index or a class name, not a bool")
        if isinstance(target, (int, np.integer)):
            if not 0 <= int(target) < len(names):
                raise ValueError(f"target {target} is out of range: the model has {len(names)} classes")
            return int(target)
        if isinstance(target, str):
            lowered = [n.lower() for n in names]
            if target.lower() in lowered:
                return lowered.index(target.lower())
            contains = [n for n in names if target.lower() in n.lower()]
            close = contains[:5] or difflib.get_close_matches(target, names, n=5)
            hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"no class is called {target!r}.{hint} Pass a class index or an exact name.")
        raise TypeError(f"target must be a class index or a class name, got {type(target).__name__}")

    # ---------------------------------------------------------------- model work
    def _device(self) -> torch.device:
        for p in self._model.parameters():
            return p.device
        for b in self._model.buffers():
            return b.device
        return torch.device("cpu")

    def _explainer(self, layer: str) -> Any:
        ex = self._explainers.get(layer)
        if ex is None:
            engine = _engine()
            ex = engine.Explainer(
                self._model,
                layer,
                PREVIEW_METHOD,
                progress=self._progress,
                mean=self._mean,
                std=self._std,
                warn=False,
            )
            self._explainers[layer] = ex
        return ex

    def _predict(self, index: int) -> np.ndarray:
        probs = self._probs.get(index)
        if probs is None:
            with self._model_lock:
                ex = self._explainers.get("__predict__")
                if ex is None:
                    ex = _engine().Explainer(
                        self._model, None, PREVIEW_METHOD, mean=self._mean, std=self._std
                    )
                    self._explainers["__predict__"] = ex
                out = ex.predict(self._inputs[index : index + 1])
            probs = torch.softmax(out.float(), dim=1)[0].cpu().numpy()
            self._probs[index] = probs
        return probs

    def _progress(self, done: int, total: int) -> None:
        task = self._current_task
        if task is None:
            return
        if task.cancelled.is_set() or self._closed:
            raise self._Cancelled()
        now = time.perf_counter()
        if now - self._last_progress >= _PROGRESS_EVERY or done >= total:
            self._last_progress = now
            with self._lock, self.hold_sync():
                self.progress = float(done) / float(total) if total else -1.0
                self.message = f"{task.label} · {done}/{total}"

    def _compute_map(self, key: MapKey, task: Task | None) -> None:
        index, method, layer, cls = key
        start = time.perf_counter()
        try:
            with self._model_lock:
                self._current_task = task
                ex = self._explainer(layer)
                cam = ex(self._inputs[index : index + 1], target=cls, method=method)
            arr = cam[0].detach().float().cpu().numpy()
            with self._lock:
                self._maps.put(key, arr)
                self._timings[key] = time.perf_counter() - start
                self._precisions[key] = ex.precision_used or "fp32"
                self._errors.pop(key, None)
        except self._Cancelled:
            pass
        except Exception as exc:
            with self._lock:
                self._errors[key] = (
                    f"{METHOD_LABELS.get(method, method)} at {layer} failed: {_short_error(exc)}"
                )
                self._log_exception(exc)
        finally:
            self._current_task = None

    def _compute_curves(self, key: MapKey, task: Task | None) -> None:
        index, _, _, cls = key
        cam = self._maps.get(key)
        metric = self._metric
        if cam is None or metric is None:
            return
        h, w = cam.shape
        step = max(1, math.ceil(h * w / self._curve_steps))
        try:
            with self._model_lock:
                self._current_task = task
                out = metric(
                    self._model,
                    self._inputs[index : index + 1],
                    torch.from_numpy(cam)[None],
                    target=[cls],
                    step=step,
                    substrate="zeros",
                    mean=self._mean,
                    std=self._std,
                    progress=self._progress,
                )
            ins = out.insertion[0].detach().float().cpu().numpy()
            dele = out.deletion[0].detach().float().cpu().numpy()
            fractions = getattr(out, "fractions", None)
            if fractions is None:
                fractions = np.linspace(0, 1, len(ins))
            fractions = np.asarray(
                fractions.detach().cpu() if isinstance(fractions, torch.Tensor) else fractions,
                dtype=np.float64,
            ).reshape(-1)[-len(ins) :]
            result = {
                "fractions": [round(float(f), 6) for f in fractions],
                "insertion": [round(float(v), 6) for v in ins],
                "deletion": [round(float(v), 6) for v in dele],
                "insertion_auc": float(out.insertion_auc[0]),
                "deletion_auc": float(out.deletion_auc[0]),
                "n_steps": len(ins) - 1,
            }
            order = step_order(cam, int(getattr(out, "step", step)))
            self._insertion_base(index)
            with self._lock:
                self._curves.put(key, (result, order))
                self._errors.pop(("curves", key), None)
        except self._Cancelled:
            pass
        except Exception as exc:
            with self._lock:
                self._errors[("curves", key)] = f"Curves failed: {_short_error(exc)}"
                self._log_exception(exc)
        finally:
            self._current_task = None

    def _insertion_base(self, index: int) -> bytes:
        """The display pixels insertion starts from (RISE: a blurred copy of the image)."""
        base = self._bases.get(index)
        if base is None:
            base = b""
            try:
                from camwidget.metrics import blur_images

                blurred = blur_images(self._inputs[index : index + 1])[0]
                base = to_display(blurred, self._mean, self._std).tobytes()
            except Exception:  # frames then fall back to the substrate colour
                pass
            self._bases[index] = base
        return base

    @staticmethod
    def _log_exception(exc: BaseException) -> None:
        import logging

        logging.getLogger("camwidget").debug("".join(traceback.format_exception(exc)))

    # ---------------------------------------------------------------- selection -> keys
    def _key_a(self) -> MapKey | None:
        if self.class_index < 0:
            return None
        return (self.image_index, self.method, self.layer, self.class_index)

    def _key_b(self) -> MapKey | None:
        if self.compare == "method":
            if self.class_index < 0:
                return None
            return (self.image_index, self.compare_method, self.layer, self.class_index)
        if self.compare == "class":
            if self.compare_class < 0:
                return None
            return (self.image_index, self.method, self.layer, self.compare_class)
        return None

    def _preview_key(self, key: MapKey | None) -> MapKey | None:
        if key is None or key[1] in self._fast:
            return None
        return (key[0], PREVIEW_METHOD, key[2], key[3])

    def _wanted_keys(self) -> list[MapKey]:
        return [k for k in (self._key_a(), self._key_b()) if k is not None]

    def _valid_selection(self) -> str:
        """Why the current selection cannot be computed ("" when it can)."""
        if not 0 <= self.image_index < self._inputs.shape[0]:
            return f"image_index {self.image_index} out of range (0..{self._inputs.shape[0] - 1})"
        for m in (self.method, self.compare_method if self.compare == "method" else self.method):
            if m not in self._method_names:
                return f"unknown method {m!r}; choose one of {', '.join(self._method_names)}"
        if self.layer not in self._layer_infos:
            return f"unknown layer {self.layer!r}; choose one of {', '.join(self._layer_infos)}"
        k = len(self._names)
        if not -1 <= self.class_index < k:
            return f"class_index {self.class_index} out of range (0..{k - 1})"
        if self.compare not in COMPARE_MODES:
            return f"compare must be one of {', '.join(COMPARE_MODES)}; got {self.compare!r}"
        if self.compare == "class" and not -1 <= self.compare_class < k:
            return f"compare_class {self.compare_class} out of range (0..{k - 1})"
        return ""

    # ---------------------------------------------------------------- planner (worker thread)
    def _plan(self) -> Task | None:
        with self._lock:
            if self._closed or self._valid_selection():
                return None
            index = self.image_index
            if index not in self._probs:
                return Task("predict", ("predict", index), "Predicting", self._run_predict)
            if self._paused:
                return None
            key_a, key_b = self._key_a(), self._key_b()
            # a fast preview first when the map asked for is slow and nothing of this image is shown
            preview = self._preview_key(key_a)
            if (
                preview is not None
                and key_a not in self._maps
                and key_a not in self._errors
                and preview not in self._maps
                and preview not in self._errors
            ):
                return self._map_task(preview, preview=True)
            for key in (key_a, key_b):
                if key is not None and key not in self._maps and key not in self._errors:
                    return self._map_task(key)
            if self._metric is not None:
                for key in (key_a, key_b):
                    if (
                        key is not None
                        and key in self._maps
                        and key not in self._curves
                        and ("curves", key) not in self._errors
                    ):
                        return Task("curves", key, "Insertion/deletion curves", self._run_curves, slow=True)
            return None

    def _map_task(self, key: MapKey, preview: bool = False) -> Task:
        label = f"{METHOD_LABELS.get(key[1], key[1])} · {key[2]}"
        if preview:
            label = f"Preview {label}"
        return Task("map", key, label, self._run_map, slow=key[1] not in self._fast)

    def _announce(self, task: Task) -> None:
        with self._lock, self.hold_sync():
            self.status = "running"
            self.progress = 0.0 if task.slow else -1.0
            self.message = f"{task.label}…"
            if task.kind == "curves" and task.key == self._key_a():
                self.curves_status = "Computing insertion/deletion curves…"

    def _run_predict(self, task: Task) -> None:
        index = task.key[1]
        self._announce(task)
        try:
            self._predict(index)
        except Exception as exc:
            with self._lock:
                self._errors[self._error_slot(index)] = (
                    f"The model failed on image {index}: {_short_error(exc)}"
                )
                self._probs[index] = np.full(len(self._names), np.nan, dtype=np.float32)
            return
        with self._lock:
            if self.image_index == index:
                self._set_predictions(index, None if not self._pinned_target else self.class_index)

    @staticmethod
    def _error_slot(index: int) -> Hashable:
        return ("predict", index)

    def _run_map(self, task: Task) -> None:
        self._announce(task)
        self._compute_map(task.key, task)
        self._publish_all()

    def _run_curves(self, task: Task) -> None:
        self._announce(task)
        self._compute_curves(task.key, task)
        self._publish_all()

    def _on_idle(self) -> None:
        self._refresh_status()

    def _on_crash(self, exc: BaseException) -> None:
        self._log_exception(exc)
        with self._lock, self.hold_sync():
            self.status = "error"
            self.error = f"Internal error in the background worker: {_short_error(exc)}"

    # ---------------------------------------------------------------- publishing (either thread)
    def _set_predictions(self, index: int, target: int | None) -> None:
        probs = self._probs.get(index)
        if probs is None:
            self.top_classes = []
            if not self._pinned_target:
                self.class_index = -1
            return
        if np.isnan(probs).all():
            self.top_classes = []
            return
        order = np.argsort(-probs, kind="stable")[: self._topk]
        self.top_classes = [
            {"index": int(i), "name": self._names[int(i)], "prob": round(float(probs[i]), 6)} for i in order
        ]
        if target is not None:
            self.class_index = int(target)
        elif not self._pinned_target or self.class_index < 0:
            self.class_index = int(order[0])
        second = [int(i) for i in order if int(i) != self.class_index]
        if second and (self.compare_class < 0 or self.compare_class == self.class_index or target is None):
            self.compare_class = second[0]

    def _map_info(self, key: MapKey) -> dict[str, Any]:
        index, method, layer, cls = key
        probs = self._probs.get(index)
        prob = float(probs[cls]) if probs is not None and not np.isnan(probs[cls]) else None
        info: dict[str, Any] = {
            "image_index": index,
            "method": method,
            "layer": layer,
            "class_index": cls,
            "class_name": self._names[cls],
            "class_prob": prob,
        }
        if key in self._timings:
            info["seconds"] = round(self._timings[key], 4)
        if key in self._precisions:
            info["precision"] = self._precisions[key]
        return info

    def _publish_all(self) -> None:
        """Show the cached results that match the current selection (the rest stays as it is)."""
        with self._lock:
            if self._closed:
                return
            key_a, key_b = self._key_a(), self._key_b()
            with self.hold_sync():
                shown_a = self.heatmap_info or {}
                if key_a is not None and key_a in self._maps:
                    self._show_map("a", key_a)
                elif key_a is not None:
                    preview = self._preview_key(key_a)
                    shown_key = tuple(
                        shown_a.get(k) for k in ("image_index", "method", "layer", "class_index")
                    )
                    if preview in self._maps and shown_key != preview:
                        self._show_map("a", preview)
                if key_b is not None and key_b in self._maps:
                    self._show_map("b", key_b)
                self._show_curves("a", key_a)
                self._show_curves("b", key_b)

    def _show_map(self, slot: str, key: MapKey) -> None:
        cam = self._maps[key]
        info = self._map_info(key)
        if slot == "a":
            if self.heatmap_info != info:
                self.heatmap = encode_levels(cam)
                self.heatmap_info = info
        elif self.heatmap2_info != info:
            self.heatmap2 = encode_levels(cam)
            self.heatmap2_info = info

    def _show_curves(self, slot: str, key: MapKey | None) -> None:
        entry = self._curves.get(key) if key is not None else None
        if entry is None:
            if slot == "a":
                if self.curves:
                    self.curves = {}
                    self.curve_order = b""
                if self._metric is not None and key is not None:
                    err = self._errors.get(("curves", key))
                    if err:
                        self.curves_status = err
                    elif self._paused:
                        self.curves_status = "Curves not computed (cancelled)."
                    else:
                        self.curves_status = "Curves follow once the map is ready…"
            elif self.curves2:
                self.curves2 = {}
                self.curve_order2 = b""
            return
        result, order = entry
        result = {**result, "info": self._map_info(key)}
        if slot == "a":
            base = self._bases.get(key[0], b"")
            if self.insertion_base != base:
                self.insertion_base = base
            if self.curves != result:
                self.curve_order = order
                self.curves = result
            self.curves_status = ""
        elif self.curves2 != result:
            self.curve_order2 = order
            self.curves2 = result

    def _refresh_status(self) -> None:
        with self._lock:
            if self._closed:
                return
            invalid = self._valid_selection()
            keys = self._wanted_keys()
            errors = [self._errors[k] for k in keys if k in self._errors]
            pred_err = self._errors.get(self._error_slot(self.image_index))
            if pred_err:
                errors.insert(0, pred_err)
            running = self._worker.current if hasattr(self, "_worker") else None
            with self.hold_sync():
                if invalid:
                    self.status, self.error, self.message = "error", f"Invalid selection: {invalid}", ""
                elif errors:
                    self.status, self.error, self.message = "error", "\n".join(errors), ""
                    self.progress = -1.0
                elif running is not None:
                    self.error = ""
                elif self._paused and any(k not in self._maps for k in keys):
                    missing = [METHOD_LABELS.get(k[1], k[1]) for k in keys if k not in self._maps]
                    self.status, self.error = "cancelled", ""
                    self.message = f"Cancelled. Press Compute to run {' and '.join(missing)}."
                    self.progress = -1.0
                else:
                    self.status, self.error, self.progress = "ready", "", 1.0
                    key = self._key_a()
                    secs = self._timings.get(key) if key is not None else None
                    self.message = (
                        f"{METHOD_LABELS.get(key[1], key[1])} in {secs * 1000:.0f} ms"
                        f" · {self._precisions.get(key, 'fp32')}"
                        if key is not None and secs is not None
                        else ""
                    )

    # ---------------------------------------------------------------- front-end events
    def _on_selection(self, change: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            if change["name"] == "image_index" and 0 <= self.image_index < self._inputs.shape[0]:
                index = self.image_index
                with self.hold_sync():
                    self.image = self._display[index].tobytes()
                    self._set_predictions(index, self.class_index if self._pinned_target else None)
            self._paused = False
            wanted = set(self._wanted_keys())
            preview = self._preview_key(self._key_a())
            if preview is not None:
                wanted.add(preview)
            running = self._worker.current
            if running is not None and running.kind == "map" and running.slow and running.key not in wanted:
                running.cancel()
            self._publish_all()
        self._refresh_status()
        self._worker.wake()

    def _on_front_end_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "cancel":
            self.cancel()
        elif action in ("retry", "compute"):
            self.retry()

    # ---------------------------------------------------------------- static fallbacks
    def to_png(self, colormap: str | None = None, opacity: float | None = None) -> bytes:
        """PNG of the current view: image, overlay and heatmap side by side (what non-widget front
        ends and static exports show)."""
        rgb = self._display[self.image_index if 0 <= self.image_index < len(self._display) else 0]
        cmap = colormap or (self.colormap if self.colormap in COLORMAPS else "viridis")
        alpha = self.opacity if opacity is None else opacity
        tiles = [rgb]
        cam = self.heatmap_array("a")
        if cam is not None:
            levels = np.frombuffer(encode_levels(cam), dtype=np.uint8).reshape(cam.shape)
            tiles += [blend(rgb, levels, cmap, alpha), colorize(levels, cmap)]
        gap = np.full((rgb.shape[0], 6, 3), 255, dtype=np.uint8)
        row = tiles[0]
        for tile in tiles[1:]:
            row = np.concatenate([row, gap, tile], axis=1)
        return png_bytes(row)

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        try:
            data = {**data, "image/png": base64.b64encode(self.to_png()).decode("ascii")}
            info = self.heatmap_info or {}
            if info:
                data["text/plain"] = (
                    f"CamExplorer({self.model_name}: {METHOD_LABELS.get(info['method'], info['method'])} "
                    f"at {info['layer']} for {info['class_name']!r}, image {info['image_index'] + 1} of "
                    f"{self.n_images})"
                )
        except Exception:  # the widget itself must display even if the fallback fails
            pass
        return data, metadata
