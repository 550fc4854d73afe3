"""``AuditExplorer``: browse an audit in a notebook -- findings, class mean maps, sort, filter, open.

The kernel holds the table (:meth:`AuditReport.to_dataframe`) and does the sorting, filtering and
paging; the browser (``js/src/gallery``, bundled into ``camwidget/static/gallery.js`` with the buffer
decoding and colormaps CamExplorer uses) draws one page of cards and sends the user's choices back as
trait changes. Images and maps travel as bytes (JPEG thumbnails, uint8 map levels), never as base64
text. Clicking a card opens the *audited input* -- the dataset item through the audit's transform, the
very tensor the audit explained -- in :class:`camwidget.CamExplorer` below the gallery.

Panels: the front end draws the panels named in the ``panels`` trait, in that order (``findings``,
``classes``, ``embedding``, ``confusion``, ``slices``, ``compare``, ``controls``, ``grid``, ``pager``,
``focus``); each redraws only on its own traits. A new view of the audit is a new panel: traits (and
their computation) here, a module in ``js/src/gallery`` registered in its ``PANELS``, and its name in
``panels``.

At scale (tens of thousands of images) nothing is sent per image but what a view needs: one page of
cards; the embedding scatter as three compact bytes traits (float16 coordinates, uint16 class codes,
uint8 flags: a few bytes per image) and the current filter as a bitmask; a thumbnail only when the
pointer rests on its point (a ``hover`` message answered with the JPEG bytes). A lasso on the scatter
sends its polygon, and the kernel decides which points it holds.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from camwidget.audit.report import AuditReport
from camwidget.audit.shortcuts import Shortcut, Shortcuts
from camwidget.defaults import DEFAULT_COLORMAP

__all__ = ["FILTER_OPS", "PANELS", "AuditExplorer", "display_normalisation", "points_in_polygon"]

_STATIC = Path(__file__).resolve().parent.parent / "static"
FILTER_OPS = ("<", "<=", ">", ">=", "==", "!=", "contains", "is missing", "not missing")
"""Operators the filter bar offers: comparisons (numbers, text, yes/no), substring, missing values."""
PANELS = (
    "findings",
    "classes",
    "embedding",
    "confusion",
    "slices",
    "compare",
    "controls",
    "grid",
    "pager",
    "focus",
)
"""The gallery's panels, top to bottom (a panel without data for this audit is left out)."""
MAX_MATRIX = 24
"""The confusion panel draws the full matrix up to this many classes; beyond, the most confused pairs."""
MAX_SLICES = 8
"""Slices listed in the slices panel."""


def _front_end() -> tuple[str, str]:
    """The bundled gallery module and stylesheet (built from js/ by ``make js``)."""
    try:
        return (_STATIC / "gallery.js").read_text("utf-8"), (_STATIC / "gallery.css").read_text("utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"camwidget's gallery front end is missing ({exc.filename}); rebuild it with 'make js' "
            "(npm ci && npm run build in js/)"
        ) from exc


def _levels(m: np.ndarray) -> bytes:
    """(h, w) map -> h*w uint8 levels, min-max normalised (all zeros for a flat map)."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float32))
    lo, hi = (float(m.min()), float(m.max())) if m.size else (0.0, 0.0)
    scaled = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8).tobytes()


def _jsonable(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return str(v)


def _value_text(column: str, value: Any) -> str:
    """``"region_top_left 0.42"``: the sorted column and its value, rounded."""
    if value is None:
        return f"{column} –"
    if isinstance(value, bool):
        return f"{column} {'yes' if value else 'no'}"
    if isinstance(value, float):
        return f"{column} {value:.2f}"
    return f"{column} {value}"


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which of the (N, 2) ``points`` lie inside ``polygon`` ((V, 2) vertices; even-odd rule,
    vectorised over the points). Points with NaN coordinates are outside."""
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    inside = np.zeros(len(points), dtype=bool)
    xj, yj = polygon[-1]
    for xi, yi in polygon:
        with np.errstate(invalid="ignore", divide="ignore"):
            crosses = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
        inside ^= np.nan_to_num(crosses, nan=0).astype(bool)
        xj, yj = xi, yi
    return inside & np.isfinite(x) & np.isfinite(y)


