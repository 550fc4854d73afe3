"""What the model "sees" of each audited image: its penultimate embedding, recorded during the audit.

Slice discovery (:mod:`camwidget.audit.slices`) and the gallery's embedding map need, for every image, the
representation the classifier's last layer reads: the **input of the model's last linear layer** (the
pooled features of a CNN, the class token of a ViT). :func:`find_penultimate` decides once, from one probe
forward, which layer that is: the last ``nn.Linear`` to run whose output is the logit vector and whose
input is one vector per image. A model without one (SqueezeNet's 1×1 convolution head) falls back to the
explained layer's activations averaged over space. :class:`PenultimateTap` then records that input during
the very forward pass the audit's :class:`~camwidget.Explainer` makes, with a hook that lives only inside
the engine's :func:`~camwidget.engine.hooks.preserved_state` (the model comes back as it went in).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camwidget.engine.hooks import LayerCapture, preserved_state
from camwidget.engine.layers import resolve_layer, split_entry
from camwidget.targets import as_logits

__all__ = ["PenultimateTap", "find_penultimate"]


@dataclass
class PenultimateTap:
    """Records the penultimate embedding during one forward of ``model``.

    Attributes:
        model: the audited model.
        module_name: the layer whose input (a linear head) or pooled output (the fallback) is recorded.
        kind: "linear input" or "pooled activations".
        dim: the embedding's length D.
    """

    model: nn.Module
    module_name: str
    kind: str
    dim: int
    _entry: str | None = None

    def describe(self) -> dict[str, Any]:
        """What the store's meta records: ``{"layer", "kind", "dim"}``."""
        return {"layer": self.module_name, "kind": self.kind, "dim": self.dim}

    @contextmanager
    def recording(self) -> Iterator[dict[str, torch.Tensor]]:
        """Within the block, the first forward of the model leaves its (N, D) float32 embedding (detached,
        on the model's device) in the yielded dict under "embedding". The model comes back as it went in."""
        got: dict[str, torch.Tensor] = {}
        module = dict(self.model.named_modules())[split_entry(self.module_name)[0]]
        with preserved_state(self.model, eval_mode=False):  # the explainer sets the modes itself
            if self.kind == "linear input":

                def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
                    if "embedding" not in got and args and isinstance(args[0], torch.Tensor):
                        got["embedding"] = args[0].detach().flatten(1).float()

                module.register_forward_pre_hook(hook)
                yield got
            else:
                with LayerCapture(module, entry=self._entry) as capture:
                    yield got
                    if capture.leaf is not None:
                        got["embedding"] = _pooled(capture.activations)


def _pooled(activations: torch.Tensor) -> torch.Tensor:
    """(N, C, *s) activations -> (N, C) float32 spatial means."""
    return activations.float().flatten(2).mean(dim=2)


def find_penultimate(model: nn.Module, example: torch.Tensor, layer_name: str) -> PenultimateTap:
    """Which layer's input is the penultimate embedding of ``model`` (one probe forward of ``example``).

    Args:
        model: the classifier; left exactly as it came.
        example: (1, C, H, W) input on the model's device.
        layer_name: the audit's explained layer, the fallback when no linear head is found.

    Returns:
        A :class:`PenultimateTap` on the last ``nn.Linear`` that runs, takes one vector per image and
        outputs the logits; else on the explained layer, averaged over space.
    """
    runs: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            runs.append((names[module], tuple(args[0].shape), tuple(output.shape)))

    with preserved_state(model), torch.no_grad():
        for module in names:
            if isinstance(module, nn.Linear):
                module.register_forward_hook(record)
        logits = as_logits(model(example))
        activations = None
        if not any(o == tuple(logits.shape) and len(i) == 2 for _, i, o in runs):
            module_name, entry = split_entry(layer_name)
            with LayerCapture(resolve_layer(model, module_name)[1], entry=entry) as capture:
                model(example)
                activations = capture.activations
    for name, inputs, output in reversed(runs):
        if output == tuple(logits.shape) and len(inputs) == 2:
            return PenultimateTap(model, name, "linear input", int(inputs[1]))
    assert activations is not None
    return PenultimateTap(
        model,
        split_entry(layer_name)[0],
        "pooled activations",
        int(activations.shape[1]),
        split_entry(layer_name)[1],
    )
