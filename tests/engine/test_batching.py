"""The forward runner: out-of-memory halving, precision choice, chunking never materialises everything."""

from __future__ import annotations

import pytest
import torch

from camwidget.engine.batching import ForwardRunner, _correlation, layout_twin


class OOMAbove(torch.nn.Module):
    """Raises torch.OutOfMemoryError for batches larger than ``limit``, like a full GPU would."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.linear = torch.nn.Linear(12, 5)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.linear(x.flatten(1))


def test_out_of_memory_halves_the_batch_and_retries() -> None:
    model = OOMAbove(limit=5)
    data = torch.randn(40, 3, 2, 2)
    runner = ForwardRunner(model, precision="fp32", batch_size=32)
    out = runner.logits(lambda a, b: data[a:b], len(data))
    with torch.no_grad():
        assert torch.allclose(out, model.linear(data.flatten(1)))
    assert max(s for s in model.seen if s <= 5) <= 5 and runner.chosen.batch_size == 4


def test_out_of_memory_at_batch_one_propagates() -> None:
    runner = ForwardRunner(OOMAbove(limit=0), precision="fp32", batch_size=4)
    with pytest.raises(torch.OutOfMemoryError):
        runner.logits(lambda a, b: torch.randn(b - a, 3, 2, 2), 8)


def test_batches_are_built_on_demand_in_chunks() -> None:
    model = OOMAbove(limit=1000)
    requested = []

    def make(a: int, b: int) -> torch.Tensor:
        requested.append(b - a)
        return torch.randn(b - a, 3, 2, 2)

    ForwardRunner(model, precision="fp32", batch_size=16).logits(make, 100)
    assert max(requested) <= 16 and sum(requested) >= 100


def test_auto_precision_agrees_with_fp32_whatever_it_picks() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4)
    )
    data = torch.randn(40, 3, 16, 16)
    model(data[:1])
    auto = ForwardRunner(model).logits(lambda a, b: data[a:b], 40)
    fp32 = ForwardRunner(model, precision="fp32").logits(lambda a, b: data[a:b], 40)
    assert _correlation(auto, fp32) >= 0.999


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="precision"):
        ForwardRunner(OOMAbove(1), precision="half")
    with pytest.raises(ValueError, match="batch_size"):
        ForwardRunner(OOMAbove(1), batch_size=0)


def test_layout_twin_is_private_channels_last_and_follows_weight_updates() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.randn(1, 3, 8, 8))
    model.train()
    twin = layout_twin(model)
    assert twin is not model and not twin.training and model.training
    assert twin[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[0].weight.is_contiguous()  # the caller's layout is untouched
    assert layout_twin(model) is twin  # cached
    with torch.no_grad():
        model[0].weight.add_(1.0)
    fresh = layout_twin(model)
    assert fresh is not twin and torch.equal(fresh[0].weight, model[0].weight)
    x = torch.randn(5, 3, 8, 8)
    runner = ForwardRunner(model, precision="fp32")
    with torch.no_grad():
        assert torch.allclose(runner.logits(lambda a, b: x[a:b], 5), model.eval()(x), atol=1e-5)


def test_forced_settings_never_overwrite_what_auto_measured() -> None:
    from camwidget.engine.batching import _PLANS

    model = OOMAbove(limit=1000)
    data = torch.randn(256, 3, 2, 2)
    ForwardRunner(model).logits(lambda a, b: data[a:b], 256)
    plan = next(iter(_PLANS[model].values()))
    measured = (plan.precision, plan.batch_size)
    assert measured[0] is not None and measured[1] in (8, 16)
    ForwardRunner(model, precision="fp16" if measured[0] != "fp16" else "fp32", batch_size=3).logits(
        lambda a, b: data[a:b], 256
    )
    assert (plan.precision, plan.batch_size) == measured


def test_a_tiny_first_call_does_not_freeze_an_unmeasured_batch_size() -> None:
    from camwidget.engine.batching import _PLANS

    model = OOMAbove(limit=1000)
    data = torch.randn(256, 3, 2, 2)
    ForwardRunner(model).logits(lambda a, b: data[a:b], 2)
    plan = next(iter(_PLANS[model].values()))
    assert plan.batch_size is None  # too few items to measure: nothing remembered
    ForwardRunner(model).logits(lambda a, b: data[a:b], 256)
    assert plan.batch_size in (8, 16)


def _scripted_timings(monkeypatch: pytest.MonkeyPatch, seconds: dict[str, list[float]]) -> None:
    """Make ForwardRunner._timed report the given seconds per precision, in order (then 1.0 each)."""
    import camwidget.engine.batching as batching

    monkeypatch.setattr(batching, "_low_precision_candidate", lambda device: "bf16")
    real = ForwardRunner._timed

    def timed(self: ForwardRunner, x: torch.Tensor, precision: str) -> tuple[torch.Tensor, float]:
        out, _ = real(self, x, precision)
        queue = seconds.get(precision, [])
        return out, queue.pop(0) if queue else 1.0

    monkeypatch.setattr(ForwardRunner, "_timed", timed)


def test_one_disturbed_timing_cannot_flip_the_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    # First timing: fp32 looks 2x slower (the other core was busy); second: fp32 is in fact faster.
    _scripted_timings(monkeypatch, {"fp32": [2.0, 0.4], "bf16": [1.0, 1.0]})
    model = OOMAbove(limit=1000)
    data = torch.randn(64, 3, 2, 2)
    runner = ForwardRunner(model, batch_size=8)
    logits = runner.logits(lambda a, b: data[a:b], 64)
    assert runner.chosen.precision == "fp32"
    with torch.no_grad():  # and the whole run is fp32, the chunk timed in bf16 recomputed
        assert torch.equal(logits, model(data))


def test_low_precision_wins_when_both_timings_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_timings(monkeypatch, {"fp32": [2.0, 2.1], "bf16": [1.0, 1.1]})
    runner = ForwardRunner(OOMAbove(limit=1000), batch_size=8)
    runner.logits(lambda a, b: torch.randn(b - a, 3, 2, 2), 64)
    assert runner.chosen.precision == "bf16"


def test_cpu_batch_size_is_the_faster_of_8_and_16_best_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    # Per-image: 8 -> 1/8 then 0.9/8; 16 -> 3/16 (spoilt by another process) then 1/16: 16 wins.
    _scripted_timings(monkeypatch, {"fp32": [1.0, 3.0, 0.9, 1.0]})
    model = OOMAbove(limit=1000)
    runner = ForwardRunner(model, precision="fp32")
    runner.logits(lambda a, b: torch.randn(b - a, 3, 2, 2), 300)
    assert runner.chosen.batch_size == 16
    assert model.seen[:4] == [8, 16, 8, 16] and max(model.seen) == 16
