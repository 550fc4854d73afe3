"""Average Drop, Average Increase (Chattopadhyay et al. 2018) and Average Gain (Zhang et al., Opti-CAM).

With p_i the target-class softmax probability on image i and o_i the probability on the image multiplied by
its map (a mask in [0, 1]):

- Average Drop  AD = 100/N Σ max(0, p_i − o_i) / p_i        (lower is better)
- Average Increase AI = 100/N Σ 1[p_i < o_i]                 (higher is better)
- Average Gain  AG = 100/N Σ max(0, o_i − p_i) / (1 − p_i)   (higher is better)

**Read AD beside AG.** An all-ones map (no explanation at all: the masked image is the image) scores a
perfect AD = 0, and AG = 0 exposes it; Average Gain was introduced in the Opti-CAM paper for exactly this
flaw. Likewise a map that keeps everything but one pixel scores an excellent AD. AI only counts images.

Conventions: a term whose denominator is 0 (p = 0 for AD, p = 1 for AG) is 0, since its numerator is then
0 as well. p and o come from the same batched stream of forwards (the engine's precision choice), so an
input that is unchanged by masking scores o = p exactly.

:func:`confidence_change` gives pytorch-grad-cam's per-image Drop in Confidence (max(0, p − o), absolute)
and Increase in Confidence (1[o > p]) from the same stream, on probabilities or logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from camwidget.engine.batching import ForwardRunner
from camwidget.engine.explainer import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import Target, check_call
from camwidget.metrics._common import (
    Scorer,
    check_maps,
    check_normalisation,
    model_device,
    score_reference,
    target_probabilities,
)
from camwidget.targets import ClassIndex

__all__ = [
    "MASKINGS",
    "SCORES",
    "average_drop_increase_gain",
    "confidence_change",
    "confidence_scores",
    "masked_inputs",
]

MASKINGS = ("model", "pixel")
SCORES = ("probability", "logit")


def masked_inputs(
    inputs: torch.Tensor,
    maps: torch.Tensor,
    *,
    masking: str = "model",
    mean: torch.Tensor | Sequence[float] = IMAGENET_MEAN,
    std: torch.Tensor | Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Inputs multiplied by their maps: (N, C, H, W) and (N, H, W) in [0, 1] -> (N, C, H, W).

    ``masking="model"`` multiplies the model's input tensor (a masked pixel becomes 0, i.e. the dataset's
    mean colour for a normalised input, as Score-CAM and Grad-CAM++ do). ``"pixel"`` multiplies in pixel
    space, x_pix = x·std + mean, so a masked pixel is black: x·m + (1 − m)·(−mean/std), which leaves the
    input bit-identical where m = 1.
    """
    if masking not in MASKINGS:
        raise ValueError(f"masking must be 'model' or 'pixel'; got {masking!r}")
    m = maps.unsqueeze(1).to(inputs.dtype)
    if masking == "model":
        return inputs * m
    mu, sigma = check_normalisation(mean, std, inputs.shape[1], inputs.device)
    black = (-mu / sigma).to(inputs.dtype)
    return inputs * m + (1 - m) * black