def display_normalisation(
    x: Any, mean: Any = None, std: Any = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) that turn the input ``x`` (C, H, W) back into [0, 1] pixels for display.

    The audit's own when known; else the ones that stretch ``x``'s value range to [0, 1] (as the
    audit's thumbnails do), so an input of unknown normalisation still shows as an image.
    """
    if mean is not None and std is not None:
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo if hi > lo else 1.0
    channels = int(x.shape[0])
    return (-lo / span,) * channels, (1.0 / span,) * channels


class AuditExplorer(anywidget.AnyWidget):
    """A gallery of an audit's images with their heatmaps: findings, class mean maps, sort, filter, open.

    Shows the shortcut findings (click one: the gallery shows that class, the images leaning most on
    the place first; "test it" runs the paste/remove counterfactual when the model is known), a mean
    map per class drawn over a typical image of it with the named regions outlined (click: filter to
    the class), sort and filter controls over every recorded column (``probability``, ``correct``,
    ``object_energy``, ``region_<name>``, ...), and one page of thumbnails with the map laid over them,
    regions and object boxes outlined, captioned ``#index label → prediction`` and the sorted value.
    Clicking a thumbnail opens the audited input in :class:`camwidget.CamExplorer` below the gallery,
    with the audit's method and layer, on the predicted class; a misclassified image opens comparing
    the label's map with the prediction's.

    Args:
        report: an :class:`AuditReport` (from :func:`camwidget.audit` or :meth:`AuditReport.load`).
        model: the audited model, needed to open images and to test findings. Default None (a click
            then shows the image's recorded values).
        dataset: the audited dataset, when the report does not know it already (a report loaded from
            its file, for a non-folder audit); checked against the audit's data fingerprint.
        transform: the audit's ``transform=``, for a loaded report.
        shortcuts: the findings to list (e.g. ``report.shortcuts(model=model)``, tested); default
            ``report.shortcuts()``, untested.
        page_size: thumbnails per page. Default 48.
        thumb_px: thumbnail width in pixels on screen. Default 96.
        class_by: mean maps per "predicted" (default) or "label" class.
        compare: another model's audit of the same dataset (an :class:`AuditReport`): the cards show
            both maps side by side, the table gains ``predicted_<b>``, ``correct_<b>``, ``agree`` and
            ``map_disagreement`` columns, and a panel lists where the models disagree per class.
        names: what to call the two models when comparing. Default ("a", "b").
        slices: list the audit's slices (:meth:`AuditReport.slices`, worst first). Default True.

    Attributes:
        detail: the ``ipywidgets.VBox`` below the gallery where opened images appear.
        explorer: the last CamExplorer opened, or None.
        shortcut_list: the :class:`~camwidget.audit.shortcuts.Shortcuts` shown (tested ones carry
            their ``counterfactual``).

    Also: an embedding scatter (each image's penultimate embedding on a plane, coloured by true class
    or by correctness; hover a point for its thumbnail, fetched then; drag a lasso around points to make
    a selection that filters the gallery, :attr:`selection`), the confusion matrix (click a cell: its
    images, most confident first), the slices where the model fails (click one: its images), and, for
    the image opened last, its predicted-class and true-class maps side by side with their
    error-understanding confidence paths when the audit recorded them.

    Programmatic use: set ``sort_by``, ``descending``, ``filters`` (a list of ``{"column", "op",
    "value"}`` dicts with ``op`` in :data:`FILTER_OPS`) and ``page``; :meth:`rows` returns the filtered,
    sorted table; :meth:`open_image` opens an image by dataset index; :meth:`test_finding` runs the
    counterfactual of a listed finding; :meth:`select_polygon` makes a lasso selection.

    Attributes (also):
        selection: dataset indices of the last lasso selection (empty before one).
        slices: the :class:`~camwidget.audit.slices.Slice` list shown.
        comparison: the :class:`~camwidget.audit.comparison.Comparison` when comparing, else None.
    """

    # Set in the constructor (not as anywidget file paths) so that the comm opens with the module in
    # its first state -- the front end builds the view from that state -- and so that ipywidgets'
    # embed, which drops default-valued traits, keeps them.
    _esm = t.Unicode("").tag(sync=True)
    _css = t.Unicode("").tag(sync=True)

    panels = t.List(t.Unicode(), list(PANELS)).tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    columns = t.List(t.Dict()).tag(sync=True)
    sort_by = t.Unicode("index").tag(sync=True)
    descending = t.Bool(False).tag(sync=True)
    filters = t.List(t.Dict()).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_size = t.Int(48).tag(sync=True)
    total = t.Int(0).tag(sync=True)
    n_rows = t.Int(0).tag(sync=True)
    items = t.List(t.Dict()).tag(sync=True)
    class_by = t.Unicode("predicted").tag(sync=True)
    class_maps = t.List(t.Dict()).tag(sync=True)
    regions = t.List(t.Dict()).tag(sync=True)
    findings = t.List(t.Dict()).tag(sync=True)
    can_test = t.Bool(False).tag(sync=True)
    colormap = t.Unicode(DEFAULT_COLORMAP).tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    show_maps = t.Bool(True).tag(sync=True)
    show_boxes = t.Bool(True).tag(sync=True)
    show_regions = t.Bool(True).tag(sync=True)
    thumb_px = t.Int(96).tag(sync=True)
    selected = t.Int(-1).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    # the embedding scatter: one point per table row (table order), NaN coordinates where no embedding
    scatter_n = t.Int(0).tag(sync=True)
    scatter_xy = t.Bytes(b"").tag(sync=True)  # n*2 float16 little-endian, x and y scaled to [0, 1]
    scatter_class = t.Bytes(b"").tag(sync=True)  # n uint16: position in scatter_classes (65535: none)
    scatter_flags = t.Bytes(b"").tag(sync=True)  # n uint8: bit 0 misclassified, bit 1 unlabelled
    scatter_classes = t.List(t.Unicode()).tag(sync=True)  # the label names the codes stand for
    scatter_shown = t.Bytes(b"").tag(sync=True)  # packed bits (little order): rows the filters keep
    scatter_color = t.Unicode("class").tag(sync=True)  # "class" or "correct"
    lasso = t.Dict().tag(sync=True)  # the last lasso selection: count, accuracy, classes
    # the confusion view, the slices, two models side by side, the opened image
    confusion = t.Dict().tag(sync=True)
    slice_list = t.List(t.Dict()).tag(sync=True)
    compare_names = t.List(t.Unicode()).tag(sync=True)
    compare_classes = t.List(t.Dict()).tag(sync=True)
    compare_summary = t.Unicode("").tag(sync=True)
    focus = t.Dict().tag(sync=True)

    def __init__(
        self,
        report: AuditReport,
        model: Any = None,
        *,
        dataset: Any = None,
        transform: Any = None,
        shortcuts: Shortcuts | None = None,
        page_size: int = 48,
        thumb_px: int = 96,
        class_by: str = "predicted",
        compare: AuditReport | None = None,
        names: tuple[str, str] = ("a", "b"),
        slices: bool = True,
    ) -> None:
        if not isinstance(report, AuditReport):
            raise TypeError(
                f"report must be a camwidget.AuditReport (from camwidget.audit(...) or "
                f"AuditReport.load(path)), got {type(report).__name__}"
            )
        if model is not None:
            from torch import nn

            if not isinstance(model, nn.Module):
                raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive int, got {page_size!r}")
        if class_by not in ("predicted", "label"):
            raise ValueError(f"class_by must be 'predicted' or 'label', got {class_by!r}")
        import ipywidgets

        if dataset is not None or transform is not None:
            report.use_dataset(dataset if dataset is not None else report.dataset, transform)
        self.report = report
        self.model = model
        self.explorer: Any = None
        self.detail = ipywidgets.VBox()
        self._df = report.to_dataframe().reset_index()  # "index" (the dataset index) becomes a column
        self._position = {int(i): p for p, i in enumerate(self._df["index"])}
        self._order = np.arange(len(self._df))
        self.shortcut_list = report.shortcuts() if shortcuts is None else Shortcuts(shortcuts)
        self._finding_columns = self._add_finding_columns()
        self.selection = np.zeros(0, dtype=np.int64)
        self.comparison: Any = None
        if compare is not None:
            self.comparison = report.compare(compare, names=names)
            self._add_comparison_columns()
        self.slices: list[Any] = []
        self._slices_shown = bool(slices) and report.has_embeddings()
        if self._slices_shown:
            self.slices = report.slices()[:MAX_SLICES]
            self._add_slice_column()
        self._plane: np.ndarray | None = None  # the scatter's coordinates as the browser has them
        esm, css = _front_end()
        super().__init__(_esm=esm, _css=css)
        with self.hold_sync():
            self.page_size = page_size
            self.thumb_px = int(thumb_px)
            self.class_by = class_by
            self.can_test = model is not None
            self.n_rows = len(self._df)
            errors = int(self._df["error"].notna().sum())
            self.title = (
                f"Audit: {len(self._df)} images, method {report.method} at layer {report.layer!r}"
                + (f", maps of {report.target}" if report.target is not None else "")
                + (f", {errors} unreadable" if errors else "")
            )
            self.columns = [{"name": c, "kind": self._kind(c)} for c in self._df.columns]
            self.regions = self._region_outlines()
            self.findings = self._findings()
            self._update_class_maps()
            self._update_scatter()
            self.confusion = self._confusion()
            self.slice_list = self._slice_items()
            if self.comparison is not None:
                self.compare_names = list(self.comparison.names)
                self.compare_classes = self._compare_classes()
                self.compare_summary = self.comparison.summary()
            self.panels = [p for p in PANELS if self._has_panel(p)]
            self._refresh()
        self.observe(self._on_query, names=["sort_by", "descending", "filters", "page", "page_size"])
        self.observe(lambda _: self._update_class_maps(), names=["class_by"])
        self.on_msg(self._on_message)

    # -- display: the gallery with the detail panel under it ----------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        import ipywidgets

        self._container = getattr(self, "_container", None) or ipywidgets.VBox([self, self.detail])
        return self._container._repr_mimebundle_(**kwargs)

    # -- what the panels show -----------------------------------------------------------------------
    def _fractions(self, box: Any) -> list[float] | None:
        size = self.report.image_size
        if not size or box is None:
            return None
        h, w = size
        x0, y0, x1, y1 = (float(v) for v in box)
        return [round(x0 / w, 6), round(y0 / h, 6), round(x1 / w, 6), round(y1 / h, 6)]

    def _region_outlines(self) -> list[dict[str, Any]]:
        out = []
        for name, desc in self.report.regions.items():
            box = self._fractions(desc.get("box") or desc.get("bbox"))
            if box is not None:
                out.append({"name": name, "box": box})
        return out

    def _add_finding_columns(self) -> dict[int, str]:
        """A table column per hotspot finding (each image's energy share there), for sorting."""
        columns: dict[int, str] = {}
        for k, s in enumerate(self.shortcut_list):
            if s.column is not None and s.column in self._df.columns:
                columns[k] = s.column
            elif s.cells is not None:
                h, w = self.report.maps_shape()
                mask = np.zeros((h, w), dtype=bool)
                for y, x in s.cells:
                    mask[y, x] = True
                name = f"hotspot_{k + 1}"
                self._df[name] = self.report.energy_in(mask)
                columns[k] = name
        return columns

    def _finding(self, k: int, s: Shortcut) -> dict[str, Any]:
        by_column = "label_name" if s.by == "label" else "predicted_name"
        area = f"{100 * s.area:.0f}%" if s.area >= 0.01 else f"{100 * s.area:.1f}%"
        text = (
            f"{s.class_name} → {s.where}: {s.users} of {s.images} images ({100 * s.users_fraction:.0f}%) put "
            f"{100 * s.user_share:.0f}% of their map energy there ({s.lift:.1f}× its {area} of the image); "
            f"{100 * s.others_fraction:.0f}% of other classes' images do"
        )
        cf = s.counterfactual
        flips = ""
        if cf is not None:
            flips = (
                f"pasted: {cf.pasted_flipped}/{cf.pasted} flip to {cf.class_name}; "
                f"removed: {cf.removed_flipped}/{cf.removed} flip away"
            )
        return {
            "id": k,
            "class_name": s.class_name,
            "kind": s.kind,
            "region": s.region,
            "box": self._fractions(s.box),
            "score": round(float(s.score), 4),
            "users": int(s.users),
            "images": int(s.images),
            "text": text,
            "flips": flips,
            "filters": [{"column": by_column, "op": "==", "value": s.class_name}],
            "sort_by": self._finding_columns.get(k, "index"),
            "examples": list(s.examples),
        }

    def _findings(self) -> list[dict[str, Any]]:
        return [self._finding(k, s) for k, s in enumerate(self.shortcut_list[:8])]

    def test_finding(self, k: int) -> Any:
        """Run the paste/remove counterfactual of listed finding ``k`` (needs the model and the
        audited dataset); returns its :class:`~camwidget.audit.counterfactual.Counterfactual`."""
        import dataclasses

        if self.model is None:
            raise ValueError("pass model= to AuditExplorer to test findings")
        s = self.shortcut_list[k]
        cf = self.report.counterfactual(s, self.model)
        self.shortcut_list[k] = dataclasses.replace(s, counterfactual=cf)
        self.findings = self._findings()
        return cf

    def _update_class_maps(self) -> None:
        """Mean maps per class, each over the class's most typical image (its map nearest the mean)."""
        report = self.report
        maps = report.class_mean_maps(by=self.class_by)
        column = f"{self.class_by}_name"
        counts = self._df[column].value_counts()
        energy = report._energy()
        positions = report._groups(self.class_by)
        idx = report.table()["idx"]
        out = []
        for k, pos in positions.items():
            name = str(report._name(k))
            mean = maps[name]
            flat = energy[pos].reshape(len(pos), -1)
            norms = np.linalg.norm(flat, axis=1) * max(float(np.linalg.norm(mean)), 1e-12)
            similarity = (flat @ mean.ravel()) / np.where(norms > 0, norms, 1.0)
            typical = int(idx[pos[int(np.argmax(similarity))]])
            out.append(
                {
                    "name": name,
                    "count": int(counts.get(name, 0)),
                    "h": int(mean.shape[0]),
                    "w": int(mean.shape[1]),
                    "map": _levels(mean),
                    "thumb": report.thumbnail(typical) or b"",
                    "index": typical,
                }
            )
        self.class_maps = out

    def _has_panel(self, name: str) -> bool:
        if name == "embedding":
            return self.scatter_n > 0
        if name == "confusion":
            return bool(self.confusion.get("names"))
        if name == "slices":
            return self._slices_shown
        if name == "compare":
            return self.comparison is not None
        return True

    # -- the embedding scatter --------------------------------------------------------------------------
    def _update_scatter(self) -> None:
        """The scatter's bytes traits, from :meth:`AuditReport.embedding` (table order)."""
        report = self.report
        if not report.has_embeddings():
            return
        plane = report.embedding()  # (N, 2) in the report's index order = the table's order
        finite = np.isfinite(plane).all(axis=1)
        lo = np.nanmin(plane[finite], axis=0) if finite.any() else np.zeros(2)
        hi = np.nanmax(plane[finite], axis=0) if finite.any() else np.ones(2)
        span = np.where(hi > lo, hi - lo, 1.0)
        scaled = ((plane - lo) / span).astype("<f2")  # NaN stays NaN
        self._plane = scaled.astype(np.float32)
        labels = self._df["label_name"]
        names = sorted({str(v) for v in labels.dropna()}, key=lambda v: self._class_order(v))
        code = {n: i for i, n in enumerate(names)}
        classes = np.array([code.get(str(v), 65535) if v is not None else 65535 for v in labels], dtype="<u2")
        correct = self._df["correct"].to_numpy(dtype=object)
        flags = np.zeros(len(self._df), dtype=np.uint8)
        flags |= np.array([c is False or c is np.False_ for c in correct], dtype=np.uint8)
        flags |= (classes == 65535).astype(np.uint8) << 1
        self.scatter_classes = names
        self.scatter_xy = scaled.tobytes()
        self.scatter_class = classes.tobytes()
        self.scatter_flags = flags.tobytes()
        self.scatter_n = len(self._df)

    def _class_order(self, name: str) -> int:
        names = self.report.class_names
        return names.index(name) if name in names else len(names)

    def select_polygon(self, polygon: list[list[float]]) -> np.ndarray:
        """Select the scatter's points inside ``polygon`` (a lasso), and filter the gallery to them.

        Args:
            polygon: [[x, y], ...] vertices in the scatter's coordinates (each axis scaled to [0, 1], y
                up), at least 3.

        Returns:
            The dataset indices selected (also :attr:`selection`; the table gets a ``lasso`` column).
        """
        if self._plane is None:
            raise ValueError("this audit has no embedding map (no embeddings were recorded)")
        vertices = np.asarray(polygon, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
            raise ValueError(f"polygon must be 3 or more [x, y] points; got shape {vertices.shape}")
        inside = points_in_polygon(self._plane, vertices)
        self.selection = self._df["index"].to_numpy()[inside].astype(np.int64)
        self._df["lasso"] = inside
        if "lasso" not in [c["name"] for c in self.columns]:
            self.columns = [*self.columns, {"name": "lasso", "kind": "bool"}]
        rows = self._df[inside]
        correct = rows["correct"].dropna()
        counts = rows["label_name"].value_counts()
        self.lasso = {
            "count": int(inside.sum()),
            "accuracy": float(correct.mean()) if len(correct) else None,
            "rest_accuracy": _jsonable(self._df.loc[~inside, "correct"].dropna().mean()),
            "classes": [[str(k), int(v)] for k, v in counts.head(4).items()],
        }
        with self.hold_sync():
            self.filters = [{"column": "lasso", "op": "==", "value": "true"}]
            self.page = 0
        return self.selection

    def _send_thumb(self, position: int) -> None:
        """Answer a hover on the scatter: the point's thumbnail (JPEG bytes) and caption."""
        if not 0 <= position < len(self._df):
            return
        row = self._df.iloc[position]
        index = int(row["index"])
        label, pred = _jsonable(row.get("label_name")), _jsonable(row.get("predicted_name"))
        content = {
            "event": "thumb",
            "position": int(position),
            "index": index,
            "caption": f"#{index} {label or '?'} → {pred}",
            "correct": _jsonable(row.get("correct")),
        }
        self.send(content, buffers=[self.report.thumbnail(index) or b""])

    # -- confusion, slices, comparison ------------------------------------------------------------------
    def _confusion(self) -> dict[str, Any]:
        matrix = self.report.confusion()
        if matrix.empty:
            return {}
        pairs = self.report.confusion_pairs(examples=0).head(12)
        small = len(matrix) <= MAX_MATRIX
        return {
            "names": [str(n) for n in matrix.index],
            "counts": matrix.to_numpy().astype(int).tolist() if small else None,
            "pairs": [
                {
                    "label": str(r.label_name),
                    "predicted": str(r.predicted_name),
                    "count": int(r.count),
                    "share": float(r.share),
                }
                for r in pairs.itertuples()
            ],
        }

    def _add_slice_column(self) -> None:
        """Column ``slice``: the rank (1 = worst) of the listed slice an image belongs to, else missing."""
        import pandas as pd

        ranks = np.full(len(self._df), np.nan)
        for k, s in enumerate(self.slices):
            ranks[[self._position[int(i)] for i in s.indices]] = k + 1
        self._df["slice"] = pd.array([None if np.isnan(v) else int(v) for v in ranks], dtype="Int64")

    def _slice_items(self) -> list[dict[str, Any]]:
        out = []
        probability = self._df["probability"].to_numpy()
        correct = self._df["correct"].to_numpy(dtype=object)
        for k, s in enumerate(self.slices):
            pos = np.array([self._position[int(i)] for i in s.indices])
            wrong = pos[[correct[p] is False or correct[p] is np.False_ for p in pos]]
            shown = wrong if len(wrong) else pos
            typical = int(self._df["index"].iloc[shown[int(np.nanargmax(probability[shown]))]])
            out.append(
                {
                    "id": k + 1,
                    "label_name": s.label_name,
                    "size": int(s.size),
                    "accuracy": float(s.accuracy),
                    "baseline": float(s.baseline_accuracy),
                    "description": s.description,
                    "map": _levels(s.mean_map),
                    "h": int(s.mean_map.shape[0]),
                    "w": int(s.mean_map.shape[1]),
                    "thumb": self.report.thumbnail(typical) or b"",
                    "index": typical,
                }
            )
        return out

    def _add_comparison_columns(self) -> None:
        """``predicted_<b>``, ``correct_<b>``, ``agree``, ``map_disagreement`` from the comparison."""
        comparison = self.comparison
        per_image = comparison.per_image()
        _, b = comparison.names
        joined = self._df[["index"]].join(per_image, on="index")
        for column in (f"predicted_{b}", f"correct_{b}", "agree", "map_disagreement"):
            self._df[column] = joined[column].to_numpy()
        self._df["agree"] = self._df["agree"].astype("boolean")
        self._df[f"correct_{b}"] = self._df[f"correct_{b}"].astype("boolean")

    def _compare_classes(self) -> list[dict[str, Any]]:
        a, b = self.comparison.names
        rows = []
        for name, r in self.comparison.per_class().iterrows():
            rows.append(
                {
                    "name": str(name),
                    "images": int(r["images"]),
                    "accuracy_a": float(r[f"accuracy_{a}"]),
                    "accuracy_b": float(r[f"accuracy_{b}"]),
                    "agreement": float(r["agreement"]),
                    "map_disagreement": _jsonable(r["map_disagreement"]),
                }
            )
        return rows

    # -- table ----------------------------------------------------------------------------------------
    def _kind(self, column: str) -> str:
        import pandas as pd

        series = self._df[column]
        if pd.api.types.is_bool_dtype(series.dtype):
            return "bool"
        if pd.api.types.is_numeric_dtype(series.dtype):
            return "number"
        return "text"

    def rows(self) -> Any:
        """The table the gallery shows: filtered and sorted as set, all pages (a pandas DataFrame)."""
        return self._df.iloc[self._order]

    def _mask(self, f: dict[str, Any]) -> np.ndarray:
        column, op, value = f.get("column"), f.get("op"), f.get("value")
        if column not in self._df.columns:
            raise ValueError(f"unknown column {column!r}; columns are {', '.join(self._df.columns)}")
        if op not in FILTER_OPS:
            raise ValueError(f"unknown operator {op!r}; use one of {', '.join(FILTER_OPS)}")
        series = self._df[column]
        missing = series.isna().to_numpy()
        if op == "is missing":
            return missing
        if op == "not missing":
            return ~missing
        kind = self._kind(column)
        if op == "contains":
            return series.astype(str).str.contains(str(value), case=False, regex=False).to_numpy() & ~missing
        if kind == "number":
            try:
                target: Any = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{column} holds numbers; {value!r} is not a number") from None
            values = series.astype("float64").to_numpy()
        elif kind == "bool":
            text = str(value).strip().lower()
            if text not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(f"{column} is yes/no; filter it with true or false, not {value!r}")
            target = float(text in ("true", "yes", "1"))
            values = series.astype("float64").to_numpy()
        else:
            target = str(value)
            values = series.astype(str).to_numpy()
        with np.errstate(invalid="ignore"):
            result = {
                "<": lambda: values < target,
                "<=": lambda: values <= target,
                ">": lambda: values > target,
                ">=": lambda: values >= target,
                "==": lambda: values == target,
                "!=": lambda: values != target,
            }[op]()
        return np.asarray(result, dtype=bool) & ~missing

    def _refresh(self) -> None:
        """Recompute the filtered order and the current page's cards."""
        problems = []
        keep = np.ones(len(self._df), dtype=bool)
        for f in self.filters:
            try:
                keep &= self._mask(f)
            except ValueError as exc:
                problems.append(f"filter ignored: {exc}")
        sort_by = self.sort_by if self.sort_by in self._df.columns else "index"
        if sort_by != self.sort_by:
            problems.append(f"cannot sort by unknown column {self.sort_by!r}; sorted by index")
        positions = np.flatnonzero(keep)
        view = self._df.iloc[positions][[sort_by]].assign(_position=positions)
        view = view.sort_values(sort_by, ascending=not self.descending, kind="stable", na_position="last")
        self._order = view["_position"].to_numpy()
        self.total = len(self._order)
        pages = max(1, math.ceil(self.total / self.page_size))
        if self.page >= pages:
            self.page = pages - 1  # triggers another refresh through the observer
            return
        start = self.page * self.page_size
        self.items = [self._card(int(p)) for p in self._order[start : start + self.page_size]]
        self.message = "; ".join(problems)
        if self.scatter_n:
            shown = np.zeros(len(self._df), dtype=bool)
            shown[self._order] = True
            self.scatter_shown = np.packbits(shown, bitorder="little").tobytes()

    def _card(self, position: int) -> dict[str, Any]:
        row = self._df.iloc[position]
        index = int(row["index"])
        error = _jsonable(row.get("error"))
        label = _jsonable(row.get("label_name"))
        pred = _jsonable(row.get("predicted_name"))
        prob = _jsonable(row.get("probability"))
        sort_by = self.sort_by if self.sort_by in self._df.columns else "index"
        value = _jsonable(row.get(sort_by)) if sort_by != "index" else None
        card: dict[str, Any] = {
            "index": index,
            "thumb": self.report.thumbnail(index) or b"",
            "map": b"",
            "map_h": 0,
            "map_w": 0,
            "correct": _jsonable(row.get("correct")),
            "error": error,
            "label_name": label,
            "predicted_name": pred,
            "probability": prob,
            "value": value,
            "value_text": _value_text(sort_by, value) if sort_by != "index" else "",
        }
        if error is not None:
            card["caption"] = f"#{index} unreadable"
            card["title"] = f"#{index}: {error}"
            return card
        maps = self.report.maps([index], normalized=True)
        card["map"], card["map_h"], card["map_w"] = _levels(maps[0]), int(maps.shape[1]), int(maps.shape[2])
        card["caption"] = f"#{index} {label or '?'} → {pred}"
        if self.comparison is not None and _jsonable(row.get("agree")) is not None:
            a, b = self.comparison.names
            other = self.comparison.b.maps([index], normalized=True)
            card["map_b"], card["map_b_h"], card["map_b_w"] = (
                _levels(other[0]),
                int(other.shape[1]),
                int(other.shape[2]),
            )
            pred_b = _jsonable(row.get(f"predicted_{b}"))
            card["caption"] = f"#{index} {label or '?'} → {a}: {pred} | {b}: {pred_b}"
            card["correct_b"] = _jsonable(row.get(f"correct_{b}"))
        chance = f" ({100 * prob:.1f}%)" if prob is not None else ""
        card["title"] = f"#{index}: label {label or 'unknown'}, predicted {pred}{chance}"
        box = row.get("object_box") if "object_box" in self._df.columns else None
        if isinstance(box, str) and box.startswith("["):
            card["box"] = self._fractions([float(v) for v in box.strip("[]").split(",")])
        return card

    def _on_query(self, change: dict[str, Any]) -> None:
        if change["name"] in ("filters", "sort_by", "descending", "page_size") and self.page != 0:
            self.page = 0  # the observer refreshes
            return
        try:
            self._refresh()
        except Exception as exc:  # shown in the gallery rather than lost in a comm callback
            self.message = f"the gallery could not update: {type(exc).__name__}: {exc}"

    # -- opening an image -------------------------------------------------------------------------------
    def _on_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("event") == "open":
            if "position" in content:  # a point of the scatter: its table row
                position = int(content["position"])
                if 0 <= position < len(self._df):
                    self.open_image(int(self._df["index"].iloc[position]))
                return
            self.open_image(int(content["index"]))
        elif content.get("event") == "hover":
            self._send_thumb(int(content["position"]))
        elif content.get("event") == "lasso":
            try:
                self.select_polygon(content.get("polygon") or [])
            except ValueError as exc:
                self.message = f"lasso ignored: {exc}"
        elif content.get("event") == "test":
            try:
                self.test_finding(int(content["finding"]))
            except Exception as exc:  # shown in the gallery rather than lost in a comm callback
                self.message = f"testing the finding failed: {exc}"

    def _caption(self, index: int, row: Any, note: str = "") -> Any:
        import ipywidgets

        label, pred = _jsonable(row.get("label_name")), _jsonable(row.get("predicted_name"))
        prob = _jsonable(row.get("probability"))
        error = _jsonable(row.get("error"))
        parts = [f"<b>#{index}</b>"]
        if error is not None:
            parts.append(f"unreadable: {html.escape(error)}")
        else:
            chance = f" ({100 * prob:.1f}%)" if prob is not None else ""
            verdict = "✓" if label == pred else "✗"
            parts.append(
                f"label <b>{html.escape(str(label))}</b> → predicted <b>{html.escape(str(pred))}</b>{chance} "
                f"{verdict if label is not None else ''}"
            )
            shares = [
                f"{c} {float(row[c]):.2f}"
                for c in self._df.columns
                if (c.startswith("region_") or c == "object_energy" or c.startswith("hotspot_"))
                and _jsonable(row[c]) is not None
            ]
            if shares:
                parts.append(html.escape(", ".join(shares)))
        if note:
            parts.append(f"<i>{html.escape(note)}</i>")
        return ipywidgets.HTML(f"<div class='cw-audit-detail'>{' · '.join(parts)}</div>")

    def open_image(self, index: int) -> Any:
        """Open dataset item ``index`` below the gallery: the audited input in CamExplorer when the
        model and the dataset are known, else its recorded values. Returns the CamExplorer (or None).

        The explorer gets the exact input the audit explained (the item through the audit's
        transform), the audit's method and layer, the predicted class, the audit's normalisation for
        display; a misclassified image opens comparing the label's map with the prediction's.
        """
        index = int(index)
        if index not in self._position:
            raise KeyError(f"dataset index {index} is not in this audit")
        self.selected = index
        row = self._df.iloc[self._position[index]]
        self.focus = self._focus(index, row)
        self._close_explorer()
        if _jsonable(row["error"]) is not None:
            self._show_detail(self._caption(index, row))
            return None
        if self.model is None:
            self._show_detail(
                self._caption(index, row, "to open it in CamExplorer, pass model= to AuditExplorer")
            )
            return None
        try:
            x = self.report.inputs([index])[0]
        except (ValueError, KeyError) as exc:
            self._show_detail(self._caption(index, row, f"to open it in CamExplorer: {exc}"))
            return None
        import camwidget

        display = self.report.display
        mean, std = display_normalisation(x, display.get("mean"), display.get("std"))
        pred = _jsonable(row.get("predicted"))
        label = _jsonable(row.get("label"))
        names = self.report.class_names if len(self.report.class_names) == self.report.num_classes else None
        kwargs: dict[str, Any] = {
            "method": self.report.method,
            "layer": self.report.layer,
            "class_names": names,
            "mean": mean,
            "std": std,
            "target": pred,
        }
        note = f"the audited input, {'×'.join(str(v) for v in x.shape)}"
        if label is not None and pred is not None and label != pred:
            kwargs.update(compare="class", compare_class=int(label))
            note += "; comparing the prediction's map (A) with the label's (B)"
        try:
            explorer = camwidget.CamExplorer(self.model, x, **kwargs)
        except Exception as exc:  # show the reason in the panel rather than lose it in a comm callback
            self._show_detail(self._caption(index, row, f"CamExplorer could not open it: {exc}"))
            return None
        self.explorer = explorer
        self._show_detail(self._caption(index, row, note), explorer)
        return explorer

    def _focus(self, index: int, row: Any) -> dict[str, Any]:
        """The opened image for the focus panel: its predicted-class map and, when misclassified, its
        true-class map, with their error-understanding confidence paths when recorded."""
        if _jsonable(row.get("error")) is not None:
            return {}
        report = self.report
        label, pred = _jsonable(row.get("label_name")), _jsonable(row.get("predicted_name"))
        predicted = report.maps([index], which="predicted")[0]
        out: dict[str, Any] = {
            "index": index,
            "label_name": label,
            "predicted_name": pred,
            "probability": _jsonable(row.get("probability")),
            "thumb": report.thumbnail(index) or b"",
            "h": int(predicted.shape[0]),
            "w": int(predicted.shape[1]),
            "predicted_map": _levels(predicted),
            "true_map": b"",
            "predicted_path": b"",
            "true_path": b"",
            "kept": [],
        }
        if label is not None and label != pred:
            out["true_map"] = _levels(report.maps([index], which="true")[0])
            curves = report.confidence_paths(index)
            if curves is not None:
                out["kept"] = [round(float(v), 5) for v in curves["kept"]]
                out["true_path"] = curves["true"].astype("<f4").tobytes()
                out["predicted_path"] = curves["predicted"].astype("<f4").tobytes()
        return out

    def _show_detail(self, *children: Any) -> None:
        """Show ``children`` under the gallery; close what they replace (a caption, an explorer), so
        that no live container is left pointing at a closed widget."""
        old = [c for c in self.detail.children if c not in children]
        self.detail.children = children
        for widget in old:
            if widget.comm is not None:  # the explorer is closed already
                widget.close()

    def _close_explorer(self) -> None:
        if getattr(self, "explorer", None) is not None:
            try:
                self.explorer.close()  # stops its background worker
            finally:
                self.explorer = None

    def close(self) -> None:
        """Close the gallery, any CamExplorer it opened and the panel below it."""
        self._close_explorer()
        detail = getattr(self, "detail", None)  # None when the constructor refused its arguments
        if detail is not None:
            self._show_detail()
            detail.close()
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
        super().close()
