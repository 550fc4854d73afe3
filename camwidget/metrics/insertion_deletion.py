"""Insertion and deletion curves (RISE, Petsiuk et al., BMVC 2018): does the map rank pixels by importance?

Pixels are ordered by decreasing saliency (ties broken by raster order: a stable sort, so the order is
deterministic). With n = ceil(H·W / step) steps:

- **deletion** starts from the image and, at step s, has replaced the s·step most salient pixels (all
  channels) with a substrate. A faithful map makes the class probability fall fast: *low* AUC is good.
- **insertion** starts from a blurred copy of the image and, at step s, has restored the s·step most salient
  original pixels. A faithful map makes the probability rise fast: *high* AUC is good.

The score at every step is the softmax probability of the target class (by default the class predicted on
the original image), n + 1 points per curve, and AUC = (Σ s_i − s_0/2 − s_n/2) / n (trapezoids of width 1/n
over [0, 1]). Substrates for deletion: ``"zeros"`` (zeros of the model's input tensor, as RISE does: the
dataset's mean colour for a normalised input), ``"black"`` (black pixels, (0 − mean) / std) or ``"blur"`` (the
same blurred copy insertion starts from). The blur is RISE's: an 11×11 Gaussian kernel of sigma 5 built the
way RISE builds it (a unit impulse filtered by a sigma-5 Gaussian truncated at 4 sigma with reflecting
borders, so its weights are flatter than a sampled Gaussian), applied per channel by ``conv2d`` with zero
padding 5, in the model's input space.

Speed: all 2(n + 1) perturbed inputs of all images go through
:class:`~camwidget.engine.batching.ForwardRunner` as one stream (memory-bounded batches, ``inference_mode``,
the engine's precision rule, a private copy checked against the live model on every call). Each chunk is
built on the fly from an integer rank map per image (step s perturbs the pixels of rank < s·step); the
n + 1 images are never materialised together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from camwidget.engine.batching import ForwardRunner
from camwidget.engine.explainer import IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.hooks import preserved_state
from camwidget.engine.validation import Target, check_call, check_inputs
from camwidget.metrics._common import (
    check_maps,
    check_normalisation,
    model_device,
    score_reference,
)

__all__ = [
    "KINDS",
    "SUBSTRATES",
    "Curves",
    "auc",
    "blur_images",
    "insertion_deletion",
    "perturbed_image",
    "rise_blur_kernel",
    "saliency_ranks",
]

SUBSTRATES = ("zeros", "black", "blur")
KINDS = ("deletion", "insertion")
# Perturbed inputs per ForwardRunner call: bounds the (items, classes) logits kept at once (16 MB at K=1000).
_ITEMS_PER_CALL = 4096


# -- building blocks --------------------------------------------------------------------------------------
def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The (size, size) float32 blur kernel RISE uses, summing to 1.

    RISE filters a size×size unit impulse with a Gaussian of standard deviation ``sigma`` (truncated at
    4·sigma, borders reflected: ``d c b a | a b c d | d c b a``). Mass that falls outside the grid is
    reflected back in, so the kernel is flatter than a sampled, renormalised Gaussian. It is separable:
    the outer product of the 1-D result with itself.
    """
    size, sigma = _check_blur((size, sigma))
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    centre = size // 2
    line = torch.zeros(size, dtype=torch.float64)
    for i in range(size):
        for k in range(-radius, radius + 1):
            m = (i + k) % (2 * size)  # half-sample symmetric reflection has period 2·size
            if m >= size:
                m = 2 * size - 1 - m
            if m == centre:
                line[i] += weights[k + radius]
    return torch.outer(line, line).float()


