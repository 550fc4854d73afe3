"""Checks and small pieces shared by the metrics: input/map/target validation, the reference forward pass.

Everything here validates *before* the model runs, so a bad argument raises ``ValueError`` (or
``TypeError`` for a wrong kind of object) and the model is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from camwidget.engine.batching import model_device
from camwidget.targets import ClassIndex, Target, as_logits, check_scores

__all__ = [
    "Scorer",
    "check_maps",
    "check_normalisation",
    "explainer_for",
    "fixed_target",
    "model_device",
    "predict",
    "score_reference",
    "target_probabilities",
]

if TYPE_CHECKING:  # pragma: no cover
    from camwidget.engine.explainer import Explainer

_PREDICT_CHUNK = 16


def check_maps(maps: object, inputs: torch.Tensor, *, unit_range: bool = False) -> torch.Tensor:
    """Saliency maps for ``inputs``: (N, *S) or (N, 1, *S) -> (N, *S) float32 on the inputs' device, S the
    inputs' spatial shape ((H, W) for images, (T, H, W) for video and volumes).

    Args:
        maps: one map per image, at the inputs' resolution.
        inputs: the checked (N, C, *S) inputs.
        unit_range: also require values in [0, 1] (maps used as multiplicative masks).
    """
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a (N, H, W) torch.Tensor, got {type(maps).__name__}")
    n, spatial = inputs.shape[0], tuple(inputs.shape[2:])
    if maps.ndim == len(spatial) + 2 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != len(spatial) + 1 or tuple(maps.shape[1:]) != spatial or maps.shape[0] != n:
        if maps.ndim == len(spatial) + 1 and tuple(maps.shape[1:]) == spatial:
            raise ValueError(f"maps hold {maps.shape[0]} maps for {n} images; pass one map per image")
        raise ValueError(
            f"maps must have shape {(n, *spatial)} to match the inputs; got {tuple(maps.shape)}"
            " (upsample low-resolution maps to the input size first, e.g. camwidget.explain's output)"
        )
    if maps.dtype == torch.bool or maps.is_complex():
        raise TypeError(f"maps must be a real-valued (float) tensor, got {maps.dtype}")
    maps = maps.detach().float().to(inputs.device)
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or infinite values; replace them (e.g. torch.nan_to_num) first")
    if unit_range and (bool((maps < 0).any()) or bool((maps > 1).any())):
        raise ValueError(
            f"maps must lie in [0, 1] to be used as masks; got values in [{float(maps.min()):.4g}, "
            f"{float(maps.max()):.4g}] (min-max normalise them, as camwidget.explain does)"
        )
    return maps


def check_normalisation(
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    channels: int,
    device: torch.device,
    spatial_dims: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) float32 mean and std tensors (one more 1 per extra spatial dimension: (1, C, 1, 1, 1)
    for video), checked against the number of channels."""
    m = torch.as_tensor(mean, dtype=torch.float32).flatten()
    s = torch.as_tensor(std, dtype=torch.float32).flatten()
    if m.numel() != channels or s.numel() != channels:
        raise ValueError(
            f"mean and std need one value per input channel ({channels}); got {m.numel()} and {s.numel()}"
        )
    if bool((s <= 0).any()) or not bool(torch.isfinite(m).all() & torch.isfinite(s).all()):
        raise ValueError(f"std must be > 0 and mean/std finite; got mean={m.tolist()}, std={s.tolist()}")
    shape = (1, -1, *[1] * spatial_dims)
    return m.view(shape).to(device), s.view(shape).to(device)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, K) float32 logits of ``x`` in fp32, in chunks of 16, under ``inference_mode``.

    The caller holds :func:`~camwidget.engine.hooks.preserved_state`. This is the reference forward pass:
    the class "predicted on the original image" is taken from it, as :func:`camwidget.explain` does.
    """
    chunks = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], _PREDICT_CHUNK):
            chunks.append(as_logits(model(x[start : start + _PREDICT_CHUNK])).float())
    return torch.cat(chunks)


def target_probabilities(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax probability of ``targets`` (B,) under (B, K) logits, float32."""
    return torch.softmax(logits.float(), dim=1).gather(1, targets.view(-1, 1).to(logits.device)).squeeze(1)


