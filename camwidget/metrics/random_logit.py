"""The random logit test (Sixt, Granz, Landgraf, ICML 2020, "When explanations lie"; Quantus's
``RandomLogit``): is the map about the class at all?

For each image, a class other than the target is drawn uniformly at random (seeded), explained with the
same method and layer, and compared with the target's map by SSIM
(:func:`~camwidget.metrics.sanity.ssim`: 11×11 Gaussian window, sigma 1.5, data range 1). A class-sensitive
explanation gives a *low* similarity; an edge detector in disguise explains every class the same way (SSIM
near 1). Eigen-CAM, which ignores the class, scores exactly 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from camwidget.engine.explainer import Explainer
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import Target, check_call
from camwidget.metrics._common import check_maps, explainer_for, model_device, score_reference
from camwidget.metrics.imputation import new_seed
from camwidget.metrics.sanity import ssim

__all__ = ["other_classes", "random_logit"]


def other_classes(targets: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """(N,) int64 classes drawn uniformly from the K − 1 classes other than each target, from ``seed``
    (a CPU generator, so the draw is the same on every device); on ``targets``' device."""
    if num_classes < 2:
        raise ValueError(f"the random logit test needs a model with at least 2 classes; it has {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, (targets.shape[0],), generator=generator)
    return (targets.cpu() + shift) % num_classes


def random_logit(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor | None = None,
    target: Target = None,
    *,
    method: str | Explainer = "gradcam",
    layer: str | nn.Module | None = None,
    seed: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """SSIM between each image's map for its target and for a random other class (see the module doc).

    Args:
        model: classifier returning (N, K) logits, K >= 2; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        maps: (N, H, W) maps in [0, 1] that ``method`` made for the targets; None (default): made here.
        target: None (default: the class predicted on each image), an int, or N ints.
        method: a name from :data:`camwidget.METHODS` (default "gradcam"), or a :class:`camwidget.Explainer`
            of ``model`` (then ``layer`` and ``options`` stay with it).
        layer: explained layer (None: the engine's default).
        seed: seeds the choice of the other classes. None (default): a fresh seed, returned.
        **options: for the Explainer (``precision``, ``batch_size``, method options, ...).

    Returns:
        A dict: "ssim" (N,) float32 in [−1, 1] (lower = more class-sensitive), "targets" and
        "other_classes" (N,) int64, "other_maps" (N, H, W) (all on the inputs' device), "seed" (int).
    """
    model, inputs, wanted = check_call(model, inputs, target)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0; got {seed!r}")
    checked = None if maps is None else check_maps(maps, inputs, unit_range=True)
    explainer, owned = explainer_for(model, method, layer, options)
    seed = new_seed() if seed is None else seed
    try:
        x = inputs.detach().to(model_device(model))
        with preserved_state(model):
            scorer = score_reference(model, x, wanted)
        if scorer.classes is None or scorer.logits is None:
            raise ValueError(
                "random_logit compares a class's map with another class's; the target "
                f"{scorer.target.name!r} is not a class of a classifier"
            )
        targets = scorer.classes
        others = other_classes(targets, scorer.logits.shape[1], seed).to(targets.device)
        first = explainer(x, targets) if checked is None else checked.to(x.device)
        second = explainer(x, others)
    finally:
        if owned:
            explainer.release()
    out_device = inputs.device
    return {
        "ssim": ssim(first, second).to(out_device),
        "targets": targets.to(out_device),
        "other_classes": others.to(out_device),
        "other_maps": second.to(out_device),
        "seed": seed,
    }
