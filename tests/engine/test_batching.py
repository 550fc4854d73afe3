"""The forward runner: memory-bounded chunks, out-of-memory halving (CPU and CUDA errors), precision by rule,
chunking that never materialises everything."""

from __future__ import annotations

import pytest
import torch

import camwidget.engine.batching as batching
from camwidget.engine.batching import ForwardRunner
from camwidget.engine.memory import is_out_of_memory, item_bytes, memory_budget
from camwidget.engine.precision import agrees


class OOMAbove(torch.nn.Module):
    """Raises ``error`` for batches larger than ``limit``, like a full GPU (or a full CPU allocator)."""

    def __init__(self, limit: int, error: type[BaseException] = torch.OutOfMemoryError) -> None:
        super().__init__()
        self.limit = limit
        self.error = error
        self.linear = torch.nn.Linear(12, 5)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        if x.shape[0] > self.limit:
            if self.error is RuntimeError:
                raise RuntimeError(
                    "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
                )
            raise self.error("out of memory (simulated)")
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError, RuntimeError])
def test_out_of_memory_halves_the_batch_and_retries(error) -> None:
    model = OOMAbove(limit=5, error=error)
    data = torch.randn(40, 3, 2, 2)
    runner = ForwardRunner(model, precision="fp32", batch_size=32)
    out = runner.logits(lambda a, b: data[a:b], len(data))
    with torch.no_grad():
        assert torch.allclose(out, model.linear(data.flatten(1)))
    assert max(s for s in model.seen if s <= 5) <= 5 and runner.batch_size_used == 4


def test_out_of_memory_at_batch_one_propagates_and_other_errors_are_not_retried() -> None:
    runner = ForwardRunner(OOMAbove(limit=0), precision="fp32", batch_size=4)
    with pytest.raises(torch.OutOfMemoryError):
        runner.logits(lambda a, b: torch.randn(b - a, 3, 2, 2), 8)
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_batches_are_built_on_demand_in_chunks() -> None:
    model = OOMAbove(limit=1000)
    requested = []

    def make(a: int, b: int) -> torch.Tensor:
        requested.append(b - a)
        return torch.randn(b - a, 3, 2, 2)

    ForwardRunner(model, precision="fp32", batch_size=16).logits(make, 100)
    assert max(requested) <= 16 and sum(requested) == 100


def test_chunks_are_sized_from_bytes_under_the_budget() -> None:
    # A 512x512 input through a 16-channel conv: one item's largest activation is 16 MiB.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 4),
    ).eval()
    x = torch.randn(1, 3, 512, 512)
    per_item = item_bytes(model, model, x)
    assert 3 * 16 * 512 * 512 * 4 <= per_item <= 4 * 16 * 512 * 512 * 4 + 4 * x.numel() * 4
    sizes = []
    for budget in (per_item * 3, per_item // 2, 1 << 40):
        model_seen: list[int] = []
        handle = model[0].register_forward_pre_hook(lambda m, a, seen=model_seen: seen.append(a[0].shape[0]))
        try:
            runner = ForwardRunner(model, precision="fp32", memory_budget=budget)
            runner.logits(lambda a, b: x.expand(b - a, -1, -1, -1), 40)
        finally:
            handle.remove()
        sizes.append(runner.batch_size_used)
        assert max(model_seen) <= runner.batch_size_used
    assert sizes == [3, 1, 16]  # what fits; at least one; at most 16 on CPU however much memory there is
    assert (1 << 26) <= memory_budget(torch.device("cpu")) <= (1 << 30)


def test_precision_is_decided_by_rule_not_by_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4)
    )
    data = torch.randn(40, 3, 16, 16)
    model(data[:1])
    model.eval()

    # A machine without native bf16 runs fp32, whatever the clock says.
    monkeypatch.setattr(batching, "native_low_precision", lambda device: None)
    runner = ForwardRunner(model)
    out = runner.logits(lambda a, b: data[a:b], 40)
    assert runner.precision_used == "fp32"
    with torch.no_grad():
        assert torch.allclose(out, model(data), atol=1e-5)

    # With native bf16 (AMX, AVX512-BF16, CUDA), bf16 is taken when it agrees with fp32 on the inputs,
    # the same choice every time.
    monkeypatch.setattr(batching, "native_low_precision", lambda device: "bf16")
    choices = set()
    for _ in range(3):
        runner = ForwardRunner(model)
        low = runner.logits(lambda a, b: data[a:b], 40)
        choices.add(runner.precision_used)
    assert choices == {"bf16"} and agrees(low, out)

    # ...and refused when it does not agree (a model whose logits bf16 cannot resolve).
    class Fragile(torch.nn.Module):  # two classes that differ by 1e-3 of a weight: bf16 rounds it away
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 2, bias=False)
            with torch.no_grad():
                self.linear.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.001]]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.mean((2, 3)))

    runner = ForwardRunner(Fragile())
    runner.logits(lambda a, b: data[a:b], 40)
    assert runner.precision_used == "fp32"


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="precision"):
        ForwardRunner(OOMAbove(1), precision="half")
    with pytest.raises(ValueError, match="batch_size"):
        ForwardRunner(OOMAbove(1), batch_size=0)
    with pytest.raises(ValueError, match="memory_budget"):
        ForwardRunner(OOMAbove(1), memory_budget=-5)
