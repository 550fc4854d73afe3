"""Capture a layer's activations (and gradients) and leave the model exactly as it came.

Two pieces:

- :func:`preserved_state` puts a model in eval mode for the duration of an explanation and restores, on
  any exit (return, exception, ``KeyboardInterrupt``), every module's train/eval flag, every parameter's
  ``requires_grad`` and the module hook dictionaries. BatchNorm running statistics are never updated
  because nothing runs in train mode. It holds the model's lock (:mod:`.model_lock`) throughout, so two
  engine calls on one model never interleave their save and restore.
- :class:`LayerCapture` is a forward hook that copies the layer's output. When gradients are wanted it
  re-roots the autograd graph at that copy (a fresh leaf), so the backward pass stops at the layer: no
  parameter gradients are computed or accumulated (``.grad`` stays untouched), frozen models work, and the
  forward up to the layer can run under ``no_grad``. Downstream in-place ops (``ReLU(inplace=True)``)
  act on a second copy, never on the saved activation.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from camwidget.engine.model_lock import model_lock
from camwidget.engine.tokens import to_grid

__all__ = ["LayerCapture", "LayerOutputError", "capture_gradients", "describe_entries", "preserved_state"]

#: The per-module hook dictionaries of ``nn.Module`` (what ``preserved_state`` restores and the twin
#: checks for and strips).
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
)


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode, then restore exactly what the caller had.

    Restored on every exit path: each module's ``training`` flag (set directly, not through ``train()``,
    so custom ``train`` overrides are not triggered), each parameter's ``requires_grad``, and the keys of
    every module's hook dictionaries (hooks added inside the block are removed). Holds
    :func:`~camwidget.engine.model_lock.model_lock` for the whole block: a second engine call on the same
    model from another thread waits until this one has restored the model.
    """
    with model_lock(model):
        yield from _preserved(model, eval_mode)


def _preserved(model: nn.Module, eval_mode: bool) -> Iterator[nn.Module]:
    modules = list(model.modules())
    training = [m.training for m in modules]
    params = list(model.parameters())
    requires_grad = [p.requires_grad for p in params]
    hook_keys = [{name: set(getattr(m, name, {}) or {}) for name in HOOK_DICTS} for m in modules]
    try:
        if eval_mode:
            for m in modules:
                m.training = False
        yield model
    finally:
        for m, flag, keys in zip(modules, training, hook_keys, strict=True):
            m.training = flag
            for name, before in keys.items():
                hooks = getattr(m, name, None)
                if hooks:
                    for key in [k for k in hooks if k not in before]:
                        del hooks[key]
        for p, flag in zip(params, requires_grad, strict=True):
            if p.requires_grad != flag:
                p.requires_grad_(flag)


class LayerOutputError(ValueError):
    """The captured layer returned something other than one tensor and no entry was named."""


def describe_entries(output: object) -> list[tuple[str, str]]:
    """``(entry, shape)`` for each tensor entry of a dict/tuple/list layer output."""
    items = output.items() if isinstance(output, dict) else enumerate(output)  # type: ignore[arg-type]
    return [(str(k), "×".join(str(d) for d in v.shape[1:])) for k, v in items if isinstance(v, torch.Tensor)]


