"""LeGrad (Bousselham et al., arXiv:2404.03214), for vision transformers: how sensitive each block's own
prediction is to its attention.

For an explained transformer block l: the block's output tokens are pooled and read by the model's own
classifier, s^l = head(norm(mean over tokens of z^l)) (the official code's and torchcam 0.5's pooling: the
mean of all tokens, class token included, through the final LayerNorm and the head), and the map is the
gradient of the class's s^l with respect to the block's post-softmax attention probabilities P^l (N, heads,
queries, keys), ReLU'd and averaged over heads and queries, keeping the keys of the patch tokens (the class
token and any other prefix token dropped):

    map^l = mean_{heads, queries} ReLU(∂s^l_c / ∂P^l)[..., prefix:]  reshaped to the patch grid.

Several blocks (``layer=[...]``) are fused as LeGrad does, by the mean of the raw maps then min-max
(``fusion="raw-mean"``, this method's default). Attention values are not multiplied in.

Supported: torchvision's ``VisionTransformer`` (blocks with a batch-first ``nn.MultiheadAttention`` named
``self_attention``; ``encoder.ln`` and ``heads``), explained at its encoder blocks with the usual token
``reshape_transform``. One forward (in grad mode from the first explained block on) and one backward per
block; the attention weights are recomputed from the per-head probabilities so they are part of the graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camwidget.methods.base import CamMethod, MethodContext, MethodHook

__all__ = ["LeGrad"]


def _vit_parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    norm = getattr(getattr(model, "encoder", None), "ln", None)
    head = getattr(model, "heads", None)
    if not isinstance(norm, nn.Module) or not isinstance(head, nn.Module):
        raise ValueError(
            "legrad explains vision transformers shaped like torchvision's VisionTransformer (encoder.ln "
            f"and heads); {type(model).__name__} has no such parts. Use a gradient method (hirescam, "
            "gradcam) with a reshape_transform for other transformers"
        )
    return norm, head


class _Attention:
    """Hooks on one ``nn.MultiheadAttention``: ask for per-head weights, make them part of the graph, keep
    them."""

    def __init__(self) -> None:
        self.probabilities: torch.Tensor | None = None
        self.asked: tuple[bool, bool] = (True, True)

    def pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        if len(args) < 3 or not (args[0] is args[1] is args[2]):
            raise ValueError("legrad needs self-attention: the same tensor as query, key and value")
        torch.set_grad_enabled(True)  # restored by the engine's grad-mode context after the forward
        q = args[0] if args[0].requires_grad else args[0].detach().requires_grad_(True)
        args = list(args)
        args[:3] = [q, q, q]
        kwargs = dict(kwargs)
        need = args[4] if len(args) > 4 else kwargs.get("need_weights", True)
        average = args[6] if len(args) > 6 else kwargs.get("average_attn_weights", True)
        self.asked = (bool(need), bool(average))
        if len(args) > 4:
            args[4] = True
        else:
            kwargs["need_weights"] = True
        if len(args) > 6:
            args[6] = False
        else:
            kwargs["average_attn_weights"] = False
        return tuple(args), kwargs

    def post(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        attention = output[1]  # (N, heads, queries, keys)
        value = args[2]
        n, s, e = value.shape
        heads = module.num_heads  # type: ignore[union-attr]
        bias = None if module.in_proj_bias is None else module.in_proj_bias[2 * e :]  # type: ignore[index]
        v = F.linear(value, module.in_proj_weight[2 * e :], bias)  # type: ignore[index]
        v = v.reshape(n, s, heads, e // heads).transpose(1, 2)
        out = torch.matmul(attention, v).transpose(1, 2).reshape(n, attention.shape[-2], e)
        out = module.out_proj(out)  # type: ignore[operator]
        self.probabilities = attention
        need, average = self.asked
        return out, (attention.mean(dim=1) if average else attention) if need else None


class _Tokens:
    def __init__(self) -> None:
        self.tokens: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            self.tokens = output


class LeGrad(CamMethod):
    """LeGrad for torchvision vision transformers (layer: encoder blocks; see the module doc)."""

    name = "legrad"
    label = "LeGrad"
    paper = "Bousselham et al., arXiv:2404.03214 (2024)"
    architecture = "vision-transformer"
    fusion = "raw-mean"
    in_comparisons = False

    def __init__(self, *, cache_size: int = 16) -> None:
        super().__init__(cache_size=cache_size)
        self._blocks: dict[str, tuple[_Attention, _Tokens]] = {}

    def forward_hooks(
        self, model: nn.Module, layers: Sequence[str], options: Mapping[str, Any]
    ) -> list[MethodHook]:
        _vit_parts(model)
        modules = dict(model.named_modules())
        hooks = []
        self._blocks = {}
        for name in layers:
            attention = getattr(modules.get(name), "self_attention", None)
            if not isinstance(attention, nn.MultiheadAttention) or not attention.batch_first:
                blocks = [
                    n for n, m in modules.items() if isinstance(getattr(m, "self_attention", None), nn.Module)
                ]
                raise ValueError(
                    f"legrad explains transformer blocks with a batch-first nn.MultiheadAttention named "
                    f"'self_attention'; {name!r} is not one. Blocks: {', '.join(blocks[-4:]) or 'none'}"
                )
            if attention.in_proj_weight is None or attention.bias_k is not None or attention.add_zero_attn:
                raise ValueError(
                    f"legrad needs plain self-attention with shared Q/K/V projections in {name!r}"
                )
            capture, tokens = _Attention(), _Tokens()
            self._blocks[name] = (capture, tokens)
            hooks += [
                MethodHook(f"{name}.self_attention", capture.pre, pre=True, with_kwargs=True),
                MethodHook(f"{name}.self_attention", capture.post, with_kwargs=True),
                MethodHook(name, tokens),
            ]
        return hooks

    def raw(self, ctx: MethodContext) -> torch.Tensor:
        classes = ctx.require_classes("legrad")
        norm, head = _vit_parts(ctx.model)
        capture, tokens = self._blocks.pop(ctx.layer_name)
        assert capture.probabilities is not None and tokens.tokens is not None
        with torch.enable_grad():
            logits = head(norm(tokens.tokens.mean(dim=1)))
            score = logits.float().gather(1, classes.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, capture.probabilities, retain_graph=True)
        relevance = torch.relu(grad.float()).mean(dim=(1, 2))  # (N, keys)
        grid = tuple(ctx.activations.shape[2:])
        patches = 1
        for g in grid:
            patches *= g
        prefix = relevance.shape[1] - patches
        if prefix < 0:
            raise ValueError(
                f"block {ctx.layer_name!r} attends over {relevance.shape[1]} tokens, fewer than the "
                f"{patches} patches of its reshape_transform's grid {grid}"
            )
        return relevance[:, prefix:].reshape(relevance.shape[0], *grid)
