"""What a map is the map of: :class:`MapKey`, and which keys a :class:`Selection` shows.

The kernel caches maps and curves under a ``MapKey`` and publishes each with its key *encoded* (one short
string); the front end encodes the key it wants from the selection traits with the same codec
(``js/src/map_key.js``) and compares strings, so "is the map on screen the one asked for" is decided in one
way on both sides. ``tests/widget/test_map_key.py`` runs both codecs on the same keys and selections.

Adding a dimension to what a map depends on is a field here, its twin in ``KEY_FIELDS`` in ``map_key.js``,
and a field of :class:`Selection`. The what-if brush's mask is one: :func:`mask_id` names a painted mask
and its fill the same way on both sides (``maskId`` in ``map_key.js``); the smoothing (:data:`SMOOTHINGS`)
and the layers fused with the chosen one are two more.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["COMPARE_MODES", "KEY_FIELDS", "SMOOTHINGS", "MapKey", "Selection", "mask_id"]

COMPARE_MODES = ("off", "method", "class")
SMOOTHINGS = ("none", "aug", "eigen")  # the engine's aug_smooth / eigen_smooth, or neither


@dataclass(frozen=True)
class MapKey:
    """One map: the image, the method, the (canonical) layer, what is explained and the what-if mask.

    Attributes:
        image: index of the image in the explorer, >= 0.
        method: a method name from :data:`camwidget.METHODS`.
        layer: a canonical layer name (:class:`~camwidget.engine.layers.LayerCatalog`).
        target: which of the image's choices is explained, >= 0: a class index (classifiers, multi-label
            heads, segmentation), a detection's index in the image's detections, or 0 for a fixed target
            (:mod:`camwidget.widget.choices`).
        mask: the what-if brush's mask (:func:`mask_id`), "" for the image as it is.
        smoothing: one of :data:`SMOOTHINGS`: "none", "aug" (``aug_smooth=True``) or "eigen"
            (``eigen_smooth=True``).
        extra_layers: canonical names of further layers whose maps are fused with ``layer``'s (the engine's
            ``layer=[layer, *extra_layers]`` with the method's default fusion); () for one layer.
    """

    image: int
    method: str
    layer: str
    target: int
    mask: str = ""
    smoothing: str = "none"
    extra_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_layers", tuple(self.extra_layers))  # a list decodes to a tuple

    @property
    def layer_names(self) -> list[str]:
        """Every layer the map is made of, the chosen one first (what the engine's ``layer=`` gets)."""
        return [self.layer, *self.extra_layers]

    def encode(self) -> str:
        """The key as the front end spells it: a compact JSON array of the fields in order,
        ``[0,"hirescam","features.12",281,"","none",[]]``."""
        values = [list(v) if isinstance(v := getattr(self, name), tuple) else v for name in KEY_FIELDS]
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


def mask_id(bits: bytes, fill: str) -> str:
    """The name of a what-if mask: ``"<fill>:<crc32><adler32>"`` (16 hex digits) of its packed bits, or ""
    when no pixel is painted (the image as it is).

    Args:
        bits: the mask as ``numpy.packbits`` of the (H, W) bool mask, row-major, most significant bit first
            (what the front end sends).
        fill: what painted pixels become: a substrate of :data:`camwidget.metrics.SUBSTRATES`.
    """
    data = bytes(bits)
    if not any(data):
        return ""
    return f"{fill}:{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


@dataclass(frozen=True)
class Selection:
    """What the user has chosen in the explorer (the selection traits, as one value).

    Attributes:
        image: image index. method, layer: as in :class:`MapKey`. target: the class shown, -1 while the
            image's prediction is not known yet.
        compare: "off", "method" (a second method, same class) or "class" (a second class, same method).
        compare_method, compare_target: the second method / class.
        mask: the what-if mask (:func:`mask_id`), "" for none; both slots show the masked image.
        smoothing, extra_layers: as in :class:`MapKey`; both slots are smoothed and fused alike. The keys
            list each further layer once and leave out ``layer`` itself.
    """

    image: int
    method: str
    layer: str
    target: int
    compare: str = "off"
    compare_method: str = ""
    compare_target: int = -1
    mask: str = ""
    smoothing: str = "none"
    extra_layers: tuple[str, ...] = ()

    def keys(self) -> tuple[MapKey | None, ...]:
        """The key each slot shows: slot 0 always, slot 1 when comparing; None while the class is unknown."""
        # each further layer once, and not the chosen layer itself (it may have become the chosen one)
        extra = tuple(name for name in dict.fromkeys(self.extra_layers) if name != self.layer)

        def key(method: str, target: int) -> MapKey | None:
            if target < 0:
                return None
            return MapKey(self.image, method, self.layer, target, self.mask, self.smoothing, extra)

        first = key(self.method, self.target)
        if self.compare == "method":
            return (first, key(self.compare_method, self.target))
        if self.compare == "class":
            return (first, key(self.method, self.compare_target))
        return (first,)
