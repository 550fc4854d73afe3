"""Score-CAM (Wang et al. 2020) and its presets: gradient-free, each channel weighted by the score of the
input masked with that channel's map.

One masked forward per (image, channel) pair, batched by :class:`~camwidget.engine.batching.ForwardRunner`
(no hooks, ``inference_mode``, measured precision and batch size). Masks are built chunk by chunk, never all
at once. The logits of every masked input are kept for *all* classes (a C x K matrix per image, cached by the
method instance, which belongs to one :class:`~camwidget.engine.explainer.Explainer`), so the map of another
class of the same image costs no masked forward at all. A cached matrix is reused only while the live
model's logits on the image still equal those it was recorded with (:mod:`camwidget.engine.cache`).

Presets (``variant=``), see REFERENCES.md:

=================  ==========================  ==============================  ===========================
step               "paper" (default)           "pytorch-grad-cam"              "torchcam"
=================  ==========================  ==============================  ===========================
mask upsampling    bilinear, align_corners=F   bilinear, align_corners=True    bilinear, align_corners=F
mask min-max       after upsampling            after upsampling, +1e-8         before upsampling, +1e-8
constant maps      skipped (weight 0)          zero mask, still scored         zero mask, still scored
channel score      softmax prob. of target     target logit                    target logit - unmasked
across channels    none                        softmax over channels           softmax over channels
=================  ==========================  ==============================  ===========================

Every preset then forms Σ_k w_k A_k, upsamples, applies ReLU and min-max normalises. Constant-map channels
of the peer presets all share one zero-mask forward. ``channels=k`` keeps only the k highest-variance maps
(Faster Score-CAM); the others get weight 0 and are not run.
"""

from __future__ import annotations

import torch

from camwidget.engine.cache import ImageCache
from camwidget.engine.normalize import minmax, upsample
from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["VARIANTS", "ScoreCAM", "channel_masks", "channel_weights"]

VARIANTS = ("paper", "pytorch-grad-cam", "torchcam")
_MASK_STYLE = {"paper": "paper", "pytorch-grad-cam": "align-corners", "torchcam": "before-upsampling"}


def _flat(activations: torch.Tensor) -> torch.Tensor:
    """(..., h, w) -> bool (...): the map is constant (min == max)."""
    flat = activations.flatten(-2)
    return flat.amax(-1) <= flat.amin(-1)


def channel_masks(maps: torch.Tensor, size: tuple[int, int], variant: str = "paper") -> torch.Tensor:
    """(B, h, w) activation maps -> (B, 1, H, W) masks in [0, 1], as ``variant`` builds them."""
    maps = maps.float()
    if variant == "torchcam":
        flat = maps.flatten(1)
        lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        normed = ((flat - lo) / (hi - lo + 1e-8)).view_as(maps)
        return upsample(normed, size).unsqueeze(1)
    if variant == "pytorch-grad-cam":
        up = upsample(maps, size, align_corners=True).flatten(1)
        lo, hi = up.amin(1, keepdim=True), up.amax(1, keepdim=True)
        return ((up - lo) / (hi - lo + 1e-8)).view(maps.shape[0], 1, *size)
    return minmax(upsample(maps, size)).unsqueeze(1)


