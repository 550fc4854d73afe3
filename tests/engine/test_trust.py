"""Engine trust: every map and curve explains the *live* model, safely beside the user's own code.

Each test here reproduces a way the engine's speed machinery (a cached private copy with BatchNorm folded,
precision and chunk size choices, caches) once produced numbers that were not the model's, or broke code
running beside it, and checks that it no longer does.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import camwidget
import camwidget.engine.batching as batching
from camwidget.engine.explainer import Explainer
from camwidget.metrics import average_drop_increase_gain, insertion_deletion

from .test_folding import _with_real_statistics
from .test_model_state import assert_same, snapshot

STEP = 128  # 64x64 images: 32 steps, 66 perturbed forwards per image -> the private copy is used


class Scaled(nn.Module):
    """A module whose output depends on a plain attribute (no parameter, no buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def small_bn_net() -> nn.Sequential:
    """conv-BN-ReLU x2 (foldable pairs) -> Scaled -> GAP -> linear(10), with real BatchNorm statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        Scaled(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    return _with_real_statistics(net)


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
MAPS = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(4))


def own_probability(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1).gather(1, targets.view(-1, 1)).squeeze(1)


def check_everything_follows(model: nn.Module, change) -> None:
    """Use the copy once, change the model the way ``change`` does, then every batched result must equal
    what a fresh deep copy of the changed model gives (and the curves' step 0 the model's own probability)."""
    ex = Explainer(model, "3", precision="fp32")
    ex(X, method="scorecam", channels=32)
    insertion_deletion(model, X, MAPS, step=STEP, precision="fp32")  # builds and caches the copy
    ex(X, method="ablationcam")
    change(model)
    fresh = copy.deepcopy(model)

    curves = insertion_deletion(model, X, MAPS, step=STEP, precision="fp32")
    want = insertion_deletion(fresh, X, MAPS, step=STEP, precision="fp32")
    assert torch.allclose(curves.deletion[:, 0], own_probability(model, X, curves.targets), atol=1e-5)
    assert torch.allclose(curves.deletion, want.deletion, atol=1e-5)
    assert torch.allclose(curves.insertion, want.insertion, atol=1e-5)
    for method, options in (("scorecam", {"channels": 32}), ("ablationcam", {})):
        got = ex(X, method=method, raw=True, **options)  # the Explainer's own caches too
        expected = camwidget.explain(
            fresh, X, method=method, layer="3", raw=True, precision="fp32", **options
        )
        scale = expected.abs().max()
        assert (got - expected).abs().max() <= 1e-4 * scale, method
    adg = average_drop_increase_gain(model, X.repeat(16, 1, 1, 1), MAPS.repeat(16, 1, 1), precision="fp32")
    assert torch.allclose(adg["p"], own_probability(model, X.repeat(16, 1, 1, 1), adg["targets"]), atol=1e-5)


def test_weights_edited_through_data_are_seen() -> None:
    def change(model: nn.Sequential) -> None:
        model[0].weight.data.mul_(-1)  # no version counter moves

    check_everything_follows(small_bn_net(), change)


def test_a_swapped_parameter_free_module_is_seen() -> None:
    def change(model: nn.Sequential) -> None:
        model[5] = nn.Tanh()

    check_everything_follows(small_bn_net(), change)


def test_a_changed_plain_attribute_is_seen() -> None:
    def change(model: nn.Sequential) -> None:
        model[6].scale = -3.0

    check_everything_follows(small_bn_net(), change)


def test_user_forward_hooks_are_honoured() -> None:
    model = small_bn_net()
    insertion_deletion(model, X, MAPS, step=STEP, precision="fp32")  # a copy exists from before the hook
    temperature = model[9].register_forward_hook(lambda m, a, out: out * 25.0)
    try:
        curves = insertion_deletion(model, X, MAPS, step=STEP, precision="fp32")
        own = own_probability(model, X, curves.targets)
        assert torch.allclose(curves.deletion[:, 0], own, atol=1e-5)
        with Explainer(model, "3", precision="fp32") as ex:
            got = ex(X, method="scorecam", channels=32, raw=True)
        temperature.remove()
        without = camwidget.explain(model, X, method="scorecam", layer="3", channels=32, raw=True)
        assert not torch.allclose(got, without, atol=1e-3)  # the hook changes the masked scores
    finally:
        temperature.remove()


def test_an_unrelated_model_runs_undisturbed_while_an_explorer_worker_builds_its_copy() -> None:
    """The widget's worker does its first Score-CAM and curves (building the private copy) while the
    user's cell runs another model in a tight loop: not one of those forwards may fail."""
    explained = _with_real_statistics(torchvision.models.resnet18(weights=None))
    unrelated = _with_real_statistics(torchvision.models.resnet18(weights=None, num_classes=7))
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    stop = threading.Event()
    widget = camwidget.CamExplorer(explained, image, method="scorecam", layer="layer3", curve_steps=40)
    failures: list[BaseException] = []
    runs = 0
    x = torch.randn(1, 3, 32, 32)
    try:
        while not stop.is_set() and runs < 100_000:
            try:
                with torch.no_grad():
                    unrelated(x)
            except Exception as exc:
                failures.append(exc)
            runs += 1
            if runs % 20 == 0 and widget.wait(timeout=0.001):
                stop.set()
        assert widget.wait(timeout=300)
    finally:
        widget.close()
    assert runs > 20 and not failures, f"{len(failures)} of {runs} forwards failed: {failures[:1]}"
    assert widget.error == "" and widget.maps and len(widget.maps[0]["levels"]) == 224 * 224


def test_overlapping_calls_on_one_model_run_one_after_the_other() -> None:
    model = small_bn_net().train()
    model[3].eval()  # a mixed mode of the caller's
    before = snapshot(model)
    serial = {
        "hirescam": camwidget.explain(model, X, method="hirescam", layer="3"),
        "scorecam": camwidget.explain(model, X, method="scorecam", layer="3", channels=32, precision="fp32"),
        "curves": insertion_deletion(model, X, MAPS, step=STEP, precision="fp32").deletion,
    }
    results: list[tuple[str, torch.Tensor]] = []
    errors: list[BaseException] = []

    def work(kind: str) -> None:
        try:
            for _ in range(3):
                if kind == "curves":
                    out = insertion_deletion(model, X, MAPS, step=STEP, precision="fp32").deletion
                else:
                    options = {"channels": 32, "precision": "fp32"} if kind == "scorecam" else {}
                    out = camwidget.explain(model, X, method=kind, layer="3", **options)
                results.append((kind, out))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in ("hirescam", "scorecam", "curves")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert len(results) == 9
    for kind, out in results:
        assert torch.allclose(out, serial[kind], atol=1e-5), kind
    assert_same(model, before)  # train/eval flags as the caller left them, hooks gone, BN untouched


def test_chunks_stay_within_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score-CAM on a large image: chunks are sized from the bytes an item takes, not by timing."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)
    ).eval()
    big = torch.randn(1, 3, 1024, 1024)
    one_item = 3 * (16 * 1024 * 1024 * 4) + 4 * big.numel() * 4  # ~240 MB: its largest activations + build
    monkeypatch.setattr(batching, "memory_budget", lambda device: int(2.5 * one_item))
    seen: list[int] = []
    handle = model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        camwidget.explain(model, big, method="scorecam", layer="1", channels=12, precision="fp32")
    finally:
        handle.remove()
    assert seen[0] == 1 and sum(seen[1:]) == 12  # the plain forward, then the 12 masked inputs
    assert max(seen[1:]) == 2  # what fits in 2.5 items' worth of memory


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"inputs": X.double()},
            TypeError,
            r"inputs are torch.float64 but the model computes in torch.float32",
        ),
        ({"inputs": X.half()}, TypeError, r"pass inputs.to\(torch.float32\)"),
        ({"target": 10**20}, ValueError, r"target 100000000000000000000 out of range"),
        ({"target": "1"}, TypeError, r"target must be None .* got str '1'"),
        ({"target": [0, "a"]}, TypeError, r"target must be .* got str 'a'"),
        ({"target": np.array([1, 2])}, None, None),
        ({"target": np.int64(3)}, None, None),
    ],
)
def test_the_input_contract(kwargs, error, message) -> None:
    model = small_bn_net()
    before = snapshot(model)
    args = {"inputs": X, "method": "hirescam", "layer": "3"} | kwargs
    inputs = args.pop("inputs")
    if error is None:
        assert torch.isfinite(camwidget.explain(model, inputs, **args)).all()
    else:
        with pytest.raises(error, match=message):
            camwidget.explain(model, inputs, **args)
    assert_same(model, before)


