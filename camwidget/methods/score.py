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

SS-CAM and IS-CAM (torchcam 0.5.0's definitions) run ``samples`` masked forwards per channel instead of one,
through the same batched stream and the same per-image cache (of the logits averaged over the samples, which
is all their weights need). With M_k the channel's map min-max scaled at feature resolution (+1e-8) and
upsampled bilinearly (torchcam's masks), y the class's logit (or any target's score) and x the input:

- SS-CAM (Wang et al., arXiv:2006.14255): w = softmax_k(mean_s y((M_k + δ_s,k) ⊙ x) − y(x)), δ Gaussian noise
  of std ``noise`` (default 2.0, in mask units) at input resolution, ``samples`` = 35 draws;
- IS-CAM (Naidu et al., arXiv:2010.03023): w = softmax_k(mean_s y(c_s · M_k ⊙ x) − y(x)) with the cumulative
  coefficients c_s = Σ_{j<=s} j/S, s = 1..S, S = ``samples`` = 10 (the cumulative sum of torchcam's docstring
  and code; constant maps give a zero mask, so they share the zero input's score).

SS-CAM's noise: sample s draws a (C, *S) standard normal tensor from a CPU generator seeded with ``seed`` (the
same draws for every image of a call), so with one image and ``torch.manual_seed(seed)`` before torchcam's
call the two draw the very same noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from camwidget.engine.cache import ImageCache
from camwidget.engine.normalize import minmax, upsample
from camwidget.methods.base import CamMethod, MethodContext
from camwidget.targets import ClassIndex

Build = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``build(images, channels, sample)``: the (B, C, *S) masked inputs of the (image, channel) pairs for one
sample index."""

__all__ = ["ISCAM", "SSCAM", "VARIANTS", "ScoreCAM", "channel_masks", "channel_weights"]

VARIANTS = ("paper", "pytorch-grad-cam", "torchcam")
_MASK_STYLE = {"paper": "paper", "pytorch-grad-cam": "align-corners", "torchcam": "before-upsampling"}


def _flat(activations: torch.Tensor) -> torch.Tensor:
    """(N, C, *s) -> bool (N, C): the map is constant (min == max)."""
    flat = activations.flatten(2)
    return flat.amax(-1) <= flat.amin(-1)


def channel_masks(maps: torch.Tensor, size: tuple[int, ...], variant: str = "paper") -> torch.Tensor:
    """(B, *s) activation maps -> (B, 1, *S) masks in [0, 1], as ``variant`` builds them (bilinear for
    images, trilinear for video and volumes)."""
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
    scores: torch.Tensor,
    run: torch.Tensor,
    variant: str,
    *,
    flat: torch.Tensor,
    zero_score: torch.Tensor | float = 0.0,
    base_score: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Per-channel weights (C,) of one image from the scores of its masked inputs, as ``variant`` computes
    them.

    Args:
        scores: (C,) the target's score on the input masked by each channel (the class's softmax probability
            for the "paper" preset with a class-index target; its logit for the peer presets; any explicit
            target's own score). Rows of channels that were not run are ignored.
        run: (C,) bool, the channels that take part (non-selected ones get weight 0).
        flat: (C,) bool, the constant maps.
        zero_score: the score of the all-zero (fully masked) input, for the peer presets' constant maps.
        base_score: the score of the unmasked input, for the "torchcam" preset.
    """
    weights = torch.zeros(scores.shape[0], device=scores.device)
    if variant == "paper":
        use = run & ~flat
        weights[use] = scores[use]
        return weights
    values = torch.where(flat, torch.as_tensor(zero_score, device=scores.device, dtype=scores.dtype), scores)
    if variant == "torchcam":
        values = values - base_score
    if run.any():
        weights[run] = torch.softmax(values[run], dim=0)
    return weights


class ScoreCAM(CamMethod):
    """Score-CAM. Options: ``variant`` ("paper", "pytorch-grad-cam", "torchcam"), ``channels`` (int or None:
    keep the k highest-variance maps, Faster Score-CAM).

    With a class-index target (None, an int, ``Logit``/``Probability``/``Sigmoid``) and a model returning
    logits, the masked logits are kept for every class (a C x K matrix per image), so another class of the
    same image costs no masked forward. Any other target (a segmentation class, a detection, a callable)
    is scored on each masked input directly, one image's channels after the other.
    """

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

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
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
        needed = run & ~flat
        if ctx.classes is not None:
            scores, zero, base = self._class_scores(ctx, needed, variant, bool((run & flat).any()))
        else:
            scores, zero, base = self._target_scores(ctx, needed, variant, bool((run & flat).any()))
        return torch.stack(
            [
                channel_weights(
                    scores[i], run[i], variant, flat=flat[i], zero_score=zero[i], base_score=base[i]
                )
                for i in range(n)
            ]
        )

    def _class_scores(
        self, ctx: MethodContext, needed: torch.Tensor, variant: str, any_flat: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, C) channel scores, (N,) zero-input and (N,) unmasked scores for a class-index target."""
        assert ctx.classes is not None and ctx.logits is not None and isinstance(ctx.target, ClassIndex)
        target = ctx.target
        n = ctx.inputs.shape[0]
        if target.explicit:  # Logit / Probability / Sigmoid: the target's own score for every preset

            def score(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
                return target.scores_from_logits(logits, classes)

        elif variant == "paper":  # the paper: the class's softmax probability

            def score(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
                return torch.softmax(logits, dim=1).gather(1, classes.view(-1, 1)).squeeze(1)

        else:  # pytorch-grad-cam and torchcam: the class's logit

            def score(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
                return logits.gather(1, classes.view(-1, 1)).squeeze(1)

        masked = self._masked_logits(ctx, needed, variant)
        scores = torch.stack([score(masked[i], ctx.classes[i].expand(masked[i].shape[0])) for i in range(n)])
        base = score(ctx.logits, ctx.classes)
        zero = torch.zeros(n, device=ctx.device)
        if variant != "paper" and any_flat:
            zero = score(ctx.zero_input_logits().expand(n, -1), ctx.classes)
        return scores, zero, base

    def _target_scores(
        self, ctx: MethodContext, needed: torch.Tensor, variant: str, any_flat: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, C) channel scores, (N,) zero-input and (N,) unmasked scores for any other target: each
        image's masked inputs scored by the target for that image (nothing cached)."""
        a = ctx.activations
        n, c = a.shape[:2]
        size = tuple(ctx.inputs.shape[2:])
        scores = torch.zeros(n, c, device=ctx.device)
        for i in range(n):
            channels = needed[i].nonzero().flatten()
            if not len(channels):
                continue

            def make_batch(
                start: int, stop: int, i: int = i, channels: torch.Tensor = channels
            ) -> torch.Tensor:
                masks = channel_masks(a[i, channels[start:stop]], size, variant)
                return ctx.inputs[i : i + 1] * masks.to(ctx.inputs.dtype)

            scores[i, channels] = ctx.target_forwards(make_batch, len(channels), i)
        zero = (
            ctx.zero_input_scores() if variant != "paper" and any_flat else torch.zeros(n, device=ctx.device)
        )
        return scores, zero, ctx.scores

    def _masked_logits(self, ctx: MethodContext, needed: torch.Tensor, variant: str) -> list[torch.Tensor]:
        """(C, K) masked logits per image, from the cache where possible; runs only the missing channels."""
        a = ctx.activations
        size = tuple(ctx.inputs.shape[2:])

        def build(images: torch.Tensor, channels: torch.Tensor, sample: int) -> torch.Tensor:
            masks = channel_masks(a[images, channels], size, variant)
            return ctx.inputs[images] * masks.to(ctx.inputs.dtype)

        key = (_MASK_STYLE[variant], ctx.layer_name, ctx.precision)
        return self._sampled_logits(ctx, needed, key, build, 1)

    def _sampled_logits(
        self, ctx: MethodContext, needed: torch.Tensor, key: object, build: Build, samples: int
    ) -> list[torch.Tensor]:
        """(C, K) logits per image averaged over ``samples`` masked inputs per channel (``build``), from the
        cache where possible; runs only the missing channels, all images in one stream (sample-major)."""
        assert ctx.logits is not None
        a = ctx.activations
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
            pairs = len(todo)

            def make_batch(start: int, stop: int) -> torch.Tensor:
                parts = []
                for sample in range(start // pairs, (stop - 1) // pairs + 1):
                    lo, hi = max(start, sample * pairs) - sample * pairs, min(stop, (sample + 1) * pairs)
                    rows = index[lo : hi - sample * pairs]
                    parts.append(build(rows[:, 0], rows[:, 1], sample))
                return parts[0] if len(parts) == 1 else torch.cat(parts)

            logits = ctx.forwards(make_batch, pairs * samples)
            if samples > 1:
                logits = logits.view(samples, pairs, -1).mean(dim=0)
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


class _Noise:
    """SS-CAM's noise: sample s is a standard normal (C, *S) tensor times ``std``, the s-th draw of a CPU
    generator seeded with ``seed``; any sample can be drawn again (the state before each one is kept)."""

    def __init__(self, seed: int, shape: tuple[int, ...], std: float, device: torch.device) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.states = [self.generator.get_state()]
        self.shape, self.std, self.device = shape, std, device
        self.sample: int | None = None
        self.value: torch.Tensor | None = None

    def __call__(self, sample: int) -> torch.Tensor:
        if sample != self.sample:
            first = min(sample, len(self.states) - 1)
            self.generator.set_state(self.states[first])
            for s in range(first, sample + 1):
                drawn = torch.randn(self.shape, generator=self.generator)
                if s + 1 == len(self.states):
                    self.states.append(self.generator.get_state())
            self.sample, self.value = sample, (drawn * self.std).to(self.device)
        assert self.value is not None
        return self.value


class _SampledScoreCAM(ScoreCAM):
    """SS-CAM and IS-CAM: ``samples`` masked forwards per channel, torchcam's weights (see the module doc)."""

    in_comparisons = False
    interactive = False

    def _build(
        self, ctx: MethodContext, masks: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> Build:
        raise NotImplementedError  # pragma: no cover - interface

    def _key(self, ctx: MethodContext) -> tuple[object, ...]:
        raise NotImplementedError  # pragma: no cover - interface

    flat_is_zero: bool = False  # a constant map makes a zero mask in every sample (IS-CAM), not in SS-CAM

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        samples = ctx.options["samples"]
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an int >= 1; got {samples!r}")
        channels = ctx.options["channels"]
        a = ctx.activations
        n, c = a.shape[:2]
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels
        ):
            raise ValueError(f"channels must be None or a positive int (at most {c}); got {channels!r}")
        run = torch.ones(n, c, dtype=torch.bool, device=a.device)
        if channels is not None and channels < c:
            top = a.flatten(2).var(dim=2).topk(channels, dim=1).indices
            run = torch.zeros_like(run).scatter_(1, top, True)
        flat = _flat(a) if self.flat_is_zero else torch.zeros_like(run)
        needed = run & ~flat
        size = tuple(ctx.inputs.shape[2:])

        def masks(images: torch.Tensor, chans: torch.Tensor) -> torch.Tensor:
            return channel_masks(a[images, chans], size, "torchcam").to(ctx.inputs.dtype)

        build = self._build(ctx, masks)
        any_flat = bool((run & flat).any())
        target = ctx.target
        if ctx.classes is not None and isinstance(target, ClassIndex) and target.kind == "logit":
            assert ctx.logits is not None
            mean_logits = self._sampled_logits(ctx, needed, self._key(ctx), build, samples)
            scores = torch.stack([m[:, ctx.classes[i]] for i, m in enumerate(mean_logits)])
            base = ctx.logits.gather(1, ctx.classes.view(-1, 1)).squeeze(1)
            zero = torch.zeros(n, device=ctx.device)
            if any_flat:
                zero = ctx.zero_input_logits().expand(n, -1).gather(1, ctx.classes.view(-1, 1)).squeeze(1)
        else:  # any other target: scored per image on each masked input, averaged over the samples
            scores = torch.zeros(n, c, device=ctx.device)
            for i in range(n):
                chans = needed[i].nonzero().flatten()
                if not len(chans):
                    continue
                pairs = len(chans)
                image = torch.full((pairs,), i, device=a.device)

                def make_batch(
                    start: int, stop: int, image: torch.Tensor = image, chans: torch.Tensor = chans
                ) -> torch.Tensor:
                    parts = []
                    p = len(chans)
                    for sample in range(start // p, (stop - 1) // p + 1):
                        lo, hi = max(start, sample * p) - sample * p, min(stop, (sample + 1) * p) - sample * p
                        parts.append(build(image[lo:hi], chans[lo:hi], sample))
                    return parts[0] if len(parts) == 1 else torch.cat(parts)

                got = ctx.target_forwards(make_batch, pairs * samples, i)
                scores[i, chans] = got.view(samples, pairs).mean(dim=0)
            base = ctx.scores
            zero = ctx.zero_input_scores() if any_flat else torch.zeros(n, device=ctx.device)
        return torch.stack(
            [
                channel_weights(
                    scores[i], run[i], "torchcam", flat=flat[i], zero_score=zero[i], base_score=base[i]
                )
                for i in range(n)
            ]
        )


class SSCAM(_SampledScoreCAM):
    """SS-CAM (Smoothed Score-CAM). Options: ``samples`` (35), ``noise`` (2.0, the std of the Gaussian noise
    added to each [0, 1] mask), ``seed`` (None: a fresh one per call), ``channels`` (as Score-CAM's)."""

    name = "sscam"
    label = "SS-CAM"
    paper = "Wang et al., arXiv:2006.14255 (2020)"
    defaults = {"samples": 35, "noise": 2.0, "seed": None, "channels": None}

    def _key(self, ctx: MethodContext) -> tuple[object, ...]:
        return (
            "sscam",
            ctx.seed,
            ctx.options["samples"],
            float(ctx.options["noise"]),
            ctx.layer_name,
            ctx.precision,
        )

    def _build(
        self, ctx: MethodContext, masks: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> Build:
        std = ctx.options["noise"]
        if isinstance(std, bool) or not isinstance(std, int | float) or std < 0:
            raise ValueError(f"noise must be a number >= 0; got {std!r}")
        assert ctx.seed is not None
        shape = (ctx.activations.shape[1], *ctx.inputs.shape[2:])
        noise = _Noise(ctx.seed, shape, float(std), ctx.device)

        def build(images: torch.Tensor, channels: torch.Tensor, sample: int) -> torch.Tensor:
            mask = masks(images, channels) + noise(sample)[channels].unsqueeze(1).to(ctx.inputs.dtype)
            return ctx.inputs[images] * mask

        return build


class ISCAM(_SampledScoreCAM):
    """IS-CAM (Integrated Score-CAM). Options: ``samples`` (10 integration steps), ``channels``."""

    name = "iscam"
    label = "IS-CAM"
    paper = "Naidu et al., arXiv:2010.03023 (2020)"
    defaults = {"samples": 10, "channels": None}
    flat_is_zero = True

    def _key(self, ctx: MethodContext) -> tuple[object, ...]:
        return ("iscam", ctx.options["samples"], ctx.layer_name, ctx.precision)

    def _build(
        self, ctx: MethodContext, masks: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> Build:
        steps = ctx.options["samples"]
        coefficients = [(s + 1) * (s + 2) / (2 * steps) for s in range(steps)]  # Σ_{j<=s+1} j / S

        def build(images: torch.Tensor, channels: torch.Tensor, sample: int) -> torch.Tensor:
            return coefficients[sample] * (ctx.inputs[images] * masks(images, channels))

        return build