def blur_images(x: torch.Tensor, blur: tuple[int, float] = (11, 5.0)) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W): each channel convolved with :func:`rise_blur_kernel`, zero padding
    size // 2 (as RISE's ``conv2d(..., padding=klen // 2)``), in float32, returned in ``x``'s dtype.
    (N, C, T, H, W) video or volumes are blurred frame by frame (the same 2-D kernel on each)."""
    size, sigma = _check_blur(blur)
    if x.ndim == 5:
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        return blur_images(frames, (size, sigma)).view(n, t, c, h, w).transpose(1, 2).contiguous()
    c = x.shape[1]
    kernel = rise_blur_kernel(size, sigma).to(x.device).expand(c, 1, size, size)
    return F.conv2d(x.float(), kernel, padding=size // 2, groups=c).to(x.dtype)


def saliency_ranks(maps: torch.Tensor) -> torch.Tensor:
    """(N, *S) maps -> (N, *S) int64 ranks: 0 for the most salient pixel, prod(S) − 1 for the least.

    Pixels of equal saliency keep raster order (row by row, left to right; frame by frame for video): a
    stable sort.
    """
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks.view(maps.shape)


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under (..., n + 1) curves sampled at 0, 1/n, ..., 1: (Σ s_i − s_0/2 − s_n/2) / n, shape (...)."""
    n = curves.shape[-1] - 1
    if n < 1:
        raise ValueError("a curve needs at least 2 points to have an area")
    return (curves.sum(-1) - curves[..., 0] / 2 - curves[..., -1] / 2) / n


def _check_blur(blur: object) -> tuple[int, float]:
    try:
        size, sigma = blur  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"blur must be (kernel_size, sigma), e.g. (11, 5.0); got {blur!r}") from None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"blur kernel size must be an odd positive int (RISE: 11); got {size!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not (0 < sigma < math.inf):
        raise ValueError(f"blur sigma must be a positive number (RISE: 5.0); got {sigma!r}")
    return size, float(sigma)


def _check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        raise ValueError(f"step must be a positive int (pixels perturbed per step, RISE: 224); got {step!r}")
    return step


def _check_substrate(substrate: object) -> str:
    if substrate not in SUBSTRATES:
        raise ValueError(f"substrate must be one of {', '.join(map(repr, SUBSTRATES))}; got {substrate!r}")
    return str(substrate)


def _kind_index(kind: object) -> int:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'deletion' or 'insertion'; got {kind!r}")
    return KINDS.index(str(kind))


class _Perturber:
    """Perturbed inputs of a few images, built on demand from their rank maps.

    Attributes:
        x: (G, C, H, W) original inputs; ranks: (G, H, W); blurred: (G, C, H, W); substrate: tensor
        broadcastable to (G, C, H, W) (deletion's replacement values).
    """

    def __init__(
        self,
        x: torch.Tensor,
        maps: torch.Tensor,
        step: int,
        substrate: str,
        blur: tuple[int, float],
        mean: torch.Tensor,
        std: torch.Tensor,
    ) -> None:
        self.x = x
        self.step = step
        self.ranks = saliency_ranks(maps)
        self.blurred = blur_images(x, blur)
        if substrate == "zeros":
            self.substrate = torch.zeros((1, x.shape[1], *[1] * (x.ndim - 2)), dtype=x.dtype, device=x.device)
        elif substrate == "black":
            self.substrate = (-mean / std).to(x.dtype)
        else:
            self.substrate = self.blurred

    def images(
        self,
        index: torch.Tensor,
        step_index: torch.Tensor,
        kind: torch.Tensor,
        *,
        channels_last: bool = False,
    ) -> torch.Tensor:
        """(B, C, H, W) perturbed inputs for B (image, step, kind) triples (kind 0 deletion, 1 insertion).

        Rows of the same (image, kind) that follow each other (the usual case: a chunk of one image's
        steps) are written in one broadcast ``torch.where`` straight into the output, without gathering
        copies of the image. ``channels_last`` builds the batch in that memory format (what the engine's
        layout twin consumes, so it needs no conversion).
        """
        b = index.shape[0]
        fmt = torch.channels_last if channels_last and self.x.ndim == 4 else torch.contiguous_format
        out = torch.empty((b, *self.x.shape[1:]), dtype=self.x.dtype, device=self.x.device, memory_format=fmt)
        if b == 0:
            return out
        key = index * 2 + kind
        cuts = ((key[1:] != key[:-1]).nonzero().flatten() + 1).tolist()
        for a, z in zip([0, *cuts], [*cuts, b], strict=True):
            i, k = int(index[a]), int(kind[a])
            limit = (step_index[a:z] * self.step).view(-1, *[1] * (self.ranks.ndim - 1))
            changed = (self.ranks[i] < limit).unsqueeze(1)
            x = self.x[i : i + 1]
            if k == 0:  # deletion: the changed pixels come from the substrate
                sub = self.substrate if self.substrate.shape[0] == 1 else self.substrate[i : i + 1]
                torch.where(changed, sub, x, out=out[a:z])
            else:  # insertion: the changed pixels are restored over the blurred copy
                torch.where(changed, x, self.blurred[i : i + 1], out=out[a:z])
        return out


