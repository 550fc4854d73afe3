"""Any model output as a target, any input shape: classifiers' logits/probabilities/sigmoids, tuples and
``.logits`` objects, regression heads, segmentation, detection, embeddings and video (issue 19).

Random weights lie (MobileNetV3's random BatchNorm statistics shrink activations to ~1e-9, so every
segmentation pixel is one class and every detection scores the same): the segmentation and detection
models below get BatchNorm statistics fitted on real photos first (their weights stay random), as a user's
trained model would have them, and the tests assert what the maps must show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.transforms import functional as TF

import camwidget
from camwidget.data import sample_images
from camwidget.engine.explainer import Explainer
from camwidget.metrics import insertion_deletion
from camwidget.targets import (
    DetectionBox,
    Logit,
    Output,
    Probability,
    SegmentationClass,
    Sigmoid,
    Similarity,
)

from .conftest import CNN_METHODS, quick_options
from .test_model_state import assert_same, snapshot

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def photos(size: int = 224, normalise: bool = True) -> torch.Tensor:
    """The sample photos as a (7, 3, size, size) batch (ImageNet-normalised unless told not to)."""
    images = [
        TF.to_tensor(TF.center_crop(TF.resize(im.convert("RGB"), size), size))
        for im in sample_images().values()
    ]
    x = torch.stack(images)
    return (x - MEAN) / STD if normalise else x


def fit_batchnorm(module: nn.Module, batches: list[torch.Tensor]) -> None:
    """Set every BatchNorm's running statistics to the cumulative average over ``batches`` (weights stay)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    module.train()
    with torch.no_grad():
        for batch in batches:
            module(batch)
    module.eval()


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))


