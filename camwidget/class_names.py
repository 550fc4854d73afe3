"""A model's class names: index <-> name, and finding a class by (part of) its name.

:class:`ClassNames` is the one owner of a class's name: the widget's selector and captions, the static
figure and the ``%cam`` magic all ask it, so a class is found and spelled the same way everywhere.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterator, Sequence

from camwidget.defaults import class_names_for

__all__ = ["ClassNames"]


class ClassNames(Sequence[str]):
    """The names of a model's K output classes, in index order.

    Args:
        names: K names; default (None) ImageNet's when K == 1000, else ``"class 0"``, ``"class 1"``, ...
        num_classes: K, the model's output count (checked against ``names``).

    Raises:
        ValueError: ``names`` does not have ``num_classes`` entries.
    """

    def __init__(self, names: Sequence[str] | None, num_classes: int) -> None:
        if names is None:
            self._names = class_names_for(num_classes)
        else:
            self._names = [str(n) for n in names]
            if len(self._names) != num_classes:
                raise ValueError(
                    f"class_names has {len(self._names)} entries but the model outputs {num_classes} classes"
                )

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._names[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __repr__(self) -> str:
        return (
            f"ClassNames({len(self)} classes: {', '.join(self._names[:3])}{', ...' if len(self) > 3 else ''})"
        )

    def index(self, target: int | str) -> int:  # type: ignore[override]
        """The class index of ``target``: an index in 0..K-1, or a class name (exact, then case-insensitive).

        Raises:
            TypeError: ``target`` is neither an int nor a str (a bool is refused).
            ValueError: an index out of range, or no class of that name (the message suggests the classes
                whose names contain it, or close spellings).
        """
        if isinstance(target, bool):
            raise TypeError("target must be a class index or a class name, not a bool")
        if isinstance(target, numbers.Integral):
            if not 0 <= int(target) < len(self):
                raise ValueError(f"target {target} is out of range: the model has {len(self)} classes")
            return int(target)
        if isinstance(target, str):
            if target in self._names:
                return self._names.index(target)
            lowered = [n.lower() for n in self._names]
            if target.lower() in lowered:
                return lowered.index(target.lower())
            contains = [n for n in self._names if target.lower() in n.lower()]
            close = contains[:5] or difflib.get_close_matches(target, self._names, n=5)
            hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"no class is called {target!r}.{hint} Pass a class index or an exact name.")
        raise TypeError(f"target must be a class index or a class name, got {type(target).__name__}")
