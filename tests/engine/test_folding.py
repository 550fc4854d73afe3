"""BatchNorm folding in the private inference copy: same logits, the caller's model untouched, nothing
process-wide patched, a wrong fold caught by the check against the live model."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import camwidget
from camwidget.engine.batching import ForwardRunner
from camwidget.engine.folding import fold_batchnorm
from camwidget.engine.twin import twins


def _with_real_statistics(model: nn.Module) -> nn.Module:
    """Random-init BatchNorm is the identity (mean 0, var 1, weight 1, bias 0): give it real numbers."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return _with_real_statistics(torchvision.models.resnet18(weights=None))


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_folded_resnet_gives_the_same_logits_and_leaves_the_original_alone(resnet) -> None:
    before = copy.deepcopy(resnet.state_dict())
    folded = copy.deepcopy(resnet)
    names = fold_batchnorm(folded, torch.randn(1, 3, 64, 64))
    assert _bn_count(folded) == 0 and _bn_count(resnet) == 20 and len(names) == 40
    assert not any(m.training for m in folded.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        want, got = resnet(x), folded(x)
    assert (want - got).abs().max() <= 1e-4 * want.abs().max()
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())


def test_excluded_modules_stay_whole_and_hookable(resnet) -> None:
    folded = copy.deepcopy(resnet)
    fold_batchnorm(folded, torch.randn(1, 3, 64, 64), frozenset({"layer3.0.conv1", "layer4.1.bn2"}))
    assert _bn_count(folded) == 2  # layer3.0.bn1 (after the excluded conv) and the excluded layer4.1.bn2
    seen = []
    folded.get_submodule("layer4").register_forward_hook(lambda m, a, out: seen.append(out.shape))
    with torch.no_grad():
        folded(torch.randn(1, 3, 64, 64))
    assert seen == [torch.Size([1, 512, 2, 2])]


class SharedConvOutput(nn.Module):  # the conv's output is also used elsewhere: folding changes the logits
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.head(self.bn(y) + y)


def test_folding_runs_no_process_wide_tracing() -> None:
    # torch.fx's symbolic tracing swaps nn.Module.__call__ for every model while it runs: folding must not.
    call = nn.Module.__call__
    seen = []

    class Spy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(type(self).__call__ is call)
            return x

    model = _with_real_statistics(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Spy()))
    fold_batchnorm(model, torch.randn(1, 3, 8, 8))
    assert seen == [True] and nn.Module.__call__ is call


def test_a_wrong_fold_is_caught_by_the_check_and_the_copy_runs_unfolded() -> None:
    torch.manual_seed(0)
    model = _with_real_statistics(SharedConvOutput())
    folded = copy.deepcopy(model)
    assert fold_batchnorm(folded, torch.randn(1, 3, 8, 8))  # the hooks cannot see the second use...
    x = torch.randn(40, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(folded(x), model(x), atol=1e-4)  # ...so this fold is wrong
        want = model(x)
    runner = ForwardRunner(model, precision="fp32", reference=(x[:2], want[:2]))
    got = runner.logits(lambda a, b: x[a:b], 40)
    assert runner.executor == "copy-unfolded" and torch.allclose(got, want, atol=1e-5)
    assert twins(model).fold_fails  # and the next call does not try folding again
    runner = ForwardRunner(model, precision="fp32", reference=(x[:2], want[:2]))
    runner.logits(lambda a, b: x[a:b], 40)
    assert runner.executor == "copy-unfolded"
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(SharedConvOutput().train(), x[:1])


def test_runner_copy_is_folded_channels_last_cached_and_one_special_copy_at_a_time(resnet) -> None:
    x = torch.randn(40, 3, 64, 64)
    with torch.no_grad():
        want = resnet(x)
    runner = ForwardRunner(resnet, precision="fp32", reference=(x[:2], want[:2]))
    logits = runner.logits(lambda a, b: x[a:b], 40)
    assert runner.executor == "copy"
    assert (logits - want).abs().max() <= 1e-4 * want.abs().max()
    store = twins(resnet)
    (twin,) = [e.twin for e in store.entries.values()]
    assert _bn_count(twin) == 0 and twin.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert resnet.conv1.weight.is_contiguous()  # the caller's layout is untouched
    runner = ForwardRunner(resnet, precision="fp32", reference=(x[:2], want[:2]))
    runner.logits(lambda a, b: x[a:b], 40)
    assert [e.twin for e in store.entries.values()] == [twin]  # cached
    for layer in ("layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1"):  # hooked conv layers stay unfolded
        runner = ForwardRunner(resnet, precision="fp32", layer_hook=(layer, lambda m, a, out: None))
        runner.logits(lambda a, b: x[a:b], 40)
    assert set(store.entries) == {frozenset(), frozenset({"layer3.0.conv1"})}
    runner = ForwardRunner(resnet, precision="fp32", layer_hook=("layer4", lambda m, a, out: None))
    runner.logits(lambda a, b: x[a:b], 40)  # layer4 itself is no folded module: the plain copy serves
    assert store.entries[frozenset()].twin is twin


def test_ablation_cam_hooks_its_layer_in_the_folded_twin() -> None:
    # Ablation-CAM's weights are (y - y_ablated) / y: with a hook that never fired they would all be 0.
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    model = _with_real_statistics(nn.Sequential(stem, block, head))
    x = torch.randn(2, 3, 16, 16)
    raw = camwidget.explain(model, x, method="ablationcam", layer="1", raw=True, precision="fp32")
    assert raw.abs().amax(dim=(1, 2)).min() > 0
    for i in range(2):
        by_hand = _ablation_by_hand(model, x[i : i + 1], "1")
        assert torch.allclose(raw[i : i + 1], by_hand, rtol=1e-3, atol=1e-4 * by_hand.abs().max().item())


def _ablation_by_hand(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    module = model.get_submodule(layer)
    store: dict[str, torch.Tensor] = {}
    zero: list[int] = []

    def hook(m: nn.Module, args: object, out: torch.Tensor) -> torch.Tensor:
        store.setdefault("a", out.detach().clone())
        if zero:
            out = out.clone()
            out[:, zero[0]] = 0
        return out

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(x)
            target = int(logits[0].argmax())
            y = logits[0, target]
            a = store["a"][0]
            weights = torch.empty(a.shape[0])
            for k in range(a.shape[0]):
                zero[:] = [k]
                weights[k] = (y - model(x)[0, target]) / y.abs()
    finally:
        handle.remove()
    return torch.einsum("c,chw->hw", weights, a)[None]
