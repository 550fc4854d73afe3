"""Turning user images into model inputs and display pixels, and arrays into the widget's byte traits.

Everything the browser receives is raw little-endian bytes plus a shape: the display image as
``uint8`` RGB (H, W, 3), heatmaps as ``uint8`` levels (H, W) (0 = no relevance, 255 = the maximum),
the insertion/deletion pixel order as ``uint16`` step numbers (H, W), a segmentation's predicted classes as
``uint8`` (H, W). A video or volume (T frames) is the same with a leading T: (T, H, W, 3), (T, H, W).
What the browser sends back: the what-if brush's mask as packed bits (:func:`unpack_mask`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD, imagenet_transform
from camwidget.metrics.insertion_deletion import saliency_ranks

__all__ = [
    "blend",
    "colorize",
    "encode_levels",
    "load_images",
    "png_bytes",
    "step_order",
    "thumbnails",
    "to_display",
    "unpack_mask",
]

Preprocess = Callable[[Image.Image], torch.Tensor]


def _describe(obj: Any) -> str:
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return f"{type(obj).__name__} of shape {tuple(obj.shape)} and dtype {obj.dtype}"
    return type(obj).__name__


def _array_to_pil(arr: np.ndarray, where: str) -> Image.Image:
    """(H, W), (H, W, 1|3|4) uint8 or float array -> RGB PIL image."""
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{where}: got a channels-first array of shape {arr.shape}; numpy images must be "
            "(H, W, 3) -- transpose it with arr.transpose(1, 2, 0), or pass a preprocessed torch tensor"
        )
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ValueError(f"{where}: expected an (H, W, 3) image array, got shape {arr.shape}")
    if min(arr.shape[:2]) < 1:
        raise ValueError(f"{where}: the image array is empty (shape {arr.shape})")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: the image array contains NaN or infinite values")
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 if hi <= 1.0 + 1e-6 else 1.0  # floats in [0, 1], or already 0..255
        arr = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.dtype != np.uint8:
            if arr.min() < 0 or arr.max() > 255:
                raise ValueError(
                    f"{where}: integer pixel values must lie in 0..255, got {arr.min()}..{arr.max()}"
                )
            arr = arr.astype(np.uint8)
    else:
        raise TypeError(f"{where}: unsupported image dtype {arr.dtype}; use uint8 or float")
    image = Image.fromarray(np.ascontiguousarray(arr))
    return image.convert("RGB")


def _open(path: str | os.PathLike[str], where: str) -> Image.Image:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{where}: no such image file: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:  # PIL raises several types for non-images
        raise ValueError(f"{where}: {p} is not an image PIL can read ({exc})") from exc


def _items(images: Any) -> list[Any]:
    if isinstance(images, torch.Tensor):
        if images.ndim in (4, 5):  # a batch of images (N, 3, H, W) or of clips (N, 3, T, H, W)
            return list(images)
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    if isinstance(images, (Image.Image, str, os.PathLike)):
        return [images]
    if isinstance(images, Sequence) and not isinstance(images, (bytes, bytearray)):
        items = list(images)
        if not items:
            raise ValueError("images is empty: pass at least one image")
        return items
    raise TypeError(
        f"images must be a PIL image, a file path, a numpy array, a (N, 3, H, W) tensor or a list of "
        f"those; got {_describe(images)}"
    )


def load_images(
    images: Any,
    preprocess: Preprocess | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, np.ndarray]:
    """Turn the ``images`` a user passed into model inputs and matching display pixels.

    Args:
        images: a PIL image, a file path, an (H, W, 3) uint8/float numpy array, a (3, H, W) or
            (N, 3, H, W) float tensor that is *already preprocessed*, or a list of any of these; or video /
            volumes, preprocessed: a (N, 3, T, H, W) tensor or a list of (3, T, H, W) tensors.
        preprocess: PIL image -> (3, H, W) float tensor; default
            :func:`camwidget.defaults.imagenet_transform` with ``mean``/``std``.
        mean, std: the normalisation inside ``preprocess``, undone for display.

    Returns:
        ``(inputs, display)``: (N, 3, H, W) float32 CPU tensor and (N, H, W, 3) uint8 array, where the
        display image is the un-normalised model input, so heatmaps align with it pixel for pixel; for
        clips (N, 3, T, H, W) and (N, T, H, W, 3).

    Raises:
        TypeError, ValueError, FileNotFoundError: with what was wrong with which image.
    """
    items = _items(images)
    prep = preprocess or imagenet_transform(mean, std)
    tensors = []
    for i, item in enumerate(items):
        where = f"image {i}" if len(items) > 1 else "image"
        if isinstance(item, torch.Tensor):
            x = item.detach()
            if x.ndim not in (3, 4) or x.shape[0] != 3:
                raise ValueError(
                    f"{where}: a tensor image must be preprocessed (3, H, W) (or a batch (N, 3, H, W)); a "
                    f"clip (3, T, H, W) (or a batch (N, 3, T, H, W)); got shape {tuple(x.shape)}"
                )
            if not x.is_floating_point():
                raise TypeError(
                    f"{where}: a tensor image must be a preprocessed float tensor, got {x.dtype}; pass "
                    "raw pixels as a PIL image or numpy array instead"
                )
        else:
            if isinstance(item, Image.Image):
                pil = item.convert("RGB")
            elif isinstance(item, (str, os.PathLike)):
                pil = _open(item, where)
            elif isinstance(item, np.ndarray):
                pil = _array_to_pil(item, where)
            else:
                raise TypeError(
                    f"{where}: expected a PIL image, a file path, a numpy array or a tensor, got "
                    f"{_describe(item)}"
                )
            try:
                x = prep(pil)
            except Exception as exc:
                raise ValueError(f"{where}: preprocess failed: {exc}") from exc
            if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
                raise ValueError(f"{where}: preprocess must return a (3, H, W) tensor, got {_describe(x)}")
        x = x.float().cpu()
        if not torch.isfinite(x).all():
            raise ValueError(f"{where}: the input contains NaN or infinite values")
        if min(x.shape[-2:]) < 2:
            raise ValueError(f"{where}: the input is too small ({tuple(x.shape)})")
        tensors.append(x)
    sizes = {tuple(t.shape) for t in tensors}
    if len(sizes) > 1:
        raise ValueError(
            f"the images have different sizes after preprocessing ({sorted(sizes)}); pass a "
            "preprocess that resizes every image to one size"
        )
    inputs = torch.stack(tensors).contiguous()
    display = np.stack([to_display(t, mean, std) for t in tensors])
    return inputs, display


def to_display(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Un-normalise a (3, H, W) model input into an (H, W, 3) uint8 RGB image; a clip (3, T, H, W) into
    (T, H, W, 3)."""
    shape = (-1, *[1] * (x.ndim - 1))
    m = torch.as_tensor(tuple(mean), dtype=torch.float32).view(shape)
    s = torch.as_tensor(tuple(std), dtype=torch.float32).view(shape)
    rgb = (x.float().cpu() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)
    return rgb.movedim(0, -1).contiguous().numpy()