def channel_weights(
    masked_logits: torch.Tensor,
    run: torch.Tensor,
    target: int,
    variant: str,
    *,
    flat: torch.Tensor,
    zero_logits: torch.Tensor | None = None,
    base_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-channel weights (C,) of one image from its masked logits, as ``variant`` computes them.

    Args:
        masked_logits: (C, K) logits of the input masked by each channel (rows of unrun channels ignored).
        run: (C,) bool, the channels that take part (non-selected ones get weight 0).
        target: class index.
        flat: (C,) bool, the constant maps.
        zero_logits: (K,) logits of the all-zero (fully masked) input, for the peer presets.
        base_logits: (K,) logits of the unmasked input, for the "torchcam" preset.
    """
    weights = torch.zeros(masked_logits.shape[0], device=masked_logits.device)
    if variant == "paper":
        use = run & ~flat
        if use.any():
            weights[use] = torch.softmax(masked_logits[use], dim=1)[:, target]
        return weights
    assert zero_logits is not None
    scores = torch.where(flat, zero_logits[target], masked_logits[:, target])
    if variant == "torchcam":
        assert base_logits is not None
        scores = scores - base_logits[target]
    if run.any():
        weights[run] = torch.softmax(scores[run], dim=0)
    return weights


class ScoreCAM(CamMethod):
    """Score-CAM. Options: ``variant`` ("paper", "pytorch-grad-cam", "torchcam"), ``channels`` (int or None:
    keep the k highest-variance maps, Faster Score-CAM)."""

    name = "scorecam"
    label = "Score-CAM"
    paper = "Wang et al., CVPR Workshops 2020"
    interactive = False
    defaults = {"variant": "paper", "channels": None}

    def __init__(self, *, cache_size: int = 16) -> None:
        super().__init__(cache_size=cache_size)
        self.cache = ImageCache(cache_size)

    def release(self) -> None:
        self.cache.clear()

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        variant = ctx.options["variant"]
        if variant not in VARIANTS:
            raise ValueError(f"Score-CAM variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        channels = ctx.options["channels"]
        a = ctx.activations
        n, c = a.shape[:2]
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels
        ):
            raise ValueError(f"channels must be None or a positive int (at most {c}); got {channels!r}")
        flat = _flat(a)  # (N, C)
        run = torch.ones(n, c, dtype=torch.bool, device=a.device)
        if channels is not None and channels < c:
            top = a.flatten(2).var(dim=2).topk(channels, dim=1).indices
            run = torch.zeros_like(run).scatter_(1, top, True)
        scores = self._masked_logits(ctx, run & ~flat, variant)
        zero_logits = None
        if variant != "paper" and bool((run & flat).any()):
            zero_logits = ctx.zero_input_logits()
        elif variant != "paper":
            zero_logits = torch.zeros(scores[0].shape[1], device=a.device)
        weights = torch.stack(
            [
                channel_weights(
                    scores[i],
                    run[i],
                    int(ctx.targets[i]),
                    variant,
                    flat=flat[i],
                    zero_logits=zero_logits,
                    base_logits=ctx.logits[i],
                )
                for i in range(n)
            ]
        )
        return torch.einsum("nc,nchw->nhw", weights, a)

    def _masked_logits(self, ctx: MethodContext, needed: torch.Tensor, variant: str) -> list[torch.Tensor]:
        """(C, K) masked logits per image, from the cache where possible; runs only the missing channels."""
        a = ctx.activations
        size = (ctx.inputs.shape[-2], ctx.inputs.shape[-1])
        key = (_MASK_STYLE[variant], ctx.layer_name, ctx.precision)
        entries = [self.cache.get(key, ctx.inputs[i], ctx.logits[i]) for i in range(a.shape[0])]
        for entry in entries:
            if entry is not None:
                ctx.record_precision(entry.precision)
        todo = []  # (image, channel) pairs still to run
        for i, entry in enumerate(entries):
            have = ~torch.isnan(entry.value[:, 0]) if entry is not None else torch.zeros_like(needed[i])
            missing = (needed[i] & ~have).nonzero().flatten()
            todo.extend((i, int(k)) for k in missing.tolist())
        if todo:
            index = torch.tensor(todo, device=a.device)

            def make_batch(start: int, stop: int) -> torch.Tensor:
                rows = index[start:stop]
                masks = channel_masks(a[rows[:, 0], rows[:, 1]], size, variant)
                return ctx.inputs[rows[:, 0]] * masks.to(ctx.inputs.dtype)

            logits = ctx.forwards(make_batch, len(todo))
            num_classes = logits.shape[1]
            for i in range(a.shape[0]):
                if entries[i] is None:
                    entries[i] = self.cache.put(
                        key,
                        ctx.inputs[i],
                        ctx.logits[i],
                        torch.full((a.shape[1], num_classes), float("nan"), device=a.device),
                    )
            for i, entry in enumerate(entries):
                mine = index[:, 0] == i
                if mine.any():
                    entry.value[index[mine, 1]] = logits[mine]
                    entry.precision = ctx.precision_used
        num_classes = ctx.logits.shape[1]
        return [
            e.value if e is not None else torch.full((a.shape[1], num_classes), float("nan"), device=a.device)
            for e in entries
        ]
