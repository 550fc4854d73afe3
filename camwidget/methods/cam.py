"""CAM (Zhou et al. 2016): the classifier's weights times the activations, for GAP + linear heads."""

from __future__ import annotations

import torch
from torch import nn

from camwidget.methods.base import CamMethod, MethodContext

__all__ = ["CAM", "gap_linear_head", "linear_head"]


def linear_head(model: nn.Module, channels: int) -> nn.Linear | None:
    """The last ``nn.Linear`` of ``model`` that takes ``channels`` features, if any."""
    found = None
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.in_features == channels:
            found = module
    return found


def gap_linear_head(model: nn.Module, activations: torch.Tensor, logits: torch.Tensor) -> nn.Linear | None:
    """The linear classifier that reads the global average of ``activations`` (N, C, *s), if the model is
    one: the last ``nn.Linear`` taking C features, kept only if ``linear(mean A)`` reproduces the (N, K)
    ``logits`` (rtol 1e-3); else None."""
    head = linear_head(model, activations.shape[1])
    if head is None:
        return None
    weight = head.weight.detach().float()
    bias = head.bias.detach().float() if head.bias is not None else 0.0
    predicted = activations.float().mean(dim=tuple(range(2, activations.ndim))) @ weight.T + bias
    if predicted.shape != logits.shape or not torch.allclose(
        predicted, logits.float(), rtol=1e-3, atol=1e-3 * (1 + logits.abs().max().item())
    ):
        return None
    return head


class CAM(CamMethod):
    """CAM: map_c = Σ_k W_ck A_k, with W the weights of the linear layer after global average pooling.

    Only defined when the chosen layer feeds global average pooling and then one linear layer; the
    engine checks that ``linear(mean_ij A)`` reproduces the model's logits and otherwise raises a
    ``ValueError`` suggesting HiResCAM, which equals CAM wherever CAM is defined.
    """

    name = "cam"
    label = "CAM"
    paper = "Zhou et al., CVPR 2016"

    def channel_weights(self, ctx: MethodContext) -> torch.Tensor:
        classes = ctx.require_classes("cam")
        assert ctx.logits is not None
        head = gap_linear_head(ctx.model, ctx.activations, ctx.logits)
        if head is None:
            raise ValueError(
                f"'cam' needs layer {ctx.layer_name!r} to feed global average pooling and then one linear "
                "classifier (e.g. the last block of a ResNet); use 'hirescam', which equals CAM where CAM is "
                "defined"
            )
        return head.weight.detach().float()[classes]