# -- results ----------------------------------------------------------------------------------------------
@dataclass
class Curves:
    """Insertion and deletion curves of N images.

    Attributes:
        insertion: (N, n + 1) float32 score after restoring s·step pixels, s = 0..n: the target class's
            softmax probability for a class index (RISE), else the target's own score.
        deletion: (N, n + 1) float32 score after removing s·step pixels.
        fractions: (n + 1,) float32 x axis s / n in [0, 1]. Step s perturbs min(s·step, H·W) pixels; the
            last step may perturb fewer than ``step`` new pixels, as in RISE (see :attr:`pixel_fractions`).
        targets: (N,) int64 class scored per image (-1 where the target is not a class).
        target_name: what was scored ("predicted class", "segmentation class 15", ...).
        step: pixels perturbed per step. substrate: deletion's substrate. blur: (kernel size, sigma).
        precision: the precision the perturbed forwards ran at ("fp32", or "bf16"/"fp16" where the
            device computes it natively and it agreed with fp32, see :mod:`camwidget.engine.precision`).
    """

    insertion: torch.Tensor
    deletion: torch.Tensor
    fractions: torch.Tensor
    targets: torch.Tensor
    step: int
    substrate: str
    blur: tuple[int, float]
    precision: str = "fp32"
    target_name: str = "predicted class"
    _inputs: torch.Tensor | None = field(default=None, repr=False)
    _maps: torch.Tensor | None = field(default=None, repr=False)
    _mean: torch.Tensor | None = field(default=None, repr=False)
    _std: torch.Tensor | None = field(default=None, repr=False)

    @property
    def insertion_auc(self) -> torch.Tensor:
        """(N,) area under the insertion curve in [0, 1]; higher = more faithful."""
        return auc(self.insertion)

    @property
    def deletion_auc(self) -> torch.Tensor:
        """(N,) area under the deletion curve in [0, 1]; lower = more faithful."""
        return auc(self.deletion)

    @property
    def n_steps(self) -> int:
        """n = ceil(H·W / step); each curve has n + 1 points."""
        return self.insertion.shape[1] - 1

    @property
    def pixel_fractions(self) -> torch.Tensor:
        """(n + 1,) share of pixels perturbed at each step: min(s·step, H·W) / (H·W)."""
        if self._maps is None:
            raise RuntimeError("these Curves were built without their maps")
        hw = math.prod(self._maps.shape[1:])
        s = torch.arange(self.n_steps + 1, dtype=torch.float64)
        return ((s * self.step).clamp(max=hw) / hw).float()

    def image(self, index: int, step_index: int | Sequence[int], kind: str = "deletion") -> torch.Tensor:
        """The model input scored at ``step_index`` of image ``index``'s ``kind`` curve.

        Cheap (one rank sort and one blur of that image, no forward pass): for a widget's slider.

        Returns:
            (C, H, W) for an int ``step_index``, (S, C, H, W) for a sequence of S steps, in the model's
            input space (un-normalise with mean/std to display it).
        """
        if self._inputs is None or self._maps is None:
            raise RuntimeError("these Curves were built without their inputs and maps")
        return _perturbed(
            self._inputs,
            self._maps,
            index,
            step_index,
            kind,
            step=self.step,
            substrate=self.substrate,
            blur=self.blur,
            mean=self._mean,
            std=self._std,
        )

    def summary(self) -> dict[str, float]:
        """Mean insertion and deletion AUC over the images, as plain floats."""
        return {
            "insertion_auc": float(self.insertion_auc.mean()),
            "deletion_auc": float(self.deletion_auc.mean()),
        }