# -- classifiers ------------------------------------------------------------------------------------------
def test_probability_target_is_the_softmax_gradient_by_hand_in_float64(resnet) -> None:
    x = X[:1]
    with torch.no_grad():
        c = int(resnet(x)[0].argsort()[-3])  # the third most likely class: not the prediction
    got = camwidget.explain(resnet, x, method="hirescam", layer="layer4", target=Probability(c), raw=True)

    model = resnet.double()
    try:
        store = {}

        def keep(m, a, out):
            out.retain_grad()
            store["a"] = out

        handle = model.layer4.register_forward_hook(keep)
        p = torch.softmax(model(x.double()), dim=1)[0, c]
        p.backward()
        handle.remove()
        by_hand = (store["a"].grad * store["a"]).sum(dim=1).detach()
    finally:
        resnet.float()
        resnet.zero_grad(set_to_none=True)
    assert (got.double() - by_hand).abs().max() <= 1e-4 * by_hand.abs().max()
    logit_map = camwidget.explain(resnet, x, method="hirescam", layer="layer4", target=c, raw=True)
    assert pearson(got, logit_map) < 0.999  # the softmax gradient is not the logit's


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "scorecam", "ablationcam", "opticam"])
def test_a_plain_callable_gives_the_map_of_the_target_it_mirrors(resnet, method) -> None:
    c = 7
    options = {"channels": 24} if method == "scorecam" else {"iterations": 3} if method == "opticam" else {}
    layer = "layer4"
    builtin = Probability(c) if method == "scorecam" else Logit(c)
    mirror = (lambda out: torch.softmax(out, 1)[:, c]) if method == "scorecam" else (lambda out: out[:, c])
    want = camwidget.explain(resnet, X, method=method, layer=layer, target=builtin, raw=True, **options)
    got = camwidget.explain(resnet, X, method=method, layer=layer, target=mirror, raw=True, **options)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    if method != "scorecam":  # a bare class index means the logit there too
        bare = camwidget.explain(resnet, X, method=method, layer=layer, target=c, raw=True, **options)
        assert torch.allclose(bare, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    else:  # and for Score-CAM's paper preset, the class's softmax probability
        bare = camwidget.explain(resnet, X, method=method, layer=layer, target=c, raw=True, **options)
        assert torch.allclose(bare, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_tuple_and_logits_object_outputs_work_with_class_indices(resnet) -> None:
    class Tupled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = resnet

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.net(x), torch.zeros(x.shape[0], 3)

    class Output_:  # what Hugging Face models return
        def __init__(self, logits: torch.Tensor) -> None:
            self.logits = logits

    class HuggingFaceLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = resnet

        def forward(self, x: torch.Tensor) -> Output_:
            return Output_(self.net(x))

    want = camwidget.explain(resnet, X, method="gradcam", layer="layer4", target=3)
    for wrapper in (Tupled(), HuggingFaceLike()):
        got = camwidget.explain(wrapper, X, method="gradcam", layer="net.layer4", target=3)
        assert torch.allclose(got, want, atol=1e-5)
    curves = insertion_deletion(HuggingFaceLike(), X, want, step=512, precision="fp32")
    assert torch.allclose(curves.deletion, insertion_deletion(resnet, X, want, step=512).deletion, atol=1e-5)


def test_sigmoid_and_output_targets(resnet) -> None:
    # A multi-label head: each label an independent sigmoid. A regression head: one raw output.
    sig = camwidget.explain(resnet, X, method="hirescam", layer="layer4", target=Sigmoid(5), raw=True)
    logit = camwidget.explain(resnet, X, method="hirescam", layer="layer4", target=Logit(5), raw=True)
    with torch.no_grad():
        s = torch.sigmoid(resnet(X)[:, 5])
    # d sigmoid(z)/dA = sigmoid'(z) dz/dA: the same map scaled by s(1 - s) per image
    assert torch.allclose(sig, logit * (s * (1 - s)).view(-1, 1, 1), rtol=1e-4, atol=1e-7)
    regression = nn.Sequential(resnet, nn.Linear(1000, 2)).eval()
    out = camwidget.explain(regression, X, method="gradcam", layer="0.layer4", target=Output(1))
    neg = camwidget.explain(
        regression, X, method="gradcam", layer="0.layer4", target=Output(1, sign=-1), raw=True
    )
    pos = camwidget.explain(regression, X, method="gradcam", layer="0.layer4", target=Output(1), raw=True)
    assert torch.allclose(neg, -pos, atol=1e-6) and out.amax() > 0
    with pytest.raises(ValueError, match=r"explains a class of a classifier"):
        camwidget.explain(regression, X, method="cam", layer="0.layer4", target=Output(1))


def test_insertion_deletion_and_confidence_follow_a_callable_target(resnet) -> None:
    maps = camwidget.explain(resnet, X, method="gradcam", layer="layer4", target=2)
    want = insertion_deletion(resnet, X, maps, target=2, step=512, precision="fp32")
    got = insertion_deletion(
        resnet, X, maps, target=lambda out: torch.softmax(out, 1)[:, 2], step=512, precision="fp32"
    )
    assert torch.allclose(got.deletion, want.deletion, atol=1e-5)
    assert torch.allclose(got.insertion, want.insertion, atol=1e-5)
    logits = insertion_deletion(resnet, X, maps, target=Logit(2), step=512, precision="fp32")
    with torch.no_grad():
        assert torch.allclose(logits.deletion[:, 0], resnet(X)[:, 2], atol=1e-4)
    from camwidget.metrics import average_drop_increase_gain

    adg = average_drop_increase_gain(resnet, X, maps, target=Probability(2))
    assert torch.allclose(adg["p"], want.deletion[:, 0], atol=1e-5)
    with pytest.raises(ValueError, match=r"need scores in \[0, 1\]"):
        average_drop_increase_gain(resnet, X, maps, target=lambda out: out[:, 2] * 100)


# -- bad targets -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "method", "error", "message"),
    [
        (lambda out: out[:, :2], "gradcam", ValueError, r"one score per image, shape \(2,\); got \(2, 2\)"),
        (lambda out: out[:, 0] * float("nan"), "scorecam", ValueError, "NaN or infinite"),
        (lambda out: out[:, 0].detach(), "gradcam", ValueError, "not differentiable"),
        (lambda out: out[:, 0].argmax().float().expand(2), "hirescam", ValueError, "not differentiable"),
        (lambda out: [1, 2], "gradcam", TypeError, "must return a torch.Tensor"),
        (SegmentationClass(3), "gradcam", TypeError, r"\(N, K, H, W\) class scores"),
        (DetectionBox((0, 0, 10, 10), 1), "scorecam", TypeError, "list of detection dicts"),
        ("cat", "gradcam", TypeError, "target must be"),
    ],
)
def test_bad_targets_say_what_is_wrong_and_leave_nothing_hooked(
    resnet, target, method, error, message
) -> None:
    before = snapshot(resnet)
    with pytest.raises(error, match=message):
        camwidget.explain(resnet, X, method=method, layer="layer4", target=target, channels=8) if (
            method == "scorecam"
        ) else camwidget.explain(resnet, X, method=method, layer="layer4", target=target)
    assert_same(resnet, before)


def test_malformed_targets_are_refused_when_made() -> None:
    with pytest.raises(ValueError, match="x1 > x0"):
        DetectionBox((10, 10, 5, 20), 1)
    with pytest.raises(ValueError, match=r"\(x0, y0, x1, y1\)"):
        DetectionBox((1, 2, 3), 1)
    with pytest.raises(ValueError, match="iou"):
        DetectionBox((0, 0, 5, 5), 1, iou=0)
    with pytest.raises(TypeError, match="class index must be an int"):
        Logit("3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mask must be \(H, W\)"):
        SegmentationClass(1, mask=np.zeros(5))


# -- segmentation ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deeplab() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=6
    )
    x = photos(160)
    fit_batchnorm(model, [x[:4], x[3:]])
    return model.eval()


