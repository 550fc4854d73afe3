"""BatchNorm folding in the private inference twin: same logits, the caller's model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import camwidget
from camwidget.engine.batching import _TWINS, ForwardRunner, layout_twin
from camwidget.engine.folding import fold_batchnorm


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
    folded = fold_batchnorm(copy.deepcopy(resnet))
    assert isinstance(folded, torch.fx.GraphModule) and _bn_count(folded) == 0 and _bn_count(resnet) == 20
    assert not any(m.training for m in folded.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        want, got = resnet(x), folded(x)
    assert (want - got).abs().max() <= 1e-4 * want.abs().max()
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())


def test_kept_modules_stay_whole_and_hookable(resnet) -> None:
    folded = fold_batchnorm(copy.deepcopy(resnet), keep=frozenset({"layer4", "layer3.0.conv1"}))
    assert (
        _bn_count(folded) == 5 + 1
    )  # layer4's 5 BatchNorms (downsample too), layer3.0.bn1 after the kept conv
    seen = []
    folded.get_submodule("layer4").register_forward_hook(lambda m, a, out: seen.append(out.shape))
    with torch.no_grad():
        folded(torch.randn(1, 3, 64, 64))
    assert seen == [torch.Size([1, 512, 2, 2])]


def test_what_cannot_be_folded_is_left_as_it_is() -> None:
    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    class SharedConvOutput(nn.Module):  # the conv's output is also used elsewhere: folding would change it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    for model in (Branchy().eval(), SharedConvOutput().eval(), nn.Sequential(nn.Conv2d(3, 3, 1)).eval()):
        assert fold_batchnorm(model) is model
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(SharedConvOutput().train())


def test_runner_twin_is_folded_and_channels_last(resnet) -> None:
    twin = layout_twin(resnet)
    assert _bn_count(twin) == 0 and twin.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert layout_twin(resnet) is twin  # cached
    assert layout_twin(resnet, frozenset({"layer4"})) is not twin  # a separate copy keeps layer4 whole
    for layer in ("layer1", "layer2", "layer3"):  # one special copy at a time, never one per layer
        layout_twin(resnet, frozenset({layer}))
    assert set(_TWINS[resnet]) == {frozenset(), frozenset({"layer3"})}
    assert layout_twin(resnet) is twin
    x = torch.randn(4, 3, 64, 64)
    logits = ForwardRunner(resnet, precision="fp32", batch_size=2).logits(lambda a, b: x[a:b], 4)
    with torch.no_grad():
        want = resnet(x)
    assert (logits - want).abs().max() <= 1e-4 * want.abs().max()


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
