"""Attention that can be differentiated twice, for the calling thread only, for the length of one pass.

ShapleyCAM needs a Hessian-vector product at its layer (a double backward). PyTorch's fused attention
kernels (flash and memory-efficient, on CPU and CUDA) have no double backward; its math kernel has. The
process-wide switches that choose a kernel (``torch.nn.attention.sdpa_kernel``,
``torch.backends.cuda.enable_*_sdp``) would change attention for every thread of the user's program while
the explanation runs, so the engine does not touch them.

:func:`twice_differentiable_attention` instead pushes a torch function mode, which lives on the calling
thread's own mode stack: inside it, every call of ``torch.nn.functional.scaled_dot_product_attention``
made by this thread runs PyTorch's math kernel (``aten::_scaled_dot_product_attention_math``, the kernel
``sdpa_kernel(SDPBackend.MATH)`` selects) with the same arguments, and ``F.multi_head_attention_forward``
(what ``nn.MultiheadAttention`` calls) runs its explicit path (batched matmul and softmax, the one it takes
when the weights are asked for) and returns no weights where none were asked for. A mode does not see the
calls nested inside a function it intercepts, so the functional is intercepted itself. Other threads, and
this thread after the block (on any exit: return, exception, ``KeyboardInterrupt``), see attention unchanged.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["twice_differentiable_attention"]

_SDPA = F.scaled_dot_product_attention
_MHA = F.multi_head_attention_forward
_MHA_SIGNATURE = inspect.signature(_MHA)


def _math_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention``'s signature, computed by the math kernel (twice differentiable)."""
    out, _ = torch.ops.aten._scaled_dot_product_attention_math(
        query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
    )
    return out


def _explicit_multi_head(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``F.multi_head_attention_forward`` on its explicit (twice-differentiable) path: with the weights
    asked for, dropped again where the caller did not ask for them."""
    bound = _MHA_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    wanted = bool(bound.arguments["need_weights"])
    bound.arguments["need_weights"] = True
    output, weights = _MHA(*bound.args, **bound.kwargs)
    return output, (weights if wanted else None)


class _MathAttention(TorchFunctionMode):
    """Reroutes ``scaled_dot_product_attention`` to the math kernel and ``multi_head_attention_forward`` to
    its explicit path; every other function runs as it is."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is _SDPA:
            return _math_attention(*args, **kwargs)
        if func is _MHA:  # runs with this mode off (popped while it decides): its own SDPA call is not seen
            return _explicit_multi_head(args, kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def twice_differentiable_attention() -> Iterator[None]:
    """Inside the block, this thread's attention (``F.scaled_dot_product_attention``) runs the math kernel,
    whose backward can itself be differentiated; nothing changes for other threads or after the block."""
    with _MathAttention():
        yield