def test_a_layer_that_never_runs_is_named() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.spare = nn.Conv2d(4, 4, 3)  # registered, never called
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x).mean((2, 3)))

    model = Unused().eval()
    before = snapshot(model)
    for method in ("gradcam", "scorecam"):
        with pytest.raises(ValueError, match=r"layer 'spare' did not run during the model's forward pass"):
            camwidget.explain(model, X, method=method, layer="spare")
    assert_same(model, before)


def test_a_grayscale_model_that_expands_channels_first_is_accepted() -> None:
    class Gray(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(8, 4)
            self.stem = nn.Conv2d(1, 3, 1)  # registered after the backbone, runs first

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.backbone(self.stem(x)).mean((2, 3)))

    torch.manual_seed(0)
    gray = torch.randn(2, 1, 32, 32)
    maps = camwidget.explain(Gray().eval(), gray, method="gradcam", layer="backbone")
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all() and maps.amax() > 0
    with pytest.raises(
        ValueError, match=r"inputs have 1 channels but the first convolution they reach expects 3"
    ):
        camwidget.explain(small_bn_net(), gray, method="gradcam", layer="3")


def test_the_precision_used_is_reported() -> None:
    model = small_bn_net()
    ex = Explainer(model, "3")
    ex(X, method="hirescam")
    assert ex.precision_used == "fp32"
    ex(X, method="scorecam", channels=32)
    expected = "bf16" if batching.native_low_precision(torch.device("cpu")) else "fp32"
    assert ex.precision_used == expected  # by the CPU's capability: never by how busy the machine is
    forced = Explainer(model, "3", precision="bf16")
    forced(X, method="scorecam", channels=32)
    assert forced.precision_used == "bf16"
    curves = insertion_deletion(model, X, MAPS, step=STEP, precision="bf16")
    assert curves.precision == "bf16"
    assert insertion_deletion(model, X, MAPS, step=STEP).precision == expected
