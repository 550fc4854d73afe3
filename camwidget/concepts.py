"""Concepts a layer has learned, found by Deep Feature Factorization (Collins et al., ECCV 2018).

The layer's activations over all images form a non-negative matrix V (C channels × every position of every
image), after subtracting each channel's minimum (its offset; 0 after a ReLU). Non-negative matrix
factorisation V ≈ W·H (Frobenius loss, Lee & Seung's multiplicative updates from a seeded random start, as
scikit-learn's ``NMF(init="random")`` starts) gives ``n`` concepts: W's columns are the concepts' directions
in the layer's channel space, H's rows say how much of each concept every position holds, which reshaped per
image are the concept maps. pytorch-grad-cam's ``DeepFeatureFactorization`` computes the same factorisation.

Which classes a concept drives: where the layer feeds global average pooling and one linear classifier
(checked: the classifier applied to the pooled activations must reproduce the model's logits, as CAM needs),
each concept's direction (W's column plus the offsets, pytorch-grad-cam's ``concepts``) is read by that
classifier; the softmax over classes ranks them. For any other layer there is no faithful readout from a
channel direction to the classes, so :attr:`Concepts.class_scores` is None and :attr:`Concepts.classes` is
empty; explain a layer that feeds the classifier (the last block of a ResNet, ``features`` of a DenseNet
before its pooling) to get them.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camwidget.engine.batching import model_device
from camwidget.engine.hooks import LayerCapture, preserved_state
from camwidget.engine.layers import resolve_layer, split_entry
from camwidget.engine.normalize import minmax, upsample
from camwidget.engine.validation import check_inputs, check_model, running_model
from camwidget.methods.cam import gap_linear_head
from camwidget.targets import as_logits

__all__ = ["Concepts", "concepts", "nmf"]


@dataclass
class Concepts:
    """What :func:`concepts` found.

    Attributes:
        maps: (N, n, *S) float32 in [0, 1]: each concept's map on each image, upsampled to the input and
            min-max scaled per image and concept (all zero where the concept is absent).
        feature_maps: (N, n, *s) float32 ≥ 0: the factor H at the layer's resolution, unnormalised
            (comparable across images and concepts).
        embeddings: (n, C) float32: each concept's direction in the layer's channel space (W's column plus
            the per-channel offsets).
        class_scores: (n, K) float32 softmax probabilities of the linear head on each embedding, or None
            when the layer does not feed global average pooling and a linear classifier.
        classes: per concept, its ``top_k`` classes by ``class_scores`` (empty lists without a head).
        logit_weights: (n, K) float32: how much each class's logit rises per unit of the concept's mean
            presence on an image (``feature_maps`` averaged over positions), the linear head applied to the
            concept's direction without the offsets; None without a head. Per image i and class k, the
            logit is Σ_j logit_weights[j, k]·mean(feature_maps[i, j]) plus the head on the offsets, its
            bias, and the head on the factorisation's residual: the first sum splits a prediction among
            the concepts (:meth:`logit_parts`).
        layer: the layer factorised.
        error: ‖V − WH‖ / ‖V‖, the relative reconstruction error of the factorisation.
    """

    maps: torch.Tensor
    feature_maps: torch.Tensor
    embeddings: torch.Tensor
    class_scores: torch.Tensor | None
    classes: list[list[int]] = field(default_factory=list)
    layer: str = ""
    error: float = float("nan")
    logit_weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def logit_parts(self, classes: torch.Tensor | list[int]) -> torch.Tensor:
        """(N, n) float32: each concept's part of the logit of ``classes[i]`` (N class indices) on image i,
        ``logit_weights[j, classes[i]]·mean(feature_maps[i, j])``, in logit units.

        Raises:
            ValueError: the layer feeds no global-average-pooling + linear head (no ``logit_weights``), or
                ``classes`` does not hold one class index per image.
        """
        if self.logit_weights is None:
            raise ValueError(
                f"the concepts of layer {self.layer!r} have no readout to the classes: factorise a layer "
                "that feeds global average pooling and a linear classifier"
            )
        classes = torch.as_tensor(classes, dtype=torch.long, device=self.logit_weights.device).flatten()
        count = self.feature_maps.shape[0]
        if classes.numel() != count:
            raise ValueError(f"give one class index per image ({count}); got {classes.numel()}")
        presence = self.feature_maps.flatten(2).mean(dim=2).to(self.logit_weights.device)  # (N, n)
        return presence * self.logit_weights.T[classes]


def nmf(
    v: torch.Tensor, n: int, *, iterations: int = 500, tol: float = 1e-6, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative matrix factorisation V ≈ W·H of a (C, M) matrix V ≥ 0 into W (C, n) and H (n, M), both
    ≥ 0, minimising ‖V − WH‖_F by multiplicative updates (Lee & Seung 2001).

    Starts from |N(0, 1)|·√(mean(V)/n) drawn from a CPU generator seeded with ``seed`` (scikit-learn's
    ``init="random"``); stops after ``iterations`` updates or when the relative error improves by less than
    ``tol`` over 10 updates. Computes in float64 (float32 where the device has no float64).
    """
    if v.ndim != 2 or bool((v < 0).any()):
        raise ValueError("nmf needs a 2-D matrix with no negative entry")
    dtype = torch.float32 if v.device.type == "mps" else torch.float64
    v = v.to(dtype)
    c, m = v.shape
    generator = torch.Generator().manual_seed(seed)
    scale = float(torch.sqrt(v.mean() / n)) if float(v.mean()) > 0 else 1.0
    w = (torch.randn(c, n, generator=generator, dtype=torch.float64).abs() * scale).to(v.device, dtype)
    h = (torch.randn(n, m, generator=generator, dtype=torch.float64).abs() * scale).to(v.device, dtype)
    eps = torch.finfo(dtype).eps
    norm = float(v.norm()) or 1.0
    last = float("inf")
    for step in range(iterations):
        h = h * (w.T @ v) / (w.T @ w @ h + eps)
        w = w * (v @ h.T) / (w @ (h @ h.T) + eps)
        if step % 10 == 9:
            error = float((v - w @ h).norm()) / norm
            if last - error < tol:
                break
            last = error
    return w, h