@dataclass
class Scorer:
    """How a perturbation metric scores inputs for a target (see :mod:`camwidget.targets`).

    For a class-index target on a classifier (None, an int, ints, ``Logit``, ``Probability``, ``Sigmoid``),
    perturbed inputs of many images share one stream of logits and the score is the class's softmax
    probability for a bare index (RISE's and the papers' definitions), else the target's own kind. For any
    other target, each image's perturbed inputs form their own stream, scored by the target for that image.

    Attributes:
        target: the target, bound to the unperturbed inputs' output.
        classes: (N,) int64 classes for a class-index target on a classifier, else None.
        logits: (N, K) fp32 logits of the unperturbed inputs (class-index targets), else None.
        reference: (N,) float32 score of each unperturbed input, in the metric's unit.
    """

    target: Target
    classes: torch.Tensor | None
    logits: torch.Tensor | None
    reference: torch.Tensor

    @property
    def per_image(self) -> bool:
        """Whether each image's inputs must be scored in a stream of their own."""
        return self.classes is None

    def from_logits(self, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(B,) scores from (B, K) logits of inputs whose classes are ``classes`` (B,)."""
        assert isinstance(self.target, ClassIndex)
        if not self.target.explicit:
            return target_probabilities(logits, classes)
        return self.target.scores_from_logits(logits, classes)

    def stream(self, image: int | None, x: torch.Tensor) -> dict[str, Any]:
        """``reference`` and ``reduce`` for a :class:`~camwidget.engine.batching.ForwardRunner` whose items
        all come from image ``image`` (per-image targets) or from any images (``image`` None, class
        targets: the runner then returns logits, see :meth:`from_logits`)."""
        if image is None:
            assert self.logits is not None
            return {"reference": (x, self.logits)}
        target = self.target

        def reduce(out: object, start: int, stop: int) -> torch.Tensor:
            rows = torch.full((stop - start,), image, dtype=torch.long, device=x.device)
            return check_scores(target.rows(rows)(out), stop - start)

        return {"reference": (x[image : image + 1], self.reference[image : image + 1]), "reduce": reduce}


def score_reference(model: nn.Module, x: torch.Tensor, wanted: Target) -> Scorer:
    """Run the unperturbed inputs (N, C, *S) once, bind ``wanted`` to the output, and return the
    :class:`Scorer`. The caller holds :func:`~camwidget.engine.hooks.preserved_state`."""
    n = x.shape[0]

    def run(inputs: torch.Tensor) -> object:
        with torch.inference_mode():
            return model(inputs.to(x.device))

    if isinstance(wanted, ClassIndex):
        logits = predict(model, x)
        bound = wanted.prepare(logits, run)
        assert bound.classes is not None
        scorer = Scorer(bound, bound.classes, logits, torch.empty(0))
        scorer.reference = scorer.from_logits(logits, bound.classes)
        return scorer
    output = run(x)
    bound = wanted.prepare(output, run)
    with torch.inference_mode():
        scores = check_scores(bound(output), n).float()
    return Scorer(bound, None, None, scores)


def fixed_target(model: nn.Module, x: torch.Tensor, wanted: Target) -> object:
    """What to pass as ``target=`` to explain ``x`` again (a masked copy, a randomised model) for the same
    thing: the (N,) classes of a class-index target (the predicted class fixed now), else the target bound
    to this output (a segmentation target keeps the original predicted mask). The caller holds
    :func:`~camwidget.engine.hooks.preserved_state`."""
    scorer = score_reference(model, x, wanted)
    return scorer.classes if scorer.classes is not None else scorer.target


def explainer_for(
    model: nn.Module, method: object, layer: object, options: dict[str, Any]
) -> tuple[Explainer, bool]:
    """The :class:`~camwidget.engine.explainer.Explainer` a metric that explains again should use, and
    whether the metric made it (and so releases it).

    ``method`` is a method name (a new Explainer on ``model`` at ``layer`` with ``options``) or an
    Explainer of ``model`` (used as it is; ``layer`` and ``options`` must then be left out).
    """
    from camwidget.engine.explainer import Explainer
    from camwidget.methods.registry import get_method

    if isinstance(method, Explainer):
        if method.model is not model:
            raise ValueError(
                "the Explainer passed as method explains another model; pass one made for this model"
            )
        if layer is not None or options:
            raise ValueError(
                "layer and method options belong to the Explainer passed as method; leave them out here"
            )
        return method, False
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name or a camwidget.Explainer; got {type(method).__name__}")
    get_method(method)  # an unknown name fails here, before any forward
    return Explainer(model, layer, method, **options), True  # type: ignore[arg-type]
