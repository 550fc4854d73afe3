"""Which layers can be explained: discovery in forward order, the default choice, name <-> module.

:class:`LayerCatalog` owns layer naming (canonical names, aliases, the default-layer rule); the functions
:func:`candidate_layers` and :func:`default_layer` are its one-call forms.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from camwidget.engine.batching import model_device
from camwidget.engine.hooks import preserved_state
from camwidget.engine.tokens import to_grid, transformer_layer
from camwidget.engine.validation import model_dtype

__all__ = [
    "LayerCatalog",
    "LayerInfo",
    "NoSpatialLayerError",
    "candidate_layers",
    "default_layer",
    "layer_name",
    "resolve_layer",
    "split_entry",
]


class NoSpatialLayerError(ValueError):
    """The model has no layer with a spatial (N, C, h, w) output, so there is nothing to explain."""


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


def _is_container(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def _zeros_input(model: nn.Module) -> torch.Tensor:
    """A (1, 3, 224, 224) zero tensor on the model's device, in its dtype."""
    return torch.zeros(1, 3, 224, 224, device=model_device(model), dtype=model_dtype(model) or torch.float32)


def _survey(
    model: nn.Module,
    example_input: torch.Tensor | None,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[list[LayerInfo], object]:
    """One forward pass with temporary hooks on every submodule: the spatial layers and the model output."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if example_input is None:
        example_input = _zeros_input(model)
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
            output = model(example_input)
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
    return infos, output


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
    return _survey(model, example_input, reshape_transform)[0]


@dataclass(frozen=True)
class LayerCatalog:
    """The one owner of layer naming for a model: canonical names, their aliases, the default layer.

    Built from one forward pass (:meth:`of`). Every part of camwidget that names layers asks it: the
    Explainer's default layer (through :func:`default_layer`), the widget's layer selector and its trait
    validation, the audit. A name is *canonical* when it is a :class:`LayerInfo`'s ``name``; any alias
    (another module returning the very same tensor, e.g. ResNet's ``layer4`` for ``layer4.1``, or the last
    ``ReLU`` of a ``Sequential``) resolves to it.

    Attributes:
        layers: the explainable layers, in forward order.
        default: the canonical name of the default layer: for a vision transformer (ViT, DeiT, Swin) the
            last block's first normalisation (:func:`~camwidget.engine.tokens.transformer_layer`); else
            the last spatial layer before global pooling, passing over class-score maps (a layer with one
            channel per class, as SqueezeNet's classifier) when an earlier feature layer exists.
        model_name: the model's class name, for messages.
    """

    layers: tuple[LayerInfo, ...]
    default: str
    model_name: str = "model"
    _by_name: dict[str, LayerInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise NoSpatialLayerError(
                f"{self.model_name} has no layer with a spatial (N, C, h, w) output to explain; "
                "for token models with non-square grids pass a reshape_transform and an explicit layer"
            )
        table: dict[str, LayerInfo] = {}
        object.__setattr__(self, "_by_name", table)
        for info in self.layers:
            table[info.name] = info
        for info in self.layers:
            for alias in info.aliases:
                table.setdefault(alias, info)
        if self.default not in {i.name for i in self.layers}:
            raise ValueError(f"default layer {self.default!r} is not one of the catalog's layers")

    @classmethod
    def of(
        cls,
        model: nn.Module,
        example_input: torch.Tensor | None = None,
        *,
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LayerCatalog:
        """Survey ``model`` with one forward pass of ``example_input`` (default: a (1, 3, 224, 224) zero
        tensor on the model's device; the model is left exactly as it came), and a second one over its
        normalisation layers only when it has two or more (a transformer's default layer).

        Raises:
            NoSpatialLayerError: the model has no spatial layer (a ``ValueError``).
        """
        if example_input is None:
            example_input = _zeros_input(model)
        infos, output = _survey(model, example_input, reshape_transform)
        name = type(model).__name__
        if not infos:
            return cls((), "", name)  # raises the no-spatial-layer error
        catalog = cls(tuple(infos), infos[-1].name, name)
        if reshape_transform is None:
            with preserved_state(model):
                transformer = transformer_layer(model, example_input)
            if transformer is not None and transformer in catalog:
                return cls(catalog.layers, catalog.canonical(transformer), name)
        num_classes = _class_count(output)
        features = [i for i in infos if i.shape[0] != num_classes]
        return cls(catalog.layers, (features or infos)[-1].name, name)

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical names, in forward order."""
        return tuple(i.name for i in self.layers)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._by_name

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def canonical(self, name: str) -> str:
        """The canonical name for ``name`` (itself or an alias).

        Raises:
            TypeError: ``name`` is not a string.
            ValueError: no such layer here; the message lists close matches and the candidates.
        """
        return self.info(name).name

    def info(self, name: str) -> LayerInfo:
        """The :class:`LayerInfo` named ``name`` or one of its aliases (errors as :meth:`canonical`)."""
        if not isinstance(name, str):
            raise TypeError(f"layer must be a module name (str), got {type(name).__name__}")
        found = self._by_name.get(name)
        if found is None:
            close = difflib.get_close_matches(name, list(self._by_name), n=4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"layer {name!r} is not a spatial layer of {self.model_name}{hint} "
                f"candidates: {', '.join(self.names)}"
            )
        return found

    def restrict(self, names: Iterable[str]) -> LayerCatalog:
        """A catalog of only ``names`` (canonicalised, duplicates dropped, in the order given). Its default
        is this catalog's default when kept, else the last layer kept.

        Raises:
            ValueError: an unknown name (see :meth:`canonical`), or no name at all.
        """
        kept: list[LayerInfo] = []
        for name in names:
            info = self.info(name)
            if info not in kept:
                kept.append(info)
        if not kept:
            raise ValueError(f"no layer chosen; pass some of {', '.join(self.names)}")
        default = self.default if any(i.name == self.default for i in kept) else kept[-1].name
        return LayerCatalog(tuple(kept), default, self.model_name)


def default_layer(model: nn.Module, example_input: torch.Tensor | None = None, **kwargs: object) -> str:
    """Name of the last spatial layer before global pooling: :attr:`LayerCatalog.default`.

    Layers that produce one channel per output class (SqueezeNet's convolutional classifier) are class
    score maps rather than features, and are passed over when an earlier feature layer exists. For a
    vision transformer (ViT, DeiT, Swin), the last block's first normalisation
    (:func:`~camwidget.engine.tokens.transformer_layer`).
    """
    return LayerCatalog.of(model, example_input, **kwargs).default  # type: ignore[arg-type]


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
