"""Every call, and every failing call, leaves the model exactly as it came."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision

import camwidget
from camwidget.engine.batching import Cancelled
from camwidget.engine.explainer import Explainer

from .conftest import CNN_METHODS, quick_options

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def snapshot(model: torch.nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": [sum(len(getattr(m, d)) for d in HOOK_DICTS) for m in model.modules()],
    }


def assert_same(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    for a, b in zip(after["grads"], before["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    for key, value in before["state"].items():  # BatchNorm running stats and num_batches_tracked too
        assert torch.equal(after["state"][key], value), key


@pytest.fixture
def train_mode_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)  # inplace ReLUs, BatchNorm
    model.train()
    model.layer2.eval()  # a mixed mode the caller chose: must survive
    return model


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", CNN_METHODS)
def test_model_in_train_mode_comes_back_identical(train_mode_resnet, method) -> None:
    before = snapshot(train_mode_resnet)
    options = quick_options(method, iterations=2)
    if method in ("scorecam", "sscam", "iscam"):
        options["channels"] = 16
    layer = "layer4" if method == "cam" else "layer3"
    maps = camwidget.explain(train_mode_resnet, X, method=method, layer=layer, **options)
    assert torch.isfinite(maps).all()
    assert_same(train_mode_resnet, before)


def test_eval_mode_result_does_not_depend_on_callers_mode(train_mode_resnet) -> None:
    a = camwidget.explain(train_mode_resnet, X, method="hirescam", layer="layer3")
    b = camwidget.explain(copy.deepcopy(train_mode_resnet).eval(), X, method="hirescam", layer="layer3")
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "context",
    [torch.no_grad, torch.inference_mode, lambda: torch.autocast("cpu", dtype=torch.bfloat16)],
    ids=["no_grad", "inference_mode", "autocast"],
)
def test_works_inside_no_grad_inference_mode_and_autocast(resnet18, context) -> None:
    before = snapshot(resnet18)
    reference = camwidget.explain(resnet18, X, method="hirescam", layer="layer3")
    with context():
        x = X.clone()  # an inference tensor under inference_mode
        maps = camwidget.explain(resnet18, x, method="hirescam", layer="layer3")
        grad_mode = torch.is_grad_enabled()
    assert not grad_mode or context is not torch.no_grad
    corr = torch.corrcoef(torch.stack([maps.flatten(), reference.flatten()]))[0, 1]
    assert corr > 0.99
    assert_same(resnet18, before)


def test_frozen_parameters_still_explain_and_stay_frozen() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    model.requires_grad_(False)
    model.fc.weight.requires_grad_(True)  # a partially frozen model
    before = snapshot(model)
    for method in ("gradcam", "hirescam", "opticam"):
        maps = camwidget.explain(
            model, X, method=method, layer="layer4", **({"iterations": 2} if method == "opticam" else {})
        )
        assert maps.max() > 0
    assert_same(model, before)


def test_parameter_grads_are_neither_created_nor_changed(resnet18) -> None:
    resnet18.fc.weight.grad = torch.ones_like(resnet18.fc.weight)
    before = snapshot(resnet18)
    camwidget.explain(resnet18, X, method="gradcam++", layer="layer4")
    assert_same(resnet18, before)
    resnet18.fc.weight.grad = None


@pytest.mark.parametrize("method", ["hirescam", "scorecam", "ablationcam", "opticam"])
def test_a_call_that_raises_midway_restores_the_model(train_mode_resnet, method) -> None:
    before = snapshot(train_mode_resnet)
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        raise Cancelled

    with pytest.raises((Cancelled, ValueError)):
        if method == "hirescam":
            camwidget.explain(train_mode_resnet, X, method=method, layer="layer3", target=5000)
        else:
            camwidget.explain(train_mode_resnet, X, method=method, layer="layer3", progress=progress)
    assert_same(train_mode_resnet, before)


def test_keyboard_interrupt_inside_the_forward_restores_the_model(train_mode_resnet) -> None:
    before = snapshot(train_mode_resnet)

    def interrupt(module, args, output):
        raise KeyboardInterrupt

    handle = train_mode_resnet.layer4.register_forward_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            camwidget.explain(train_mode_resnet, X, method="gradcam", layer="layer3")
    finally:
        handle.remove()
    assert_same(train_mode_resnet, before)


def test_explainer_holds_no_hooks_between_calls(resnet18) -> None:
    before = snapshot(resnet18)
    with Explainer(resnet18, "layer4", "scorecam", channels=8) as ex:
        ex(X)
        assert_same(resnet18, before)
        ex(X, method="gradcam")
    assert_same(resnet18, before)
