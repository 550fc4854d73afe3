"""``camwidget.show``: the CamExplorer view as a static matplotlib figure, for papers and slides."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from camwidget.class_names import ClassNames
from camwidget.defaults import COLORMAPS, DEFAULT_COLORMAP, IMAGENET_MEAN, IMAGENET_STD
from camwidget.engine.explainer import Explainer
from camwidget.methods.registry import get_method
from camwidget.metrics.insertion_deletion import insertion_deletion
from camwidget.widget.codecs import blend, load_images

__all__ = ["show"]


def show(
    model: nn.Module,
    image: Any,
    *,
    methods: Sequence[str] = ("hirescam", "scorecam"),
    layer: str | None = None,
    target: int | str | None = None,
    class_names: Sequence[str] | None = None,
    preprocess: Callable[[Any], torch.Tensor] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    colormap: str = DEFAULT_COLORMAP,
    opacity: float = 0.5,
    curves: bool = True,
    curve_steps: int = 32,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """A static figure of one image explained by several methods: the image, one overlay per method,
    and (with ``curves=True``) their insertion and deletion curves with AUCs.

    Args:
        model: classifier returning (N, K) logits, used on its own device.
        image: one image: PIL image, file path, (H, W, 3) array or a preprocessed (3, H, W) tensor.
        methods: CAM methods to show side by side (names from :data:`camwidget.METHODS`).
        layer: layer to explain; default the last spatial layer before global pooling.
        target: class index or name; default the predicted class.
        class_names: names of the K classes (default ImageNet's when K == 1000).
        preprocess, mean, std: as for :class:`~camwidget.CamExplorer`.
        colormap: "viridis", "jet", "inferno" or "gray". opacity: overlay opacity in [0, 1].
        curves: add the insertion/deletion curves row.
        curve_steps: number of insertion/deletion steps.
        figsize: matplotlib figure size in inches; default fits the panels.

    Returns:
        A ``matplotlib.figure.Figure`` (not attached to pyplot: display it, or ``fig.savefig(...)``).

    Raises:
        ValueError, TypeError: a bad image, method, layer, class or colormap (the message says which).
    """
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}")
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1]; got {opacity}")
    if isinstance(methods, str):
        methods = (methods,)
    names_m = [get_method(m).name for m in methods]
    if not names_m:
        raise ValueError("methods is empty: pass at least one method name")
    inputs, display = load_images(image, preprocess, mean, std)
    if inputs.shape[0] != 1:
        raise ValueError(f"show() explains one image; got {inputs.shape[0]} (use CamExplorer for several)")
    rgb = display[0]
    x = inputs[:1]

    with Explainer(model, layer, names_m[0], mean=tuple(mean), std=tuple(std)) as ex:
        try:
            probs = torch.softmax(ex.predict(x).float(), dim=1)[0].cpu().numpy()
        except Exception as exc:
            raise ValueError(f"the model failed on the image (input shape {tuple(x.shape)}): {exc}") from exc
        names = ClassNames(class_names, probs.shape[0])
        cls = int(np.argmax(probs)) if target is None else names.index(target)
        maps = {m: ex(x, target=cls, method=m)[0].detach().float().cpu().numpy() for m in names_m}
        layer_name = ex.layer_name

    results = {}
    if curves:
        h, w = rgb.shape[:2]
        step = max(1, math.ceil(h * w / max(2, int(curve_steps))))
        for m, cam in maps.items():
            cam_t = torch.from_numpy(cam)[None]
            results[m] = insertion_deletion(model, x, cam_t, target=[cls], step=step, mean=mean, std=std)

    n = len(names_m)
    cols = n + 1
    rows = 2 if results else 1
    figsize = figsize or (2.6 * cols, 2.9 * rows + 0.3)
    fig = Figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(rows, cols * 2, height_ratios=[1.0, 0.9][:rows])
    ax = fig.add_subplot(grid[0, 0:2])
    ax.imshow(rgb)
    ax.set_title(f"{names[cls]}  ({probs[cls] * 100:.1f}%)", fontsize=9)
    ax.axis("off")
    image_artist = None
    for i, m in enumerate(names_m):
        levels = np.clip(np.rint(maps[m] * 255), 0, 255).astype(np.uint8)
        ax = fig.add_subplot(grid[0, 2 * (i + 1) : 2 * (i + 2)])
        ax.imshow(blend(rgb, levels, colormap, float(opacity)))
        image_artist = ax.imshow(maps[m], cmap=colormap, vmin=0, vmax=1, alpha=0.0)
        ax.set_title(get_method(m).label, fontsize=9)
        ax.axis("off")
    if image_artist is not None:
        bar = fig.colorbar(image_artist, ax=fig.axes[1:], shrink=0.8, pad=0.01, aspect=25)
        bar.solids.set_alpha(1.0)
        bar.set_label("relevance", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if results:
        half = cols  # split the bottom row in two equal plots
        ax_i = fig.add_subplot(grid[1, :half])
        ax_d = fig.add_subplot(grid[1, half:], sharey=ax_i)
        for m, out in results.items():
            f = out.fractions.detach().cpu().numpy()
            label = get_method(m).label
            ax_i.plot(
                f,
                out.insertion[0].detach().cpu().numpy(),
                label=f"{label} ({float(out.insertion_auc[0]):.3f})",
            )
            ax_d.plot(
                f, out.deletion[0].detach().cpu().numpy(), label=f"{label} ({float(out.deletion_auc[0]):.3f})"
            )
        for a, title in ((ax_i, "Insertion (AUC ↑)"), (ax_d, "Deletion (AUC ↓)")):
            a.set_title(title, fontsize=9)
            a.set_xlabel("fraction of pixels", fontsize=8)
            a.set_xlim(0, 1)
            a.grid(alpha=0.3)
            a.tick_params(labelsize=7)
            a.legend(fontsize=7, frameon=False)
        ax_i.set_ylabel(f"p({names[cls]})", fontsize=8)
    fig.suptitle(f"{type(model).__name__} · layer {layer_name}", fontsize=10)
    return fig
