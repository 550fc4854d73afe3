"""What a CAM method computed on its way to a map: :class:`CamSteps`, returned by
:func:`camwidget.explain_steps` and :meth:`camwidget.Explainer.steps`.

The engine's pipeline (see :mod:`camwidget.engine.explainer`), with every stage kept::

    activations A (N, C', h, w)  --+--> raw = method(A, gradients, ...)  (N, h, w), signed
    gradients g  (N, C', h, w)  --/      (= Σ_k w_k A_k for the channel-weight methods: weights (N, C'))
    raw --upsample--> upsampled (N, H, W) --ReLU--> rectified --per-map min-max--> maps in [0, 1]

``maps`` is exactly what :func:`camwidget.explain` returns for the same call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CamSteps"]


@dataclass(frozen=True)
class CamSteps:
    """The intermediates of one explanation (N images; every tensor float32, detached, on the inputs'
    device, except ``classes``: int64).

    Attributes:
        method: the method's name ("gradcam"); ``label`` how it is shown ("Grad-CAM").
        layer: dotted name of the explained layer.
        target: the target's name (e.g. "class 282").
        classes: (N,) the class explained per image for a class target, else None.
        scores: (N,) the target's score per image (a class's logit for a class-index target).
        logits: (N, K) the model's logits when its output reads as logits, else None.
        activations: (N, C', h, w) the layer's output A (after any ``reshape_transform``).
        gradients: (N, C', h, w) d score / d A for gradient methods, else None.
        weights: (N, C') the channel weights w for methods whose raw map is Σ_k w_k A_k (CAM, Grad-CAM,
            Grad-CAM++, XGrad-CAM, Score-CAM, Ablation-CAM); None for the others (HiResCAM and Layer-CAM
            weight each position, Eigen-CAM projects, Opti-CAM weights ReLU(A)).
        raw: (N, h, w) the signed map at the layer's resolution, before anything else.
        upsampled: (N, H, W) ``raw`` resized to the input (bilinear, align_corners=False), still signed.
        rectified: (N, H, W) ReLU of ``upsampled``.
        maps: (N, H, W) ``rectified`` min-max scaled per map to [0, 1] (all zeros where nothing is
            positive): the final maps.
        warnings: why maps carry no information (all zero, numerical noise), as the Explainer warns.
    """

    method: str
    label: str
    layer: str
    target: str
    classes: torch.Tensor | None
    scores: torch.Tensor
    logits: torch.Tensor | None
    activations: torch.Tensor
    gradients: torch.Tensor | None
    weights: torch.Tensor | None
    raw: torch.Tensor
    upsampled: torch.Tensor
    rectified: torch.Tensor
    maps: torch.Tensor
    warnings: tuple[str, ...] = ()