def test_segmentation_grad_cam_equals_pytorch_grad_cam(deeplab) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    x = photos(160)[:1]
    with torch.no_grad():
        out = deeplab(x)["out"]
    classes = out[0].argmax(0)
    assert classes.unique().numel() > 1, "BatchNorm statistics not fitted: one class everywhere"
    c = int(classes.flatten().mode().values)
    mask = (classes == c).float()
    assert 0 < float(mask.mean()) < 1

    class Out(nn.Module):  # pytorch-grad-cam needs a tensor output
        def __init__(self) -> None:
            super().__init__()
            self.model = deeplab

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)["out"]

    wrapped = Out().eval()
    layer = wrapped.model.backbone.get_submodule("16")
    peer_target = SemanticSegmentationTarget(c, mask.numpy())
    ours = SegmentationClass(c, mask)
    with torch.no_grad():
        assert abs(float(ours(deeplab(x))) - float(peer_target(out[0]))) <= 1e-4 * abs(
            float(peer_target(out[0]))
        )
    cam = GradCAM(wrapped, target_layers=[layer])
    cam(input_tensor=x, targets=[peer_target])
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy()
    peer_raw = torch.from_numpy(cam.get_cam_image(x, layer, [peer_target], acts, grads))
    cam.activations_and_grads.release()
    raw = camwidget.explain(deeplab, x, method="gradcam", layer="backbone.16", target=ours, raw=True)
    assert pearson(raw, peer_raw) >= 0.99
    # the default mask is the pixels predicted as the class: the same map here
    default = camwidget.explain(
        deeplab, x, method="gradcam", layer="backbone.16", target=SegmentationClass(c), raw=True
    )
    assert torch.allclose(default, raw, rtol=1e-4, atol=1e-6 * float(raw.abs().max()))


def test_segmentation_maps_are_non_degenerate_for_every_target_method(deeplab) -> None:
    x = photos(128)[2:3]
    before = snapshot(deeplab)
    with torch.no_grad():
        c = int(deeplab(x)["out"][0].argmax(0).flatten().mode().values)
    for method, options in (
        ("gradcam", {}),
        ("hirescam", {}),
        ("scorecam", {"channels": 16}),
        ("ablationcam", {}),
    ):
        maps = camwidget.explain(deeplab, x, method=method, target=SegmentationClass(c), **options)
        assert torch.isfinite(maps).all() and maps.amax() == 1 and float(maps.std()) > 0.05, method
    with pytest.raises(ValueError, match=r"segmentation class 9 out of range: the model scores 6 classes"):
        camwidget.explain(deeplab, x, method="gradcam", target=SegmentationClass(9))
    assert_same(deeplab, before)
    ex = Explainer(deeplab)
    ex(x, SegmentationClass(c), method="hirescam")
    assert ex.layer_name.startswith("classifier") or ex.layer_name.startswith("backbone")  # not a class map


# -- detection ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, num_classes=5
    )
    images = photos(256, normalise=False)
    batch = model.transform(list(images))[0].tensors
    fit_batchnorm(model.backbone, [batch[:4], batch[3:]])
    return model.eval()