class LayerCapture:
    """Forward hook on one layer that records its output as ``activations`` (N, C, *s).

    Use as a context manager: the hook is registered on ``__enter__`` and removed on ``__exit__``.

    Args:
        layer: the module whose output is captured. If it runs several times in one forward (a shared
            ``ReLU``), the last call wins.
        entry: for a layer that returns a dict, tuple or list (a feature pyramid's levels), the key or index
            of the tensor to capture ("0", "pool", ...). None: the output must be one tensor.
        with_gradients: re-root the graph at the captured output so ``torch.autograd.grad(score,
            capture.leaf)`` gives d score / d activations. Grad mode is switched on inside the hook, so the
            forward up to the layer may run under ``torch.no_grad()``.
        reshape_transform: maps the raw output (e.g. ViT tokens (N, T, C)) to (N, C, h, w). Applied when
            :attr:`activations` / :meth:`gradients` are read. Without it, transformer tokens (and Swin's
            channels-last grids) are turned into (N, C, h, w) by :func:`~camwidget.engine.tokens.to_grid`.
    """

    def __init__(
        self,
        layer: nn.Module,
        *,
        entry: str | None = None,
        with_gradients: bool = False,
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.layer = layer
        self.entry = entry
        self.with_gradients = with_gradients
        self.reshape_transform = reshape_transform
        self.leaf: torch.Tensor | None = None
        self._handle: Any = None
        self._paused = False

    def _pick(self, output: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
        """The captured tensor and a function that puts a replacement for it back into the output."""
        if isinstance(output, torch.Tensor) and self.entry is None:
            return output, lambda t: t
        if (
            isinstance(output, dict)
            and self.entry is not None
            and isinstance(output.get(self.entry), torch.Tensor)
        ):
            key = self.entry

            def put_in_dict(t: torch.Tensor) -> Any:
                new = copy.copy(output)  # the same mapping type (OrderedDict for feature pyramids)
                new[key] = t
                return new

            return output[key], put_in_dict
        if isinstance(output, list | tuple) and self.entry is not None and self.entry.isdigit():
            index = int(self.entry)
            if index < len(output) and isinstance(output[index], torch.Tensor):

                def put_in_sequence(t: torch.Tensor) -> Any:
                    items = [t if i == index else v for i, v in enumerate(output)]
                    return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)

                return output[index], put_in_sequence
        raise LayerOutputError(self._entries_message(output))

    def _entries_message(self, output: Any) -> str:
        if isinstance(output, dict | list | tuple):
            entries = describe_entries(output)
            listed = ", ".join(f"{k!r} ({shape})" for k, shape in entries) or "no tensors"
            what = f"returns a {type(output).__name__} with entries {listed}"
            if self.entry is not None:
                return f"{what}, none called {self.entry!r}; name one of them as 'LAYER:ENTRY'"
            return (
                f"{what}; name the entry to explain as 'LAYER:ENTRY' (e.g. 'LAYER:{entries[0][0]}')"
                if (entries)
                else f"{what}; choose a layer whose output is a single (N, C, h, w) tensor"
            )
        if self.entry is not None:
            return f"returns a single {type(output).__name__}; it has no entry {self.entry!r}"
        return f"returns a {type(output).__name__}, not a tensor; choose a layer with an (N, C, h, w) output"

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Other forwards of the model inside the block (a target embedding a reference image) leave the
        capture alone."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self._paused:
            return None
        value, put_back = self._pick(output)
        if self.with_gradients and value.requires_grad:
            # Several layers captured in one forward: a capture upstream already re-rooted the graph, so this
            # output is part of it. Keep it as a node (the gradient flows through it to the upstream leaf)
            # and let downstream (possibly in-place) ops work on a copy.
            self.leaf = value
            return put_back(value.clone())
        leaf = value.detach().clone()
        self.leaf = leaf
        if not self.with_gradients:
            return None  # the model's own output flows on; our copy is safe from in-place ops
        torch.set_grad_enabled(True)  # restored by the caller's grad-mode context on exit
        leaf.requires_grad_(True)
        return put_back(leaf.clone())  # downstream (possibly in-place) ops work on a copy, not on the leaf

    def __enter__(self) -> LayerCapture:
        self.leaf = None
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def reshaped(self) -> bool:
        """Whether the captured output is turned into a grid (a ``reshape_transform``, or transformer
        tokens found by :func:`~camwidget.engine.tokens.to_grid`)."""
        if self.reshape_transform is not None:
            return True
        return self.leaf is not None and to_grid(self.layer, self.leaf.detach()) is not None

    def _shape(self, t: torch.Tensor) -> torch.Tensor:
        if self.reshape_transform is not None:
            t = self.reshape_transform(t)
        else:
            grid = to_grid(self.layer, t)
            t = t if grid is None else grid
        if t.ndim not in (4, 5):
            hint = "" if self.reshape_transform else "; pass reshape_transform= for token (ViT/Swin) layers"
            raise ValueError(
                f"layer output has shape {tuple(t.shape)}, expected (N, C, h, w) (or (N, C, t, h, w)){hint}"
            )
        return t

    @property
    def activations(self) -> torch.Tensor:
        """(N, C, *s) float32 detached copy of the layer's output from the last forward."""
        if self.leaf is None:
            raise RuntimeError("the layer did not run during the forward pass; is it part of the model?")
        return self._shape(self.leaf.detach()).float()

    def gradients(self, score: torch.Tensor) -> torch.Tensor:
        """(N, C, *s) float32 gradient of ``score.sum()`` with respect to the captured output."""
        if self.leaf is None or not self.leaf.requires_grad:
            raise RuntimeError("LayerCapture was not created with with_gradients=True")
        (grad,) = torch.autograd.grad(score.sum(), self.leaf, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(self.leaf)
        return self._shape(grad).float()


def capture_gradients(
    captures: list[LayerCapture], score: torch.Tensor, *, hessian: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Gradients of ``score.sum()`` at several captured layers in one backward pass.

    Args:
        captures: captures made with ``with_gradients=True`` during the same forward (the first to run
            re-rooted the graph; the later ones are nodes of it).
        score: (N,) scores computed from that forward's output.
        hessian: also return, per layer, the Hessian of the score with respect to the layer's output A applied
            to A, H·A = ``autograd.grad(g, A, grad_outputs=A)`` (ShapleyCAM's second-order term). It is zero
            where the network after the layer is piecewise linear in A (ReLU, max-pooling, linear heads).

    Returns:
        ``(gradients, products)``: (N, C, *s) float32 tensors per capture (after ``reshape_transform``), and
        the Hessian-vector products (same shapes) or None.
    """
    leaves = []
    for capture in captures:
        if capture.leaf is None or not capture.leaf.requires_grad:
            raise RuntimeError("LayerCapture was not created with with_gradients=True")
        leaves.append(capture.leaf)
    grads = torch.autograd.grad(score.sum(), leaves, allow_unused=True, create_graph=hessian)
    grads = [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves, strict=True)]
    products = None
    if hessian:
        products = []
        for g, leaf in zip(grads, leaves, strict=True):
            hv = None
            if g.requires_grad:
                (hv,) = torch.autograd.grad(
                    g, leaf, grad_outputs=leaf.detach(), retain_graph=True, allow_unused=True
                )
            products.append(torch.zeros_like(leaf) if hv is None else hv)
    shaped = [c._shape(g.detach()).float() for c, g in zip(captures, grads, strict=True)]
    hvps = (
        None
        if products is None
        else [c._shape(h.detach()).float() for c, h in zip(captures, products, strict=True)]
    )
    return shaped, hvps
