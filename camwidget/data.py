"""Real sample photos that ship inside installed packages (no download).

=================  =========================================================  =================
name               what / where it comes from                                 size (W x H)
=================  =========================================================  =================
``chelsea``        a tabby cat -- ``skimage.data.chelsea()``                  451 x 300
``coffee``         a cup of espresso -- ``skimage.data.coffee()``             600 x 400
``astronaut``      Eileen Collins -- ``skimage.data.astronaut()``             512 x 512
``rocket``         a SpaceX rocket on its pad -- ``skimage.data.rocket()``    640 x 427
``china``          a Chinese temple -- ``sklearn`` ``china.jpg``              640 x 427
``flower``         a flower close-up -- ``sklearn`` ``flower.jpg``            640 x 427
``grace_hopper``   Grace Hopper -- ``matplotlib`` sample data                 512 x 600
=================  =========================================================  =================

scikit-image and scikit-learn are optional (``pip install 'camwidget[demo]'``); matplotlib is a core
dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

__all__ = ["SAMPLE_LABELS", "SAMPLE_NAMES", "sample_image", "sample_images"]

_DEMO_HINT = "Install the optional demo extra with: pip install 'camwidget[demo]'"


def _skimage(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        try:
            import skimage.data
        except ImportError as exc:
            raise ImportError(f"sample image {name!r} needs scikit-image. {_DEMO_HINT}") from exc
        return Image.fromarray(np.asarray(getattr(skimage.data, name)()))

    return load


def _sklearn(name: str, filename: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as exc:
            raise ImportError(f"sample image {name!r} needs scikit-learn. {_DEMO_HINT}") from exc
        return Image.fromarray(np.asarray(load_sample_image(filename)))

    return load


def _grace_hopper() -> Image.Image:
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as image:
        image.load()
        return image.copy()


_LOADERS: dict[str, Callable[[], Image.Image]] = {
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "astronaut": _skimage("astronaut"),
    "rocket": _skimage("rocket"),
    "china": _sklearn("china", "china.jpg"),
    "flower": _sklearn("flower", "flower.jpg"),
    "grace_hopper": _grace_hopper,
}

#: Names accepted by :func:`sample_image` / :func:`sample_images`, in their default order.
SAMPLE_NAMES: tuple[str, ...] = tuple(_LOADERS)


#: The ImageNet class (index into the 1000 ImageNet-1k classes) each sample shows, for error-understanding
#: exercises; None where ImageNet has no class for it (there is no "astronaut" or "person" class). Our
#: judgement, stated so it can be disagreed with: Chelsea is a tabby (281, not "tiger cat"); the rocket is
#: a missile-like launcher (657 "missile"); the temple is a palace (698); the flower is daisy-like (985,
#: the closest ImageNet flower class); Grace Hopper wears a navy uniform (652 "military uniform").
SAMPLE_LABELS: dict[str, int | None] = {
    "chelsea": 281,
    "coffee": 967,
    "astronaut": None,
    "rocket": 657,
    "china": 698,
    "flower": 985,
    "grace_hopper": 652,
}


def sample_image(name: str) -> Image.Image:
    """One sample photo as an RGB :class:`PIL.Image.Image` (8 bits per channel, original size).

    Args:
        name: one of :data:`SAMPLE_NAMES`.

    Raises:
        ValueError: ``name`` is not a known sample; the message lists the available names.
        ImportError: the package holding that photo is missing (``pip install 'camwidget[demo]'``).
    """
    loader = _LOADERS.get(name) if isinstance(name, str) else None
    if loader is None:
        raise ValueError(f"unknown sample image {name!r}; available: {', '.join(SAMPLE_NAMES)}")
    return loader().convert("RGB")


def sample_images(names: Iterable[str] | None = None) -> dict[str, Image.Image]:
    """Several sample photos, ``{name: RGB PIL image}``, in the order asked for.

    Args:
        names: which photos (each one of :data:`SAMPLE_NAMES`); ``None`` (default) means all of them.
            A single string is treated as one name.

    Raises:
        ValueError: an unknown name (all names are checked before anything is loaded).
        ImportError: a package holding a requested photo is missing (``pip install 'camwidget[demo]'``).
    """
    if names is None:
        wanted = list(SAMPLE_NAMES)
    elif isinstance(names, str):
        wanted = [names]
    else:
        wanted = list(names)
    unknown = [n for n in wanted if n not in _LOADERS]
    if unknown:
        raise ValueError(
            f"unknown sample image name(s) {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(SAMPLE_NAMES)}"
        )
    return {n: sample_image(n) for n in wanted}