# -- public functions -------------------------------------------------------------------------------------
def insertion_deletion(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    step: int = 224,
    substrate: str = "zeros",
    blur: tuple[int, float] = (11, 5.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    precision: str = "auto",
    batch_size: int | str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Curves:
    """Insertion and deletion curves and their AUCs (RISE protocol, see the module doc).

    Args:
        model: classifier returning (N, K) logits, on any device; left exactly as it came (run in eval
            mode, train flags, ``requires_grad`` and hooks restored, nothing updated).
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects; or (N, C, T, H, W) video or
            volumes (pixels are then voxels, blurred frame by frame).
        maps: (N, H, W) (or (N, 1, H, W); (N, T, H, W) for video) saliency maps at the input resolution;
            only their order matters.
        target: None (default: the class predicted on each original image, fp32 forward), an int for all
            images, or N ints: scored as the class's softmax probability (RISE). Any other target of
            :mod:`camwidget.targets` (``Logit``, ``Sigmoid``, ``SegmentationClass``, a callable...) is scored
            by its own value, so the curve's range is the target's.
        step: pixels (all channels) perturbed per step, >= 1. Default 224 (RISE); n = ceil(H·W / step).
        substrate: deletion's replacement: "zeros" (default, RISE), "black" or "blur".
        blur: (odd kernel size, sigma) of insertion's starting image (and of the "blur" substrate).
            Default (11, 5.0), RISE's.
        mean, std: the inputs' normalisation, used by ``substrate="black"``. Default ImageNet's.
        precision: "auto" (default: the device's native low precision where it agrees with fp32, else
            fp32; :attr:`Curves.precision` says which ran), "fp32", "bf16" or "fp16".
        batch_size: "auto" (default) or perturbed inputs per forward.
        progress: ``progress(done, total)`` over the 2(n + 1)·N perturbed forwards; raise
            :class:`~camwidget.engine.batching.Cancelled` in it to stop.

    Returns:
        :class:`Curves` on the inputs' device.

    Raises:
        ValueError: maps of the wrong shape or not finite, step <= 0, unknown substrate, a target out of
            range, mismatched batch sizes (before the perturbed forwards; the model is left untouched).
    """
    model, inputs, wanted = check_call(model, inputs, target, precision=precision, batch_size=batch_size)
    maps = check_maps(maps, inputs)
    step = _check_step(step)
    substrate = _check_substrate(substrate)
    blur = _check_blur(blur)
    device = model_device(model)
    out_device = inputs.device
    x = inputs.detach().to(device)
    m, s = check_normalisation(mean, std, inputs.shape[1], device, x.ndim - 2)
    maps_d = maps.to(device)
    n_img = x.shape[0]
    n_steps = math.ceil(math.prod(x.shape[2:]) / step)
    points = n_steps + 1
    per_image = 2 * points
    total = n_img * per_image
    precisions: list[str] = []

    with preserved_state(model):
        scorer = score_reference(model, x, wanted)
        scores = torch.empty(n_img, 2, points, device=device)
        done_before = 0

        def report(done: int, _: int) -> None:
            if progress is not None:
                progress(done_before + done, total)

        # Class targets: the steps of several images share one stream of logits. Other targets: each image's
        # steps are scored by that image's target, one stream per image.
        group = 1 if scorer.per_image else max(1, _ITEMS_PER_CALL // per_image)
        runner: ForwardRunner | None = None
        for g0 in range(0, n_img, group):
            g1 = min(n_img, g0 + group)
            if runner is None or scorer.per_image:
                stream = scorer.stream(g0 if scorer.per_image else None, x)
                runner = ForwardRunner(
                    model, precision=precision, batch_size=batch_size, progress=report, **stream
                )
            perturber = _Perturber(x[g0:g1], maps_d[g0:g1], step, substrate, blur, m, s)

            def make_batch(
                start: int, stop: int, perturber: _Perturber = perturber, runner: ForwardRunner = runner
            ) -> torch.Tensor:
                j = torch.arange(start, stop, device=device)
                r = j % per_image
                # built in the layout the runner's private copy consumes, saving a conversion
                layout = runner.channels_last
                return perturber.images(j // per_image, r % points, r // points, channels_last=layout)

            out = runner.logits(make_batch, (g1 - g0) * per_image)
            if not scorer.per_image:
                assert scorer.classes is not None
                out = scorer.from_logits(out, scorer.classes[g0:g1].repeat_interleave(per_image))
            scores[g0:g1] = out.view(g1 - g0, 2, points)
            done_before += (g1 - g0) * per_image
            precisions.append(runner.precision_used or "fp32")

    return Curves(
        precision=next((p for p in precisions if p != "fp32"), "fp32"),
        insertion=scores[:, 1].to(out_device),
        deletion=scores[:, 0].to(out_device),
        fractions=(torch.arange(points, dtype=torch.float64) / n_steps).float().to(out_device),
        targets=(scorer.classes if scorer.classes is not None else torch.full((n_img,), -1)).to(out_device),
        target_name=scorer.target.name,
        step=step,
        substrate=substrate,
        blur=blur,
        _inputs=inputs,
        _maps=maps,
        _mean=m,
        _std=s,
    )


def perturbed_image(
    inputs: torch.Tensor,
    maps: torch.Tensor,
    index: int,
    step_index: int | Sequence[int],
    kind: str = "deletion",
    *,
    step: int = 224,
    substrate: str = "zeros",
    blur: tuple[int, float] = (11, 5.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """The input :func:`insertion_deletion` scores at ``step_index`` of image ``index``'s ``kind`` curve.

    No model needed and no forward pass: one rank sort and one blur of that image.

    Args:
        inputs: (N, C, H, W) preprocessed inputs. maps: (N, H, W) saliency maps.
        index: image index in [0, N). step_index: int or sequence of ints in [0, n], n = ceil(H·W / step).
        kind: "deletion" (s·step most salient pixels replaced by the substrate) or "insertion" (the blurred
            image with the s·step most salient pixels restored).
        step, substrate, blur, mean, std: as in :func:`insertion_deletion`.

    Returns:
        (C, H, W) for an int ``step_index`` or (S, C, H, W), on the inputs' device, in the model's input
        space.
    """
    inputs = check_inputs(inputs)
    maps = check_maps(maps, inputs)
    m, s = check_normalisation(mean, std, inputs.shape[1], inputs.device, inputs.ndim - 2)
    return _perturbed(
        inputs,
        maps,
        index,
        step_index,
        kind,
        step=_check_step(step),
        substrate=_check_substrate(substrate),
        blur=_check_blur(blur),
        mean=m,
        std=s,
    )


def _perturbed(
    inputs: torch.Tensor,
    maps: torch.Tensor,
    index: int,
    step_index: int | Sequence[int],
    kind: str,
    *,
    step: int,
    substrate: str,
    blur: tuple[int, float],
    mean: torch.Tensor | None,
    std: torch.Tensor | None,
) -> torch.Tensor:
    n, c = inputs.shape[:2]
    if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
        raise ValueError(f"index must be an int in [0, {n}); got {index!r}")
    n_steps = math.ceil(math.prod(inputs.shape[2:]) / step)
    single = isinstance(step_index, int) and not isinstance(step_index, bool)
    steps = torch.as_tensor([step_index] if single else list(step_index))  # type: ignore[arg-type]
    if steps.is_floating_point() or steps.dtype == torch.bool or steps.ndim != 1:
        raise ValueError(f"step_index must be an int or a sequence of ints; got {step_index!r}")
    if bool(((steps < 0) | (steps > n_steps)).any()):
        raise ValueError(
            f"step_index must lie in [0, {n_steps}] (n = ceil(H·W / step)); got {steps.tolist()}"
        )
    kind_i = _kind_index(kind)
    if mean is None or std is None:
        mean, std = check_normalisation(IMAGENET_MEAN, IMAGENET_STD, c, inputs.device, inputs.ndim - 2)
    index %= n
    x = inputs[index : index + 1].detach()
    image_map = maps[index : index + 1].to(x.device)
    perturber = _Perturber(x, image_map, step, substrate, blur, mean.to(x.device), std.to(x.device))
    zeros = torch.zeros(len(steps), dtype=torch.long, device=x.device)
    out = perturber.images(zeros, steps.to(x.device), zeros + kind_i)
    return out[0] if single else out