def confidence_scores(p: torch.Tensor, o: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image terms from p (N,) and o (N,) probabilities: "drop" and "gain" in percent (N,) float32,
    "increase" (N,) bool. Their means are AD, AG and (as percent) AI."""
    p, o = p.float(), o.float()
    safe_p = torch.where(p > 0, p, torch.ones_like(p))
    safe_q = torch.where(p < 1, 1 - p, torch.ones_like(p))
    drop = torch.where(p > 0, (p - o).clamp_min(0) / safe_p, torch.zeros_like(p)) * 100
    gain = torch.where(p < 1, (o - p).clamp_min(0) / safe_q, torch.zeros_like(p)) * 100
    return {"drop": drop, "increase": p < o, "gain": gain}


def _original_and_masked(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    wanted: Target,
    masking: str,
    mean: Sequence[float],
    std: Sequence[float],
    precision: str,
    batch_size: int | str,
) -> tuple[Scorer, torch.Tensor, str]:
    """``(scorer, values, precision used)``: items 0..N-1 are the originals, N..2N-1 the images masked by
    their maps. ``values`` is (2N, K) logits for a class-index target (all in one stream of forwards, so an
    unchanged input scores the same), else (2N,) target scores (one stream per image)."""
    device = model_device(model)
    x = inputs.detach().to(device)
    mu, sigma = check_normalisation(mean, std, inputs.shape[1], device, x.ndim - 2)
    maps_d = maps.to(device)
    n = x.shape[0]
    ones = (1,) * (x.ndim - 2)

    def batch(images: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        keep = torch.where(masked.view(-1, *ones), maps_d[images], torch.ones_like(maps_d[images]))
        return masked_inputs(x[images], keep, masking=masking, mean=mu, std=sigma)

    with preserved_state(model):
        scorer = score_reference(model, x, wanted)
        if not scorer.per_image:
            runner = ForwardRunner(
                model, precision=precision, batch_size=batch_size, **scorer.stream(None, x)
            )
            j = torch.arange(2 * n, device=device)
            values = runner.logits(lambda a, b: batch(j[a:b] % n, j[a:b] >= n), 2 * n)
            return scorer, values, runner.precision_used or "fp32"
        values = torch.empty(2 * n, device=device)
        used = "fp32"
        masked = torch.tensor([False, True], device=device)
        for i in range(n):
            runner = ForwardRunner(model, precision=precision, batch_size=batch_size, **scorer.stream(i, x))
            image = torch.full((2,), i, device=device)
            out = runner.logits(lambda a, b, image=image: batch(image[a:b], masked[a:b]), 2)
            values[i], values[n + i] = out[0], out[1]
            used = runner.precision_used if runner.precision_used != "fp32" else used
    return scorer, values, used or "fp32"


def average_drop_increase_gain(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    masking: str = "model",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    precision: str = "auto",
    batch_size: int | str = "auto",
) -> dict[str, Any]:
    """Average Drop, Increase and Gain of ``maps`` (see the module doc for the formulas and the caveat).

    Args:
        model: classifier returning (N, K) logits; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        maps: (N, H, W) (or (N, 1, H, W)) maps in [0, 1] at the input resolution, e.g. from
            :func:`camwidget.explain`.
        target: None (default: the class predicted on each original image, fp32 forward), an int, or N ints.
        masking: "model" (default: multiply the model's input tensor) or "pixel" (multiply in pixel space:
            masked pixels are black; uses ``mean``/``std``, default ImageNet's).
        precision, batch_size: for the 2N forwards (originals and masked), see
            :class:`~camwidget.engine.batching.ForwardRunner`.

    Returns:
        A dict: "average_drop", "average_increase", "average_gain" (floats, percent, in [0, 100]);
        per image, on the inputs' device: "p" and "o" (N,) probabilities, "drop" and "gain" (N,) percent,
        "increase" (N,) bool, "targets" (N,) int64; "precision": what the forwards ran at.

    Raises:
        ValueError: maps of the wrong shape, not finite or outside [0, 1]; unknown masking; a target out of
            range; mismatched batch sizes. Checked before any perturbed forward; the model is untouched.
    """
    model, inputs, wanted = check_call(model, inputs, target, precision=precision, batch_size=batch_size)
    maps = check_maps(maps, inputs, unit_range=True)
    if masking not in MASKINGS:
        raise ValueError(f"masking must be 'model' or 'pixel'; got {masking!r}")
    scorer, values, used = _original_and_masked(
        model, inputs, maps, wanted, masking, mean, std, precision, batch_size
    )
    n = inputs.shape[0]
    targets = scorer.classes if scorer.classes is not None else torch.full((n,), -1)
    probs = values if scorer.per_image else scorer.from_logits(values, targets.repeat(2))
    p, o = probs[:n], probs[n:]
    if scorer.per_image and (bool((probs < 0).any()) or bool((probs > 1).any())):
        raise ValueError(
            "Average Drop/Increase/Gain need scores in [0, 1] (probabilities); the target "
            f"{scorer.target.name!r} gave values in [{float(probs.min()):.4g}, {float(probs.max()):.4g}]: "
            "use a probability-like target (Probability, Sigmoid) or confidence_change, which takes any score"
        )
    terms = confidence_scores(p, o)
    out_device = inputs.device
    return {
        "average_drop": float(terms["drop"].mean()),
        "average_increase": float(terms["increase"].float().mean() * 100),
        "average_gain": float(terms["gain"].mean()),
        "p": p.to(out_device),
        "o": o.to(out_device),
        "drop": terms["drop"].to(out_device),
        "increase": terms["increase"].to(out_device),
        "gain": terms["gain"].to(out_device),
        "targets": targets.to(out_device),
        "precision": used,
    }


def confidence_change(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    score: str = "probability",
    masking: str = "model",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    precision: str = "auto",
    batch_size: int | str = "auto",
) -> dict[str, Any]:
    """Drop in Confidence and Increase in Confidence, per image, as pytorch-grad-cam defines them.

    With s the target's score on the image and s' on the image multiplied by its map (pytorch-grad-cam's
    ``CamMultImageConfidenceChange``: the model's input tensor times the map):

    - change = s' − s;
    - Drop in Confidence = max(0, s − s') (``DropInConfidence``): an *absolute* drop, where Average Drop
      divides by s;
    - Increase in Confidence = 1 if s' > s else 0 (``IncreaseInConfidence``); its mean over images is
      Average Increase / 100.

    Args:
        model: classifier returning (N, K) logits; left exactly as it came.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        maps: (N, H, W) (or (N, 1, H, W)) maps in [0, 1] at the input resolution.
        target: None (default: the class predicted on each original image, fp32 forward), an int, or N ints.
        score: "probability" (default: the softmax probability, pytorch-grad-cam's
            ``ClassifierOutputSoftmaxTarget``) or "logit" (``ClassifierOutputTarget``).
        masking, mean, std: as in :func:`average_drop_increase_gain` ("model", pytorch-grad-cam's, is the
            default).
        precision, batch_size: for the 2N forwards, see :class:`~camwidget.engine.batching.ForwardRunner`.

    Returns:
        A dict of (N,) float32 tensors on the inputs' device: "drop_in_confidence", "increase_in_confidence"
        (0. or 1.), "change", "before" (s), "after" (s'), and "targets" (N,) int64; "precision": what the
        forwards ran at.

    Raises:
        ValueError: maps of the wrong shape, not finite or outside [0, 1]; unknown score or masking; a
            target out of range. Checked before the masked forwards; the model is untouched.
    """
    model, inputs, wanted = check_call(model, inputs, target, precision=precision, batch_size=batch_size)
    maps = check_maps(maps, inputs, unit_range=True)
    if score not in SCORES:
        raise ValueError(f"score must be 'probability' or 'logit'; got {score!r}")
    if masking not in MASKINGS:
        raise ValueError(f"masking must be 'model' or 'pixel'; got {masking!r}")
    scorer, values, used = _original_and_masked(
        model, inputs, maps, wanted, masking, mean, std, precision, batch_size
    )
    n = inputs.shape[0]
    targets = scorer.classes if scorer.classes is not None else torch.full((n,), -1)
    if not scorer.per_image:
        both = targets.repeat(2)
        if isinstance(scorer.target, ClassIndex) and scorer.target.explicit:
            values = scorer.target.scores_from_logits(values, both)
        elif score == "probability":
            values = target_probabilities(values, both)
        else:
            values = values.float().gather(1, both.view(-1, 1)).squeeze(1)
    before, after = values[:n], values[n:]
    change = after - before
    out_device = inputs.device
    return {
        "drop_in_confidence": (-change).clamp_min(0).to(out_device),
        "increase_in_confidence": (change > 0).float().to(out_device),
        "change": change.to(out_device),
        "before": before.to(out_device),
        "after": after.to(out_device),
        "targets": targets.to(out_device),
        "precision": used,
    }
