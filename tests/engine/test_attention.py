"""ShapleyCAM's double backward through attention changes attention for its own pass and thread only: the
process-wide kernel switches stay as the user set them, and another thread's attention is not rerouted,
during the call, after it, and after a call that fails."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.backends.cuda as sdp
import torch.nn.functional as F
from torch import nn

import camwidget
from camwidget.engine import attention


def _switches() -> tuple[bool, bool, bool, bool]:
    """The process-wide attention kernel switches (sdpa_kernel and enable_*_sdp set these)."""
    return (
        sdp.flash_sdp_enabled(),
        sdp.mem_efficient_sdp_enabled(),
        sdp.math_sdp_enabled(),
        sdp.cudnn_sdp_enabled(),
    )


class _Rendezvous(nn.Module):
    """Identity; in the explaining thread's forward it records what that thread sees, lets the other thread
    look, and waits until it has (or raises, to test the failure path)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.checked = threading.Event()
        self.seen: dict[str, object] = {}
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inside.is_set():  # a later forward of the same call (the target's): nothing to do
            return x
        self.seen = {"switches": _switches(), "modes": torch._C._len_torch_function_stack()}
        self.inside.set()
        assert self.checked.wait(30), "the other thread never looked"
        if self.fail:
            raise RuntimeError("the user's forward failed")
        return x


class _DirectAttention(nn.Module):
    """A block calling F.scaled_dot_product_attention itself (as timm's and Hugging Face's models do)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d)
        return x + self.out(torch.tanh(a))


class _MultiheadBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, need_weights=False)
        return x + torch.tanh(a)


class _TinyViT(nn.Module):
    """16 px -> 4x4 patches of width 8; one attention block before the explained layer, two after it."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, 4)
        self.blocks = nn.Sequential(_MultiheadBlock(8), _DirectAttention(8), _MultiheadBlock(8))
        self.gate = _Rendezvous()
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.gate(self.blocks(t)).mean(1))


def _tokens(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], 4, 4)


@pytest.fixture
def rerouted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread ids of every attention call the engine rerouted to the math kernel."""
    calls: list[int] = []
    for name in ("_math_attention", "_explicit_multi_head"):  # direct SDPA calls; nn.MultiheadAttention's
        original = getattr(attention, name)

        def spy(*args: object, _original=original, **kwargs: object) -> object:
            calls.append(threading.get_ident())
            return _original(*args, **kwargs)

        monkeypatch.setattr(attention, name, spy)
    return calls


def _explain_while_another_thread_looks(model: _TinyViT) -> tuple[dict, BaseException | None]:
    """ShapleyCAM in this thread; meanwhile another thread reads the switches and runs attention."""
    other: dict[str, object] = {}

    def look() -> None:
        assert model.gate.inside.wait(30)
        q = torch.randn(1, 2, 4, 4)
        other["result"] = F.scaled_dot_product_attention(q, q, q)
        other["switches"] = _switches()
        other["modes"] = torch._C._len_torch_function_stack()
        other["thread"] = threading.get_ident()
        model.gate.checked.set()

    thread = threading.Thread(target=look)
    thread.start()
    error = None
    try:
        maps = camwidget.explain(
            model,
            torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
            method="shapleycam",
            layer="blocks.0",
            target=1,
            reshape_transform=_tokens,
        )
        assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()
    except RuntimeError as exc:
        error = exc
    thread.join(30)
    assert set(other) == {"result", "switches", "modes", "thread"}, "the other thread did not finish"
    return other, error


def test_shapleycam_through_attention_leaves_other_threads_and_switches_alone(rerouted: list[int]) -> None:
    torch.manual_seed(0)
    model = _TinyViT().eval()
    before = _switches()
    other, error = _explain_while_another_thread_looks(model)
    assert error is None
    # during the forward: the switches unchanged, seen from the explaining thread and from the other one
    assert model.gate.seen["switches"] == before
    assert other["switches"] == before
    # the reroute is a mode on the explaining thread's own stack; the other thread's stack is empty ...
    assert model.gate.seen["modes"] == 1 and other["modes"] == 0
    # ... and its attention call ran as it is; the explaining thread's calls (the two blocks after the layer
    # and the one before it, direct and inside nn.MultiheadAttention) were rerouted
    assert other["thread"] not in rerouted
    assert rerouted.count(threading.get_ident()) == 3
    # after the call: nothing left on this thread either
    assert torch._C._len_torch_function_stack() == 0 and _switches() == before
    calls = len(rerouted)
    q = torch.randn(1, 2, 4, 4)
    F.scaled_dot_product_attention(q, q, q)
    assert len(rerouted) == calls


def test_a_failing_forward_leaves_attention_as_it_was(rerouted: list[int]) -> None:
    torch.manual_seed(0)
    model = _TinyViT().eval()
    model.gate.fail = True
    before = _switches()
    other, error = _explain_while_another_thread_looks(model)
    assert error is not None and "the user's forward failed" in str(error)
    assert other["switches"] == before and other["modes"] == 0 and other["thread"] not in rerouted
    assert torch._C._len_torch_function_stack() == 0 and _switches() == before
    calls = len(rerouted)
    q = torch.randn(1, 2, 4, 4)
    F.scaled_dot_product_attention(q, q, q)
    assert len(rerouted) == calls


def test_math_kernel_gives_the_fused_kernels_values_and_a_second_derivative() -> None:
    """The reroute changes how attention is computed, not what: same values as the default kernel, and the
    Hessian-vector product that ShapleyCAM needs exists (it equals a float64 one from written-out
    attention)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    with attention.twice_differentiable_attention():
        rerouted = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(rerouted, F.scaled_dot_product_attention(q, k, v), atol=1e-12)

    def written_out(q: torch.Tensor) -> torch.Tensor:
        return torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1) @ v

    def second_order(fn, q: torch.Tensor) -> torch.Tensor:
        q = q.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(q).pow(2).sum(), q, create_graph=True)
        (hv,) = torch.autograd.grad(grad, q, grad_outputs=q.detach())
        return hv

    with attention.twice_differentiable_attention():
        hv = second_order(lambda t: F.scaled_dot_product_attention(t, k, v), q)
    assert torch.allclose(hv, second_order(written_out, q), rtol=1e-9, atol=1e-12)