def concepts(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | nn.Module,
    n: int = 5,
    *,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    top_k: int = 3,
    iterations: int = 500,
    seed: int = 0,
) -> Concepts:
    """Factorise ``layer``'s activations over ``images`` into ``n`` concepts (Deep Feature Factorization).

    Args:
        model: the model (a classifier for the classes part); left exactly as it came.
        images: (N, C, H, W) (or (N, C, T, H, W)) float tensor, preprocessed as the model expects. All images
            are factorised together, so a concept means the same on every image.
        layer: the layer (module or dotted name; ``name:entry`` for dict outputs).
        n: the number of concepts (>= 1). Default 5.
        reshape_transform: for token layers, as in :class:`~camwidget.Explainer`.
        top_k: classes listed per concept. Default 3.
        iterations: the most NMF updates. Default 500.
        seed: seeds the NMF's start. Default 0.

    Returns:
        :class:`Concepts`: per concept a map per image, its direction, and the classes it drives (see the
        module doc for when those are known).
    """
    check_model(model)
    check_inputs(images, model)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1; got {top_k!r}")
    name, module = resolve_layer(model, layer)
    x = images.to(model_device(model))
    with preserved_state(model), torch.no_grad(), running_model(x):
        capture = LayerCapture(module, entry=split_entry(name)[1], reshape_transform=reshape_transform)
        with capture:
            output = model(x)
        if capture.leaf is None:
            raise ValueError(f"layer {name!r} did not run during the model's forward pass")
        a = capture.activations  # (N, C, *s)
    try:
        logits = as_logits(output).float()
    except TypeError:
        logits = None
    size = tuple(x.shape[2:])
    count, channels, spatial = a.shape[0], a.shape[1], tuple(a.shape[2:])
    if n > channels:
        raise ValueError(f"n={n} concepts exceed the layer's {channels} channels; ask for at most {channels}")
    v = torch.nan_to_num(a).transpose(0, 1).reshape(channels, -1)  # (C, N·positions)
    offset = v.amin(dim=1, keepdim=True)
    v = v - offset
    w, h = nmf(v, n, iterations=iterations, seed=seed)
    error = float((v.to(w.dtype) - w @ h).norm() / v.to(w.dtype).norm().clamp_min(1e-300))
    feature_maps = h.float().reshape(n, count, *spatial).transpose(0, 1).contiguous()  # (N, n, *s)
    maps = minmax(upsample(feature_maps.flatten(0, 1), size)).view(count, n, *size)
    embeddings = (w.float() + offset.float()).T.contiguous()  # (n, C)
    head = gap_linear_head(model, a, logits) if logits is not None else None
    class_scores = logit_weights = None
    classes: list[list[int]] = [[] for _ in range(n)]
    if head is not None:
        with torch.no_grad():
            bias = head.bias.detach().float() if head.bias is not None else 0.0
            class_scores = torch.softmax(embeddings @ head.weight.detach().float().T + bias, dim=1)
            logit_weights = w.float().T @ head.weight.detach().float().T  # (n, K)
        k = min(top_k, class_scores.shape[1])
        classes = class_scores.topk(k, dim=1).indices.tolist()
    return Concepts(
        maps=maps,
        feature_maps=feature_maps,
        embeddings=embeddings,
        class_scores=class_scores,
        classes=classes,
        layer=name,
        error=error,
        logit_weights=logit_weights,
    )


class _CallableModule(types.ModuleType):
    """``camwidget.concepts`` is this module; calling it calls :func:`concepts` (so both
    ``camwidget.concepts(model, images, layer)`` and ``from camwidget.concepts import Concepts`` work)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Concepts:
        return concepts(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
