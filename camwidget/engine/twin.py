"""The private inference copy ("twin") that runs the engine's long streams of forwards, and its proof.

Score-CAM, Ablation-CAM and the perturbation metrics run hundreds of forwards per image. They run them on a
private deep copy of the model in eval mode, with channels_last weights and BatchNorm folded into the
convolutions (:mod:`.folding`): 1.3-2x faster than the caller's module on CPUs, and the caller's model is
never converted. A copy can go stale, though: weights changed through ``.data`` (no version counter moves),
a parameter-free module swapped (``model[2] = nn.Tanh()``), a plain attribute changed, a forward hook added.
So a copy never produces a number on trust:

- it is built only for a model that carries no hooks (hooks of the user's must run, so such a model runs
  itself) and that has 2-D convolutions (the layout is what makes the copy pay);
- **on every call** the copy must reproduce the live model's fp32 logits on the call's own unperturbed
  inputs (the caller computed those on the live model anyway) and on the first perturbed input (one more
  live forward), within float rounding (:func:`same_logits`). If it does not, a fresh copy is built and
  checked; then an unfolded fresh copy; and if none matches, the call runs on the live model itself.

Copies are kept per model (weakly: dropped with the model) and per excluded layer (a layer the caller will
hook must not be folded away), at most two per model. What the check costs is two forwards of a batch of
one perturbed input (one live, one on the copy) and one forward of the unperturbed inputs on the copy,
per call.
"""

from __future__ import annotations

import copy
import threading
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from camwidget.engine.folding import fold_batchnorm
from camwidget.engine.hooks import HOOK_DICTS

__all__ = ["TwinStore", "build_twin", "has_hooks", "same_logits", "twins"]

# fp32 logits of the copy and of the live model may differ by the rounding of a different summation order
# (folded BatchNorm, channels_last kernels): ~1e-6 of the logits' scale measured; a stale copy differs by
# orders of magnitude more.
_RTOL = 1e-4


def has_hooks(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries a hook, or a global module hook is registered."""
    from torch.nn.modules import module as module_globals

    for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        if getattr(module_globals, name, None):
            return True
    return any(getattr(m, name, None) for m in model.modules() for name in HOOK_DICTS)


def same_logits(copy_logits: torch.Tensor, live_logits: torch.Tensor) -> bool:
    """Whether (B, K) fp32 logits of the copy equal the live model's up to float rounding: every entry
    within 1e-4 of the live logits' largest magnitude (plus 1e-6 absolute)."""
    if copy_logits.shape != live_logits.shape or not bool(torch.isfinite(copy_logits).all()):
        return False
    scale = float(live_logits.abs().max()) if live_logits.numel() else 0.0
    return bool((copy_logits - live_logits).abs().max() <= _RTOL * scale + 1e-6)


def build_twin(
    model: nn.Module, example: torch.Tensor, *, fold: bool, exclude: frozenset[str] = frozenset()
) -> tuple[nn.Module, frozenset[str]]:
    """A fresh private copy of ``model``: eval mode, no hooks, ``requires_grad`` off, BatchNorm folded into
    the preceding convolutions unless ``fold`` is False (pairs touching a name in ``exclude`` stay), and
    channels_last weights. ``example`` (1, C, H, W) is one input, used to find the foldable pairs.

    Returns the copy and the names of the modules folded away (convolutions and BatchNorms).
    Raises whatever ``copy.deepcopy`` raises for modules that cannot be copied."""
    with torch.no_grad():
        twin = copy.deepcopy(model).eval()
    for module in twin.modules():
        for name in HOOK_DICTS:
            hooks = getattr(module, name, None)
            if hooks:
                hooks.clear()
    twin.requires_grad_(False)
    folded = fold_batchnorm(twin, example, exclude) if fold else frozenset()
    return twin.to(memory_format=torch.channels_last), folded


def _fingerprint(model: nn.Module) -> tuple[object, ...]:
    tensors = [*model.parameters(), *model.buffers()]
    return tuple(id(t) for t in tensors), sum(t._version for t in tensors)


@dataclass
class _Entry:
    fingerprint: tuple[object, ...]
    twin: nn.Module
    folded: frozenset[str]  # modules folded away (empty: an unfolded copy)


@dataclass
class TwinStore:
    """The copies of one model, keyed by the layer names kept unfolded; whether copies were refused for
    the model's current parameters (then calls go straight to the live model); and whether folding is known
    to change this model's logits (then copies are built unfolded)."""

    entries: dict[frozenset[str], _Entry] = field(default_factory=dict)
    refused: tuple[object, ...] | None = None
    fold_fails: bool = False

    def lookup(self, model: nn.Module, hooked: str | None) -> tuple[frozenset[str], _Entry] | None:
        """A copy made for the model's current parameters in which layer ``hooked`` (if any) is intact."""
        fingerprint = _fingerprint(model)
        keys = [frozenset({hooked}), frozenset()] if hooked else [frozenset()]
        for key in keys:
            entry = self.entries.get(key)
            if (
                entry is not None
                and entry.fingerprint == fingerprint
                and not (key == frozenset() and hooked in entry.folded)
            ):
                return key, entry
        return None

    def put(self, model: nn.Module, key: frozenset[str], twin: nn.Module, folded: frozenset[str]) -> None:
        if key:  # at most one special copy besides the plain one: a user trying Ablation-CAM on layer
            # after layer must not pile up a copy of the weights per layer
            for other in [k for k in self.entries if k]:
                del self.entries[other]
        self.entries[key] = _Entry(_fingerprint(model), twin, folded)
        self.refused = None

    def drop(self, key: frozenset[str]) -> None:
        self.entries.pop(key, None)

    def refuse(self, model: nn.Module) -> None:
        """No copy reproduces the model (it is not deterministic, or not copyable): run it live until its
        parameters change."""
        self.entries.clear()
        self.refused = _fingerprint(model)

    def is_refused(self, model: nn.Module) -> bool:
        return self.refused is not None and self.refused == _fingerprint(model)


_STORES: weakref.WeakKeyDictionary[nn.Module, TwinStore] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def twins(model: nn.Module) -> TwinStore:
    """The :class:`TwinStore` of ``model`` (use it under the model's lock)."""
    with _GUARD:
        store = _STORES.get(model)
        if store is None:
            store = _STORES[model] = TwinStore()
        return store