def encode_levels(cam: torch.Tensor) -> bytes:
    """(H, W) map in [0, 1] -> H*W uint8 levels, 0 = no relevance, 255 = the maximum (NaN -> 0).

    This is the only form a map reaches the browser in (the colormap is applied there).
    """
    levels = torch.nan_to_num(cam.detach().float(), nan=0.0, posinf=1.0, neginf=0.0)
    return levels.mul(255).round().clamp(0, 255).to(torch.uint8).cpu().numpy().tobytes()


def step_order(cam: torch.Tensor, step: int) -> bytes:
    """For each pixel of an (H, W) map, the insertion/deletion step at which it is perturbed (1..n).

    The pixel of saliency rank r (:func:`camwidget.metrics.insertion_deletion.saliency_ranks`, the order
    the metric perturbs pixels in) is perturbed from step r // ``step`` + 1 on. Returned as H*W
    little-endian uint16 (at most 65535 steps).
    """
    step = max(1, int(step))
    ranks = saliency_ranks(torch.nan_to_num(cam.detach().float(), nan=0.0)[None])[0]
    steps = (ranks // step + 1).flatten()
    if int(steps.max()) > 65535:
        raise ValueError(f"too many insertion/deletion steps ({int(steps.max())}) for uint16 step numbers")
    return steps.cpu().numpy().astype("<u2").tobytes()


def unpack_mask(bits: bytes, height: int, width: int) -> np.ndarray:
    """The what-if brush's mask from the bytes the browser sends: ``numpy.packbits`` of the (H, W) bool mask
    (row-major, most significant bit first) -> (H, W) bool.

    Raises:
        ValueError: ``bits`` is not ceil(H·W / 8) bytes long.
    """
    n = height * width
    if len(bits) != (n + 7) // 8:
        raise ValueError(
            f"a mask of {height}x{width} pixels is {(n + 7) // 8} bytes of packed bits; got {len(bits)}"
        )
    flat = np.unpackbits(np.frombuffer(bytes(bits), dtype=np.uint8), count=n)
    return flat.reshape(height, width).astype(bool)


def thumbnails(display: np.ndarray, size: int = 64) -> bytes:
    """(N, H, W, 3) uint8 -> N*size*size*3 bytes of centre-cropped square thumbnails."""
    out = []
    for rgb in display:
        im = Image.fromarray(rgb)
        side = min(im.size)
        left = (im.width - side) // 2
        top = (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(im, dtype=np.uint8))
    return np.stack(out).tobytes()


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def colorize(levels: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """(H, W) uint8 levels -> (H, W, 3) uint8 colours with a matplotlib colormap."""
    import matplotlib

    lut = (matplotlib.colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[levels]


def blend(rgb: np.ndarray, levels: np.ndarray, colormap: str = "viridis", alpha: float = 0.5) -> np.ndarray:
    """Overlay a colourised heatmap on an image, like the browser does."""
    color = colorize(levels, colormap).astype(np.float32)
    out = (1 - alpha) * rgb.astype(np.float32) + alpha * color
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
