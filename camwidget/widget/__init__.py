"""The notebook widget (:class:`CamExplorer`) and its static matplotlib counterpart (:func:`show`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CamExplorer", "show"]

if TYPE_CHECKING:  # pragma: no cover
    from camwidget.widget.explorer import CamExplorer
    from camwidget.widget.figure import show


def __getattr__(name: str) -> Any:
    if name == "CamExplorer":
        from camwidget.widget.explorer import CamExplorer

        return CamExplorer
    if name == "show":
        from camwidget.widget.figure import show

        return show
    raise AttributeError(f"module 'camwidget.widget' has no attribute {name!r}")
