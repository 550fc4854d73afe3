"""Model-parameter randomisation test (Adebayo et al., NeurIPS 2018, "Sanity Checks for Saliency Maps").

A map that explains the model must change when the model changes. On a deep copy of the model, the
parameters are re-initialised module by module from the output layer down (cascading: every step keeps the
layers randomised before it), and after each step the map of the *same* class (the original prediction, kept
fixed) is compared with the original map by

- Spearman's rank correlation (average ranks for ties), and
- SSIM (Wang et al. 2004: 11×11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, mean over
  the valid region).

A faithful method decorrelates quickly (correlations fall towards 0); a method that is an edge detector in
disguise keeps producing the same map. Both measures are implemented here in torch (no scikit-image).

Randomisation re-initialises a module as at the training start (Adebayo et al.), from a private
``torch.Generator`` seeded per module, never torch's global random state (other threads may draw from it):
convolutions and linear layers get PyTorch's default initialisation (Kaiming-uniform weights with
a = √5, biases uniform in ±1/√fan_in), normalisation layers their ``reset_parameters()`` (weight 1, bias 0,
running mean 0 and variance 1: no random draw), and any other module its direct parameters redrawn from a
normal with the old tensor's mean and standard deviation (0.02 where that is 0). "From the top" is the
reverse of the order in which modules with parameters first run in a forward pass.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camwidget.engine.batching import model_device
from camwidget.engine.explainer import Explainer
from camwidget.engine.hooks import preserved_state
from camwidget.engine.layers import resolve_layer
from camwidget.engine.validation import Target, check_call
from camwidget.methods.registry import get_method
from camwidget.metrics._common import fixed_target

__all__ = [
    "RANDOMISED_MAX",
    "REPEAT_MIN",
    "SanityVerdict",
    "cascade_order",
    "randomize_module",
    "sanity_check",
    "sanity_verdict",
    "spearman",
    "ssim",
]


# -- similarity measures ---------------------------------------------------------------------------------
def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """(N, M) -> (N, M) float64 ranks 1..M, tied values sharing their average rank."""
    out = torch.empty(x.shape, dtype=torch.float64, device=x.device)
    for i in range(x.shape[0]):
        values, order = torch.sort(x[i])
        _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()  # 1-based rank of each group's last member
        average = ends - (counts.double() - 1) / 2
        out[i, order] = average[inverse]
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps: (N, ...) and (N, ...) -> (N,) float32 in [-1, 1].

    Ties get their average rank. A constant map shares no rank information with anything: its correlation
    is 0 (not NaN).
    """
    if a.shape != b.shape:
        raise ValueError(f"spearman needs maps of equal shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    ra = _average_ranks(a.detach().flatten(1).double())
    rb = _average_ranks(b.detach().flatten(1).double())
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    denom = ra.norm(dim=1) * rb.norm(dim=1)
    r = torch.where(denom > 0, (ra * rb).sum(1) / denom.clamp_min(1e-300), torch.zeros_like(denom))
    return r.clamp(-1, 1).float()


def ssim(
    a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5, data_range: float = 1.0
) -> torch.Tensor:
    """Mean structural similarity of each pair of maps: (N, H, W) and (N, H, W) -> (N,) float32 in [-1, 1].

    Gaussian window ``window``×``window`` (default 11, ``sigma`` 1.5), constants C1 = (0.01·L)², C2 =
    (0.03·L)² with L = ``data_range`` (default 1, for maps in [0, 1]); averaged over the positions where the
    window fits entirely (maps smaller than the window use a window of their size).
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(
            f"ssim needs two (N, H, W) tensors of equal shape; got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    size = min(window, a.shape[-1], a.shape[-2])
    offsets = torch.arange(size, dtype=torch.float64, device=a.device) - (size - 1) / 2
    g = torch.exp(-0.5 * (offsets / sigma) ** 2)
    g = (g / g.sum()).float()
    kernel = torch.outer(g, g).view(1, 1, size, size)
    x, y = a.detach().float().unsqueeze(1), b.detach().float().unsqueeze(1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel)

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


# -- randomisation ---------------------------------------------------------------------------------------
def cascade_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters directly, from the output down.

    The order is the reverse of the order in which the modules first start running during a forward pass
    of ``example`` (modules that never run are left out: they cannot change the output). Temporary hooks
    are removed and the model's mode restored.
    """
    owners = {m: name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))}
    seen: list[str] = []

    def hook(module: nn.Module, args: object) -> None:
        name = owners[module]
        if name not in seen:
            seen.append(name)

    with preserved_state(model), torch.inference_mode():
        handles = [m.register_forward_pre_hook(hook) for m in owners]
        try:
            model(example)
        finally:
            for h in handles:
                h.remove()
    return seen[::-1]


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def randomize_module(module: nn.Module, generator_seed: int) -> None:
    """Re-initialise ``module``'s own parameters in place, deterministically from ``generator_seed``,
    with a private generator: the global random state is neither read nor changed (see the module doc)."""
    first = next(module.parameters(recurse=False))
    generator = torch.Generator(device=first.device).manual_seed(generator_seed)
    with torch.no_grad():
        if isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            return
        if isinstance(module, _NORMS):
            module.reset_parameters()  # ones and zeros: no random draw
            return
        for p in module.parameters(recurse=False):
            std = float(p.float().std()) if p.numel() > 1 else 0.0
            p.normal_(float(p.float().mean()), std if std > 0 else 0.02, generator=generator)


