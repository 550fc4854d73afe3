"""Ablation-CAM (Desai & Ramaswamy 2020): the drop of the target score when one channel is zeroed.

w_k = (y_c − y_c^k) / |y_c|, with y_c^k the target logit after setting channel k of the layer's output to
0 (the paper divides by y_c, which assumes a positive logit; |y_c| keeps the map's sign meaningful for a
negative one). The layer's output is computed once per image: a forward hook expands the single image's
activations to a batch of ablated copies, so only the layers after the target layer run per channel. Models
where that broadcast is impossible (a skip connection concatenating a batch-1 tensor) fall back to
repeating the input.
"""

from __future__ import annotations

import torch
from torch import nn

from camwidget.engine.batching import ForwardRunner
from camwidget.methods.base import CamMethod, Job

__all__ = ["AblationCAM"]


class _Ablate:
    """Forward hook: replace the layer's output by copies with one channel zeroed per row."""

    def __init__(self) -> None:
        self.channels = torch.empty(0, dtype=torch.long)
        self.expand = True

    def __call__(self, module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        b = len(self.channels)
        out = output.expand(b, *output.shape[1:]).clone() if self.expand else output.clone()
        out[torch.arange(b, device=out.device), self.channels.to(out.device)] = 0
        return out


class AblationCAM(CamMethod):
    """Ablation-CAM: gradient-free; C forward passes of the layers after the target layer per image."""

    name = "ablationcam"
    paper = "Desai & Ramaswamy, WACV 2020"

    def raw(self, job: Job) -> torch.Tensor:
        explainer = job.explainer
        if explainer.reshape_transform is not None:
            raise ValueError(
                "ablationcam does not support reshape_transform layers; use scorecam or hirescam"
            )
        a = job.activations
        n, c = a.shape[:2]
        weights = torch.zeros(n, c, device=a.device)
        ablate = _Ablate()
        runner = explainer.runner(keep=(explainer.layer_name,))
        layer = dict(runner.forward_model.named_modules())[explainer.layer_name]
        handle = layer.register_forward_hook(ablate)
        try:
            for i in range(n):
                image = job.inputs[i : i + 1]
                scores = self._ablated(runner, ablate, image, c, int(job.targets[i]))
                y = job.logits[i, job.targets[i]]
                weights[i] = (y - scores) / y.abs().clamp_min(1e-12)
        finally:
            handle.remove()
        return torch.einsum("nc,nchw->nhw", weights, a)

    def _ablated(
        self, runner: ForwardRunner, ablate: _Ablate, image: torch.Tensor, c: int, target: int
    ) -> torch.Tensor:
        def make_batch(start: int, stop: int) -> torch.Tensor:
            ablate.channels = torch.arange(start, stop)
            return image if ablate.expand else image.expand(stop - start, *image.shape[1:])

        for attempt in (True, False):
            ablate.expand = attempt
            try:
                logits = runner.logits(make_batch, c)
            except RuntimeError:
                if not attempt:
                    raise
                continue
            if logits.shape[0] == c:
                return logits[:, target]
        raise RuntimeError("the model's output batch does not match the ablated batch")
