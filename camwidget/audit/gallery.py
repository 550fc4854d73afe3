"""``AuditExplorer``: browse an audit in a notebook -- thumbnails with heatmaps, sort, filter, open.

The kernel holds the table (:meth:`AuditReport.to_dataframe`) and does the sorting, filtering and
paging; the browser (``gallery.js``, plain DOM, JupyterLab theme variables) draws one page of cards and
the per-class mean maps, and sends the user's choices back as trait changes. Clicking a card opens that
image in :class:`camwidget.CamExplorer` below the gallery (when a model and the dataset are known).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from camwidget.audit.report import AuditReport

__all__ = ["FILTER_OPS", "AuditExplorer"]

_HERE = Path(__file__).parent
FILTER_OPS = ("<", "<=", ">", ">=", "==", "!=", "contains", "is missing", "not missing")
"""Operators the filter bar offers: comparisons (numbers, text, yes/no), substring, missing values."""


def _levels(m: np.ndarray) -> str:
    """(h, w) map -> base64 of uint8 levels, min-max normalised (all zeros for a flat map)."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float32))
    lo, hi = float(m.min()) if m.size else 0.0, float(m.max()) if m.size else 0.0
    scaled = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return base64.b64encode(np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8).tobytes()).decode()


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


class AuditExplorer(anywidget.AnyWidget):
    """A gallery of an audit's images with their heatmaps, sortable and filterable by any column.

    Shows the shortcuts the report found, a mean map per class (click one to filter the gallery to that
    class), sort and filter controls over every recorded column (``probability``, ``correct``,
    ``object_energy``, ``region_<name>``, ...), and one page of thumbnails with the map laid over them
    (object boxes outlined). Clicking a thumbnail opens the image in :class:`camwidget.CamExplorer`
    below the gallery.

    Args:
        report: an :class:`AuditReport` (from :func:`camwidget.audit` or :meth:`AuditReport.load`).
        model: the audited model, needed to open images in CamExplorer. Default None (the click then
            shows the image's recorded values).
        dataset: the audited dataset, to open full-size images; default the report's (set when the
            report came from ``audit()``, or for folder audits).
        page_size: thumbnails per page. Default 48.
        thumb_px: thumbnail width in pixels on screen. Default 96.
        class_by: mean maps per "predicted" (default) or "label" class.

    Attributes:
        detail: the ``ipywidgets.VBox`` below the gallery where opened images appear.
        explorer: the last CamExplorer opened, or None.

    Programmatic use: set ``sort_by``, ``descending``, ``filters`` (a list of ``{"column", "op",
    "value"}`` dicts with ``op`` in :data:`FILTER_OPS`) and ``page``; :meth:`rows` returns the filtered,
    sorted table; :meth:`open_image` opens an image by dataset index.
    """

    _esm = t.Unicode("").tag(sync=True)
    _css = t.Unicode("").tag(sync=True)

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
    shortcuts = t.List(t.Dict()).tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    show_maps = t.Bool(True).tag(sync=True)
    show_boxes = t.Bool(True).tag(sync=True)
    thumb_px = t.Int(96).tag(sync=True)
    selected = t.Int(-1).tag(sync=True)
    message = t.Unicode("").tag(sync=True)

    def __init__(
        self,
        report: AuditReport,
        model: Any = None,
        *,
        dataset: Any = None,
        page_size: int = 48,
        thumb_px: int = 96,
        class_by: str = "predicted",
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

        self.report = report
        self.model = model
        self.dataset = dataset if dataset is not None else report.dataset
        self.explorer: Any = None
        self.detail = ipywidgets.VBox()
        self._df = report.to_dataframe().reset_index()  # "index" (the dataset index) becomes a column
        self._position = {int(i): p for p, i in enumerate(self._df["index"])}
        self._order = np.arange(len(self._df))
        super().__init__()
        with self.hold_sync():
            self._esm = (_HERE / "gallery.js").read_text(encoding="utf-8")
            self._css = (_HERE / "gallery.css").read_text(encoding="utf-8")
            self.page_size = page_size
            self.thumb_px = int(thumb_px)
            self.class_by = class_by
            self.n_rows = len(self._df)
            self.title = (
                f"Audit: {len(self._df)} images, method {report.method} at layer {report.layer!r}"
                + (
                    f", {int(self._df['error'].notna().sum())} unreadable"
                    if self._df["error"].notna().any()
                    else ""
                )
            )
            self.columns = [{"name": c, "kind": self._kind(c)} for c in self._df.columns]
            self.shortcuts = [
                {
                    k: _jsonable(v) if not isinstance(v, (list, tuple)) else list(v)
                    for k, v in s.__dict__.items()
                }
                for s in report.shortcuts()[:5]
            ]
            self._update_class_maps()
            self._refresh()
        self.observe(self._on_query, names=["sort_by", "descending", "filters", "page", "page_size"])
        self.observe(lambda _: self._update_class_maps(), names=["class_by"])
        self.on_msg(self._on_message)

    # -- display: the gallery with the detail panel under it ----------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        import ipywidgets

        self._container = getattr(self, "_container", None) or ipywidgets.VBox([self, self.detail])
        return self._container._repr_mimebundle_(**kwargs)

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
            target = text in ("true", "yes", "1")
            values = series.astype("float64").to_numpy()
            target = float(target)
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

    def _card(self, position: int) -> dict[str, Any]:
        row = self._df.iloc[position]
        index = int(row["index"])
        thumb = self.report.thumbnail(index)
        maps = self.report.maps([index], normalized=True)
        h, w = maps.shape[1:]
        label = row.get("label_name")
        pred = row.get("predicted_name")
        error = _jsonable(row.get("error"))
        card: dict[str, Any] = {
            "index": index,
            "thumb": "data:image/jpeg;base64," + base64.b64encode(thumb).decode() if thumb else None,
            "map": _levels(maps[0]) if error is None else "",
            "map_h": int(h),
            "map_w": int(w),
            "correct": _jsonable(row.get("correct")),
            "error": error,
            "value": _jsonable(row.get(self.sort_by)) if self.sort_by not in ("index",) else None,
        }
        if error is not None:
            card["caption"] = f"#{index} unreadable"
            card["title"] = f"#{index}: {error}"
        else:
            prob = row.get("probability")
            card["caption"] = f"#{index} {pred} {prob:.0%}" if prob == prob else f"#{index} {pred}"
            card["title"] = f"#{index}: label {label}, predicted {pred} ({prob:.1%})"
        box = row.get("object_box") if "object_box" in self._df.columns else None
        size = self.report.image_size
        if isinstance(box, str) and box.startswith("[") and size:
            x0, y0, x1, y1 = (float(v) for v in box.strip("[]").split(","))
            card["box"] = [x0 / size[1], y0 / size[0], x1 / size[1], y1 / size[0]]
        return card

    def _update_class_maps(self) -> None:
        maps = self.report.class_mean_maps(by=self.class_by)
        counts = self._df[f"{self.class_by}_name"].value_counts()
        self.class_maps = [
            {
                "name": name,
                "count": int(counts.get(name, 0)),
                "h": int(m.shape[0]),
                "w": int(m.shape[1]),
                "map": _levels(m),
            }
            for name, m in maps.items()
        ]

    def _on_query(self, change: dict[str, Any]) -> None:
        if change["name"] in ("filters", "sort_by", "descending", "page_size") and self.page != 0:
            self.page = 0  # the observer refreshes
            return
        self._refresh()

    # -- opening an image -------------------------------------------------------------------------------
    def _on_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "open":
            self.open_image(int(content["index"]))

    def open_image(self, index: int) -> Any:
        """Open dataset item ``index`` below the gallery: in CamExplorer when the model and the image
        are available, else as its recorded values. Returns the CamExplorer (or None)."""
        import ipywidgets

        df = self._df
        if index not in self._position:
            raise KeyError(f"dataset index {index} is not in this audit")
        self.selected = int(index)
        row = df.iloc[self._position[index]]
        facts = ", ".join(
            f"{k}={_jsonable(row[k]) if not isinstance(_jsonable(row[k]), float) else f'{row[k]:.3f}'}"
            for k in df.columns
            if k != "index" and _jsonable(row[k]) is not None
        )
        info = ipywidgets.HTML(f"<b>#{index}</b>: {html.escape(facts)}")
        self._close_explorer()
        if _jsonable(row["error"]) is not None:
            self.detail.children = [info]
            return None
        image, why = self._image(index)
        if self.model is None or image is None:
            hint = "pass model= to AuditExplorer" if self.model is None else why
            note = ipywidgets.HTML(f"<i>To open it in CamExplorer: {html.escape(hint)}.</i>")
            self.detail.children = [info, note]
            return None
        import camwidget

        kwargs: dict[str, Any] = {
            "method": self.report.method,
            "layer": self.report.layer,
            "class_names": self.report.class_names if len(self.report.class_names) else None,
        }
        display = self.report.display
        if display.get("mean") and display.get("std"):
            kwargs["mean"], kwargs["std"] = display["mean"], display["std"]
        try:
            self.explorer = camwidget.CamExplorer(self.model, image, **kwargs)
        except Exception as exc:  # show the reason in the panel rather than lose it in a comm callback
            note = ipywidgets.HTML(f"<i>CamExplorer could not open it: {html.escape(str(exc))}</i>")
            self.detail.children = [info, note]
            return None
        self.detail.children = [info, self.explorer]
        return self.explorer

    def _close_explorer(self) -> None:
        if getattr(self, "explorer", None) is not None:
            try:
                self.explorer.close()  # stops its background worker
            finally:
                self.explorer = None

    def close(self) -> None:
        """Close the gallery and any CamExplorer it opened."""
        self._close_explorer()
        super().close()

    def _image(self, index: int) -> tuple[Any, str]:
        """The model input of item ``index`` (a (3, H, W) tensor) and, when missing, why."""
        dataset = self.dataset
        if dataset is None:
            source = self.report.settings.get("dataset", {})
            if source.get("kind") == "folder" and Path(source.get("root", "")).is_dir():
                from torchvision.datasets import ImageFolder

                from camwidget.audit.dataset import default_folder_transform

                dataset = ImageFolder(source["root"], transform=default_folder_transform())
                self.dataset = dataset
            else:
                return None, "pass dataset= (the audited dataset) to AuditExplorer"
        try:
            item = dataset[index]
        except Exception as exc:
            return None, f"reading item {index} failed ({exc})"
        image = item[0] if isinstance(item, (tuple, list)) else item
        return image, ""