def sanity_check(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    layer: str | nn.Module | None,
    target: Target = None,
    max_layers: int | None = None,
    seed: int = 0,
    explain_seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    return_maps: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """Cascading parameter randomisation: how the maps of ``method`` change as the model is randomised.

    The caller's model is never modified: a deep copy (same device; twice the memory meanwhile) is
    randomised. The class explained is the original prediction (or ``target``) at every step.

    Args:
        model: classifier returning (N, K) logits.
        inputs: (N, C, H, W) float tensor, preprocessed as the model expects.
        method: a name from :data:`camwidget.METHODS`.
        layer: the explained layer (submodule of ``model`` or dotted name); None = the engine's default,
            resolved once on the original model and kept fixed.
        target: None (the class predicted on each original image), an int, or N ints.
        max_layers: stop after randomising this many modules (None, default: all, down to the first
            layer). Each step costs one explanation.
        seed: seeds the re-initialisations (step k uses seed + k). Default 0.
        explain_seed: a stochastic method's own ``seed`` option (its draws), the same at every step (None:
            the method's default, a fresh seed per explanation).
        progress: called as ``progress(done, total)`` after each step.
        return_maps: also return the maps: each row gets "maps", the (N, H, W) float32 CPU maps in [0, 1]
            after that step, and "original", the maps of the unchanged model (the same tensor in every
            row). Default False (the maps cost N·H·W floats per step).
        **options: passed to :func:`camwidget.explain` (method options, ``precision``, ``mean``/``std``...).

    Returns:
        One dict per randomised module, from the top: "step" (1-based count of randomised modules), "layer"
        (its name), "spearman" and "ssim" (floats: means over the images), "spearman_per_image" and
        "ssim_per_image" ((N,) float32 CPU tensors), both against the original map; with ``return_maps``,
        also "maps" and "original".
    """
    model, inputs, wanted = check_call(model, inputs, target)
    if get_method(method).stochastic() and explain_seed is not None:  # an unknown name fails here
        options = {**options, "seed": explain_seed}
    if max_layers is not None and (
        isinstance(max_layers, bool) or not isinstance(max_layers, int) or max_layers < 1
    ):
        raise ValueError(f"max_layers must be None or a positive int; got {max_layers!r}")
    if isinstance(layer, nn.Module) or isinstance(layer, str):
        layer_name, _ = resolve_layer(model, layer)
    elif layer is None:
        layer_name = None
    else:
        raise TypeError(f"layer must be a submodule, its dotted name or None; got {type(layer).__name__}")
    x = inputs.detach().to(model_device(model))

    clone = copy.deepcopy(model)
    with preserved_state(clone):
        targets = fixed_target(clone, x, wanted)
    explainer = Explainer(clone, layer_name, method, **options)
    original = explainer(x, targets)
    original_cpu = original.detach().cpu() if return_maps else None
    layer_name = explainer.layer_name
    explainer.release()
    order = cascade_order(clone, x[:1])
    if max_layers is not None:
        order = order[:max_layers]
    modules = dict(clone.named_modules())
    rows: list[dict[str, Any]] = []
    for k, name in enumerate(order, start=1):
        randomize_module(modules[name], seed + k)
        with Explainer(clone, layer_name, method, **options) as randomised:
            maps = randomised(x, targets)
        rho = spearman(original, maps).cpu()
        sim = ssim(original, maps).cpu()
        rows.append(
            {
                "step": k,
                "layer": name,
                "spearman": float(rho.mean()),
                "ssim": float(sim.mean()),
                "spearman_per_image": rho,
                "ssim_per_image": sim,
            }
        )
        if return_maps:
            rows[-1]["maps"] = maps.detach().cpu()
            rows[-1]["original"] = original_cpu
        if progress is not None:
            progress(k, len(order))
    return rows


# -- a verdict -------------------------------------------------------------------------------------------
REPEAT_MIN = 0.9
"""A map must be a function of the model and the image: explained twice, unchanged, Spearman >= this."""
RANDOMISED_MAX = 0.5
"""...and must depend on the weights: once the cascade has randomised the model, |Spearman| with the original
map must be <= this."""


@dataclass(frozen=True)
class SanityVerdict:
    """The outcome of :func:`sanity_verdict`.

    Attributes:
        passed: ``repeat >= repeat_min`` and ``randomised <= randomised_max``.
        repeat: mean Spearman between two explanations of the unchanged model (a stochastic method with
            two different seeds): how much of the map is the method's own noise.
        randomised: mean |Spearman| between the original map and the map once the cascade has randomised
            ``depth`` modules (absolute, as Adebayo et al. report it: a principal component's sign is
            arbitrary).
        depth: how many modules were randomised (from the output down).
        rows: :func:`sanity_check`'s rows.
        reason: one sentence saying why it passed or failed.
    """

    passed: bool
    repeat: float
    randomised: float
    depth: int
    rows: list[dict[str, Any]]
    reason: str


def sanity_verdict(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    layer: str | nn.Module | None = None,
    target: Target = None,
    max_layers: int | None = None,
    repeat_min: float = REPEAT_MIN,
    randomised_max: float = RANDOMISED_MAX,
    seed: int = 0,
    explain_seed: int | None = None,
    **options: Any,
) -> SanityVerdict:
    """Pass or fail the model-randomisation sanity check, with both halves of what it needs.

    A map passes when (1) it is reproducible: two explanations of the unchanged model agree (Spearman >=
    ``repeat_min``, default 0.9; a stochastic method given no ``explain_seed`` draws with seeds ``seed + 1``
    and ``seed + 2``, so its own noise counts and the verdict is deterministic; the cascade then uses
    ``seed + 1`` throughout, so only the weights change), and (2) it depends on the weights: once the
    cascade of :func:`sanity_check` has randomised the model (every module with parameters, from the output
    down; ``max_layers`` stops it earlier), the mean |Spearman| with the original map is <=
    ``randomised_max`` (default 0.5). The first
    half is what the classic check lacks: a random map (RandomCAM with a fresh seed each call) decorrelates
    perfectly under randomisation without telling anything about the model; it fails (1). A method blind to
    the weights (an edge detector in disguise) fails (2).

    Args:
        model, inputs, layer, target, max_layers, seed, explain_seed, options: as :func:`sanity_check`
            (with ``explain_seed`` both explanations draw the same: ``repeat`` is then 1 by construction).
        method: a name from :data:`camwidget.METHODS`.
        repeat_min, randomised_max: the thresholds.

    Returns:
        A :class:`SanityVerdict`. Costs 3 + (modules randomised) explanations.
    """
    model, inputs, wanted = check_call(model, inputs, target)
    stochastic = get_method(method).stochastic()
    x = inputs.detach().to(model_device(model))
    with preserved_state(model):
        targets = fixed_target(model, x, wanted)
    maps = []
    layer_name: str | None = None
    for k in range(2):
        draws = {"seed": seed + 1 + k if explain_seed is None else explain_seed} if stochastic else {}
        with Explainer(model, layer, method, **options, **draws) as explainer:
            maps.append(explainer(x, targets))
            layer_name = explainer.layer_name
    repeat = float(spearman(maps[0], maps[1]).mean())
    if stochastic and explain_seed is None:
        explain_seed = seed + 1
    rows = sanity_check(
        model,
        x,
        method=method,
        layer=layer_name,
        target=targets,
        max_layers=max_layers,
        seed=seed,
        explain_seed=explain_seed,
        **options,
    )
    randomised = float(rows[-1]["spearman_per_image"].abs().mean())
    depth = len(rows)
    passed = repeat >= repeat_min and randomised <= randomised_max
    if repeat < repeat_min:
        reason = (
            f"not reproducible: two explanations of the unchanged model agree at Spearman {repeat:.2f} "
            f"< {repeat_min}"
        )
    elif randomised > randomised_max:
        reason = (
            f"blind to the weights: with {depth} modules randomised the map keeps |Spearman| "
            f"{randomised:.2f} > {randomised_max} with the original"
        )
    else:
        reason = (
            f"reproducible (Spearman {repeat:.2f}) and dependent on the weights (|Spearman| {randomised:.2f} "
            f"with {depth} modules randomised)"
        )
    return SanityVerdict(passed, repeat, randomised, depth, rows, reason)
