"""What a map is the map of: :class:`MapKey`, and which keys a :class:`Selection` shows.

The kernel caches maps and curves under a ``MapKey`` and publishes each with its key *encoded* (one short
string); the front end encodes the key it wants from the selection traits with the same codec
(``js/src/map_key.js``) and compares strings, so "is the map on screen the one asked for" is decided in one
way on both sides. ``tests/widget/test_map_key.py`` runs both codecs on the same keys and selections.

Adding a dimension to what a map depends on (a video frame, a smoothing option, a what-if mask's id) is a
field here, its twin in ``KEY_FIELDS`` in ``map_key.js``, and a field of :class:`Selection`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["COMPARE_MODES", "KEY_FIELDS", "MapKey", "Selection"]

COMPARE_MODES = ("off", "method", "class")


@dataclass(frozen=True)
class MapKey:
    """One map: the image, the method, the (canonical) layer and the class explained.

    Attributes:
        image: index of the image in the explorer, >= 0.
        method: a method name from :data:`camwidget.METHODS`.
        layer: a canonical layer name (:class:`~camwidget.engine.layers.LayerCatalog`).
        target: the class index explained, >= 0.
    """

    image: int
    method: str
    layer: str
    target: int

    def encode(self) -> str:
        """The key as the front end spells it: a compact JSON array of the fields in order,
        ``[0,"hirescam","features.12",281]``."""
        values = [getattr(self, name) for name in KEY_FIELDS]
        return json.dumps(values, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, text: str) -> MapKey:
        """The inverse of :meth:`encode`.

        Raises:
            ValueError: ``text`` is not an encoded key.
        """
        try:
            values = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an encoded map key: {text!r}") from exc
        if not isinstance(values, list) or len(values) != len(KEY_FIELDS):
            raise ValueError(f"an encoded map key is a list of {len(KEY_FIELDS)} values; got {text!r}")
        return cls(**dict(zip(KEY_FIELDS, values, strict=True)))

    def replace(self, **changes: Any) -> MapKey:
        """This key with some fields changed."""
        return dataclasses.replace(self, **changes)


KEY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MapKey))


@dataclass(frozen=True)
class Selection:
    """What the user has chosen in the explorer (the selection traits, as one value).

    Attributes:
        image: image index. method, layer: as in :class:`MapKey`. target: the class shown, -1 while the
            image's prediction is not known yet.
        compare: "off", "method" (a second method, same class) or "class" (a second class, same method).
        compare_method, compare_target: the second method / class.
    """

    image: int
    method: str
    layer: str
    target: int
    compare: str = "off"
    compare_method: str = ""
    compare_target: int = -1

    def keys(self) -> tuple[MapKey | None, ...]:
        """The key each slot shows: slot 0 always, slot 1 when comparing; None while the class is unknown."""
        first = MapKey(self.image, self.method, self.layer, self.target) if self.target >= 0 else None
        if self.compare == "method":
            return (first, first.replace(method=self.compare_method) if first is not None else None)
        if self.compare == "class":
            second = (
                MapKey(self.image, self.method, self.layer, self.compare_target)
                if self.compare_target >= 0
                else None
            )
            return (first, second)
        return (first,)
