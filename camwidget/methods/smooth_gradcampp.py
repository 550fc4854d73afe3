"""Smooth Grad-CAM++ (Omeiza et al., arXiv:1908.01224), as its paper defines it.

For ``samples`` noisy copies x + δ_s of each input (δ_s Gaussian, std ``noise`` in the units of the model's
input tensor, default 0.3), the gradient g_s = ∂y/∂A at the layer is taken; D1, D2, D3 are the means of g_s,
g_s² and g_s³ over the copies. Grad-CAM++'s weights are formed from those averages and applied to the clean
image's activations A:

    α = D2 / (2·D2 + Σ_ab A_ab · D3 + 1e-6)  (α = 0 where D2 = 0),   w_k = Σ_ij α_ij · ReLU(D1_ij),
    map = Σ_k w_k A_k.

torchcam 0.5's ``SmoothGradCAMpp`` averages D2 and D3 the same way but takes ReLU of the *last* copy's
gradient and that copy's activations; this follows the paper instead. Sample s draws a (C, *S) noise tensor
from a CPU generator seeded with ``seed`` (the same draws for every image of a call; with one image they are
torchcam's draws after ``torch.manual_seed(seed)``). Cost: ``samples`` forward and backward passes to the
layer per image, batched.
"""

from __future__ import annotations

import torch

from camwidget.methods.base import CamMethod, MethodContext
from camwidget.methods.gradient import gradcampp_weights

__all__ = ["SmoothGradCAMPlusPlus"]

_ROWS = 16  # noisy copies per forward/backward pass (unless the caller fixed batch_size)


class SmoothGradCAMPlusPlus(CamMethod):
    """Smooth Grad-CAM++. Options: ``samples`` (4), ``noise`` (0.3, input units), ``seed`` (None: fresh)."""

    name = "smoothgradcam++"
    label = "Smooth Grad-CAM++"
    paper = "Omeiza et al., arXiv:1908.01224 (2019)"
    interactive = False
    defaults = {"samples": 4, "noise": 0.3, "seed": None}

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        samples, std = ctx.options["samples"], ctx.options["noise"]
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an int >= 1; got {samples!r}")
        if isinstance(std, bool) or not isinstance(std, int | float) or std < 0:
            raise ValueError(f"noise must be a number >= 0; got {std!r}")
        x = ctx.inputs.detach()
        n = x.shape[0]
        generator = ctx.random_generator()
        noise = torch.stack([torch.randn(x.shape[1:], generator=generator) for _ in range(samples)])
        noise = (noise * float(std)).to(device=x.device, dtype=x.dtype)  # (samples, C, *S)
        sample_of = torch.arange(samples, device=x.device).repeat_interleave(n)  # rows: sample-major
        image_of = torch.arange(n, device=x.device).repeat(samples)
        per_pass = ctx.batch_size if isinstance(ctx.batch_size, int) else _ROWS
        d1 = d2 = d3 = None
        for start in range(0, samples * n, per_pass):
            rows = slice(start, min(samples * n, start + per_pass))
            noisy = x[image_of[rows]] + noise[sample_of[rows]]
            _, g = ctx.layer_gradients(noisy, image_of[rows])
            g = g.double()
            terms = [torch.zeros(n, *g.shape[1:], dtype=torch.float64, device=g.device) for _ in range(3)]
            for power, term in enumerate(terms, start=1):
                term.index_add_(0, image_of[rows], g**power)
            d1 = terms[0] if d1 is None else d1 + terms[0]
            d2 = terms[1] if d2 is None else d2 + terms[1]
            d3 = terms[2] if d3 is None else d3 + terms[2]
            if ctx.progress is not None:
                ctx.progress(rows.stop, samples * n)
        assert d1 is not None and d2 is not None and d3 is not None
        a = ctx.activations.double()
        return gradcampp_weights(d1 / samples, d2 / samples, d3 / samples, a).float()