def test_detection_box_maps_are_non_degenerate_and_name_the_layer_entries(detector) -> None:
    x = photos(256, normalise=False)[:1]
    before = snapshot(detector)
    with torch.no_grad():
        det = detector(x)[0]
    assert len(det["scores"]) > 1 and float(det["scores"].std()) > 1e-4, "every detection scores the same"
    box, label = det["boxes"][0], int(det["labels"][0])
    target = DetectionBox(box, label)
    with torch.no_grad():
        assert abs(float(target(detector(x))[0]) - float(det["scores"][0])) < 1e-5
    for method, layer, options in (
        ("gradcam", "backbone:0", {}),
        ("hirescam", "backbone.body.16", {}),
        ("scorecam", "backbone:0", {"channels": 8}),
    ):
        maps = camwidget.explain(
            detector, x, method=method, layer=layer, target=target, mean=(0, 0, 0), std=(1, 1, 1), **options
        )
        assert maps.shape == (1, 256, 256) and torch.isfinite(maps).all(), method
        assert maps.amax() == 1 and float(maps.std()) > 0.02, method
    with pytest.raises(
        ValueError, match=r"layer 'backbone' returns a OrderedDict with entries '0' .*'pool'.*'backbone:0'"
    ):
        camwidget.explain(detector, x, method="gradcam", layer="backbone", target=target)
    nothing = DetectionBox((0, 0, 3, 3), label, iou=0.9)  # no detection there: score 0, map all zero
    assert camwidget.explain(detector, x, method="gradcam", layer="backbone:0", target=nothing).amax() == 0
    assert_same(detector, before)


# -- embeddings --------------------------------------------------------------------------------------------
def test_similarity_to_a_reference_image_or_embedding(resnet) -> None:
    encoder = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten()).eval()  # (N, 512) embeddings
    reference = X[1]
    with torch.no_grad():
        embedding = encoder(reference[None])[0]
    by_image = camwidget.explain(
        encoder, X[:1], method="gradcam", layer="7", target=Similarity(reference), raw=True
    )
    by_embedding = camwidget.explain(
        encoder, X[:1], method="gradcam", layer="7", target=Similarity(embedding), raw=True
    )
    assert torch.allclose(by_image, by_embedding, rtol=1e-4, atol=1e-6)
    assert float(by_image.std()) > 0


# -- video / volumes ---------------------------------------------------------------------------------------
class Tiny3D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 16, 3, stride=2, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3, 4)))


@pytest.mark.parametrize("method", CNN_METHODS)
def test_every_method_gives_a_map_over_time_for_video(method) -> None:
    torch.manual_seed(0)
    model = Tiny3D().eval()
    clip = torch.randn(2, 3, 8, 24, 24)
    options = quick_options(method, iterations=3)
    maps = camwidget.explain(model, clip, method=method, layer="features.3", **options)
    assert maps.shape == (2, 8, 24, 24) and torch.isfinite(maps).all()
    assert float(maps.amax()) == 1.0 and float(maps.std()) > 0, method
    curves = insertion_deletion(model, clip, maps, step=24 * 24)  # one frame's worth of voxels per step
    assert curves.deletion.shape == (2, 9) and torch.isfinite(curves.deletion).all()


def test_r3d_grad_cam_over_time_equals_a_float64_formula() -> None:
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None).eval()
    clip = torch.randn(1, 3, 16, 56, 56, generator=torch.Generator().manual_seed(1))
    got = camwidget.explain(model, clip, method="gradcam", layer="layer4", target=11, raw=True)

    double = model.double()
    try:
        store = {}

        def keep(m, a, out):
            out.retain_grad()
            store["a"] = out

        handle = double.layer4.register_forward_hook(keep)
        double(clip.double())[0, 11].backward()
        handle.remove()
        a, g = store["a"], store["a"].grad
        by_hand = (g.mean(dim=(2, 3, 4), keepdim=True) * a).sum(dim=1).detach()  # (1, t, h, w)
    finally:
        model.float()
        model.zero_grad(set_to_none=True)
    assert got.shape == by_hand.shape == (1, 2, 4, 4)
    assert (got.double() - by_hand).abs().max() <= 1e-4 * by_hand.abs().max()
    full = camwidget.explain(model, clip, method="gradcam", layer="layer4", target=11)
    assert full.shape == (1, 16, 56, 56)
