"""The notebook widget (:class:`CamExplorer`), its static matplotlib counterpart (:func:`show`) and the
offline export of either (:func:`export_html`).

Modules: ``explorer`` (the widget: traits, observers, publishing), ``session`` (caches, planning and
computing, no widget), ``map_key`` (what a map is the map of, and its codec), ``jobs`` (the background
thread), ``codecs`` (images in, bytes out), ``export`` (static HTML and PNG output), ``figure`` (show).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["CamExplorer", "export_html", "show"]

_WHERE = {"CamExplorer": "explorer", "show": "figure", "export_html": "export"}

if TYPE_CHECKING:  # pragma: no cover
    from camwidget.widget.explorer import CamExplorer
    from camwidget.widget.export import export_html
    from camwidget.widget.figure import show


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"camwidget.widget.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'camwidget.widget' has no attribute {name!r}")
