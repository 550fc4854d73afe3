"""Which layers can be explained: discovery in forward order, the default choice, name <-> module."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from camwidget.engine.hooks import preserved_state
from camwidget.engine.tokens import to_grid, transformer_layer

__all__ = ["LayerInfo", "candidate_layers", "default_layer", "layer_name", "resolve_layer", "split_entry"]


@dataclass(frozen=True)
class LayerInfo:
    """A layer a user can explain.

    Attributes:
        name: dotted name from ``model.named_modules()``.
        shape: the layer's output shape for one image, (C, h, w) (after ``reshape_transform``).
        aliases: other module names whose output is the very same tensor (``layer4``, ``layer4.1`` and
            ``layer4.1.relu`` in a ResNet); any of them selects the same activations.
    """

    name: str
    shape: tuple[int, ...]
    aliases: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """``"features.12 (512×13×13)"``: the name with its output shape, for selectors."""
        return f"{self.name} ({'×'.join(str(s) for s in self.shape)})"


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in model.parameters():
        return t.device, (t.dtype if t.is_floating_point() else torch.float32)
    for t in model.buffers():
        return t.device, (t.dtype if t.is_floating_point() else torch.float32)
    return torch.device("cpu"), torch.float32


def _is_container(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def candidate_layers(
    model: nn.Module,
    example_input: torch.Tensor | None = None,
    *,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[LayerInfo]:
    """The layers whose output is a spatial map (N, C, h, w with h·w > 1), in forward order.

    Runs one forward pass of ``example_input`` (default: a (1, 3, 224, 224) zero tensor on the model's
    device and dtype) with temporary hooks on every submodule, then removes them; the model comes back
    in its own train/eval mode. Modules that return the same tensor (a block and its last ``ReLU``) are
    listed once: under the deepest block (a module with children) of the group, the others as aliases.

    Args:
        model: the classifier.
        example_input: (N, 3, H, W) input, preprocessed as the model expects.
        reshape_transform: turns a token layer's output (N, T, C) into (N, C, h, w); with it, token layers
            become candidates too.

    Returns:
        ``LayerInfo`` list in the order the layers finish computing during the forward pass.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if example_input is None:
        device, dtype = _model_device_dtype(model)
        example_input = torch.zeros(1, 3, 224, 224, device=device, dtype=dtype)
    records: list[tuple[str, torch.Tensor]] = []
    names = {m: n for n, m in model.named_modules() if n}

    def hook(module: nn.Module, args: object, output: object) -> None:
        if module not in names:
            return
        if isinstance(output, torch.Tensor):
            records.append((names[module], output))
        elif isinstance(output, dict | list | tuple):  # feature pyramids: each tensor entry, as "name:key"
            items = output.items() if isinstance(output, dict) else enumerate(output)
            records.extend((f"{names[module]}:{k}", v) for k, v in items if isinstance(v, torch.Tensor))

    with preserved_state(model), torch.no_grad():
        handles = [m.register_forward_hook(hook) for m in names]
        try:
            model(example_input)
        finally:
            for h in handles:
                h.remove()

    # Group the modules that returned the same tensor; keep each group at its last appearance.
    groups: dict[tuple[int, int, tuple[int, ...]], list[str]] = {}
    order: dict[tuple[int, int, tuple[int, ...]], int] = {}
    shapes: dict[tuple[int, int, tuple[int, ...]], tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    for position, (name, out) in enumerate(records):
        t = out
        if reshape_transform is not None and out.ndim == 3:
            try:
                t = reshape_transform(out)
            except Exception:  # a transform meant for another layer's token shape
                continue
        elif reshape_transform is None and name in modules:  # transformer tokens -> their grid
            grid = to_grid(modules[name], out)
            t = out if grid is None else grid
        if t.ndim not in (4, 5) or math.prod(t.shape[2:]) <= 1 or t.shape[0] != example_input.shape[0]:
            continue  # not spatial, or not one row per image (a detector's per-box features)
        key = (out.data_ptr(), out.storage_offset(), tuple(out.shape))
        members = groups.setdefault(key, [])
        if name not in members:
            members.append(name)
        order[key] = position
        shapes[key] = tuple(t.shape[1:])
    # A module that runs several times (a shared ReLU) is captured at its last call: list it only there.
    last_group = {name: key for key in sorted(groups, key=order.__getitem__) for name in groups[key]}
    infos = []
    for key in sorted(groups, key=order.__getitem__):
        members = [n for n in groups[key] if last_group[n] == key]
        if not members:
            continue
        containers = [n for n in members if n in modules and _is_container(modules[n])]
        chosen = max(containers, key=lambda n: n.count(".")) if containers else members[-1]
        infos.append(LayerInfo(chosen, shapes[key], tuple(n for n in members if n != chosen)))
    return infos


def default_layer(model: nn.Module, example_input: torch.Tensor | None = None, **kwargs: object) -> str:
    """Name of the last spatial layer before global pooling.

    Layers that produce one channel per output class (SqueezeNet's convolutional classifier) are class
    score maps rather than features, and are passed over when an earlier feature layer exists. For a
    vision transformer (ViT, DeiT, Swin), the last block's first normalisation
    (:func:`~camwidget.engine.tokens.transformer_layer`).
    """
    if example_input is None:
        device, dtype = _model_device_dtype(model)
        example_input = torch.zeros(1, 3, 224, 224, device=device, dtype=dtype)
    if kwargs.get("reshape_transform") is None:
        with preserved_state(model):
            transformer = transformer_layer(model, example_input)
        if transformer is not None:
            return transformer
    infos = candidate_layers(model, example_input, **kwargs)  # type: ignore[arg-type]
    if not infos:
        raise ValueError(
            f"{type(model).__name__} has no layer with a spatial (N, C, h, w) output; "
            "for token models with non-square grids pass a reshape_transform and an explicit layer"
        )
    with preserved_state(model), torch.no_grad():
        out = model(example_input)
    num_classes = _class_count(out)
    features = [i for i in infos if i.shape[0] != num_classes]
    return (features or infos)[-1].name


def _class_count(output: object) -> int:
    """K for (N, K) logits or (N, K, H, W) segmentation scores (in a tuple or a dict's 'out'); else -1."""
    value = output["out"] if isinstance(output, dict) and "out" in output else output
    if isinstance(value, list | tuple) and value and isinstance(value[0], torch.Tensor):
        value = value[0]
    if not isinstance(value, torch.Tensor) and isinstance(getattr(value, "logits", None), torch.Tensor):
        value = value.logits
    if isinstance(value, torch.Tensor) and value.ndim in (2, 4):
        return int(value.shape[1])
    return -1


def split_entry(name: str) -> tuple[str, str | None]:
    """``"backbone.fpn:0"`` -> ``("backbone.fpn", "0")``: a module name and the entry of its dict/tuple
    output to explain (None for a module whose output is one tensor)."""
    module, sep, entry = name.partition(":")
    return (module, entry) if sep else (name, None)


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for a dotted name or a submodule of ``model``.

    A name may end in ``:entry`` to pick one tensor of a layer whose output is a dict, tuple or list (a
    feature pyramid's ``"backbone.fpn:0"``); the name returned keeps the entry.

    Raises:
        ValueError: the name is not a module of the model (the message lists close matches and the
            top-level candidates), or the module is not part of the model.
    """
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer and name:
                return name, module
        raise ValueError(f"the given {type(layer).__name__} module is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or an nn.Module, got {type(layer).__name__}")
    if layer in modules and layer:
        return layer, modules[layer]
    module, entry = split_entry(layer)
    if entry is not None and module in modules and module and entry:
        return layer, modules[module]
    top = [n for n in modules if n and "." not in n]
    close = difflib.get_close_matches(module, [n for n in modules if n], n=4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"layer {layer!r} not found{hint} candidates: {', '.join(top)}")


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """Dotted name of ``layer`` inside ``model``."""
    return resolve_layer(model, layer)[0]
