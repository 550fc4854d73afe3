"""CamExplorer beyond classifiers (issue 19), kernel side: what the class selector lists for segmentation,
detection, multi-label and video models and for a callable target, and that every map and curve it shows
is the engine's and the metric's for the same target.

The segmentation and detection models are torchvision's with random weights and BatchNorm statistics
fitted on the sample photos (random MobileNetV3 BatchNorm otherwise makes every pixel one class and every
detection score the same; see tests/engine/test_targets.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from traitlets import TraitError

import camwidget
from camwidget.metrics import insertion_deletion
from camwidget.targets import DetectionBox, Logit, Output, Probability, SegmentationClass, Sigmoid
from camwidget.widget.map_key import MapKey
from tests.engine.test_model_state import assert_same, snapshot
from tests.engine.test_targets import fit_batchnorm, pearson, photos
from tests.widget.conftest import SIZE, TinyNet, random_images, small_preprocess


def levels(w, slot: int = 0) -> np.ndarray:
    return np.frombuffer(w.maps[slot]["levels"], dtype=np.uint8)


def as_levels(cam: torch.Tensor) -> np.ndarray:
    return cam.mul(255).round().clamp(0, 255).to(torch.uint8).flatten().numpy()


# -- segmentation -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deeplab() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=6
    )
    x = photos(96)
    fit_batchnorm(model, [x[:4], x[3:]])
    return model.eval()


def test_a_segmentation_model_lists_its_classes_by_pixel_share(deeplab) -> None:
    x = photos(96)[:2]
    before = snapshot(deeplab)
    names = [f"region {i}" for i in range(6)]
    w = camwidget.CamExplorer(deeplab, x, class_names=names, methods=["gradcam", "hirescam"], curve_steps=8)
    try:
        assert w.wait(120) and w.error == "", w.error
        assert w.choices["kind"] == "segmentation" and w.choices["score"] == "share of pixels"
        with torch.no_grad():
            predicted = deeplab(x[:1])["out"].argmax(1)[0]
        shares = torch.bincount(predicted.flatten(), minlength=6).double() / predicted.numel()
        assert len(torch.unique(predicted)) >= 2, "one class everywhere: the BatchNorm fit did not take"
        listed = {c["index"]: c["prob"] for c in w.top_classes}
        for c, share in listed.items():
            assert share == pytest.approx(float(shares[c]), abs=1e-6)
        assert w.class_index == int(shares.argmax()) and w.top_classes[0]["name"] == names[w.class_index]
        # the image panel's outline: the predicted class per pixel, at the input's resolution
        pixels = np.frombuffer(w.annotations["pixels"], dtype=np.uint8).reshape(96, 96)
        assert np.array_equal(pixels, predicted.numpy())
        # a class other than the biggest: the engine's map and the metric's curves for SegmentationClass(c)
        c = w.top_classes[1]["index"]
        w.method, w.class_index = "gradcam", c
        assert w.wait(120) and w.error == ""
        target = SegmentationClass(c, mask=(predicted == c).float())
        expected = camwidget.explain(deeplab, x[:1], method="gradcam", layer=w.layer, target=target)[0]
        assert np.abs(levels(w).astype(int) - as_levels(expected).astype(int)).max() <= 1
        assert float(expected.max()) == 1.0 and float(expected.std()) > 0.05  # an informative map
        curves = insertion_deletion(deeplab, x[:1], expected[None], target=target, step=96 * 96 // 8)
        assert w.curves[0]["insertion_auc"] == pytest.approx(float(curves.insertion_auc[0]), rel=1e-4)
        assert w.curves[0]["score"] == "class score over its pixels"
        assert w.maps[0]["class_name"] == names[c]
        with pytest.raises(TraitError, match=r"class_index 6 out of range: the model has 6 classes"):
            w.class_index = 6
    finally:
        w.close()
    assert_same(deeplab, before)


def test_segmentation_class_target_starts_there_and_multilabel_is_refused(deeplab) -> None:
    x = photos(96)[:1]
    w = camwidget.CamExplorer(deeplab, x, target=SegmentationClass(3), curves=False, methods=["hirescam"])
    try:
        assert w.class_index == 3 and w.choices["kind"] == "segmentation"
    finally:
        w.close()
    with pytest.raises(ValueError, match=r"multilabel=True needs \(N, K\) logits, one per label"):
        camwidget.CamExplorer(deeplab, x, multilabel=True, curves=False)
    with pytest.raises(ValueError, match=r"labels= \(the true class per image\) needs a classifier"):
        camwidget.CamExplorer(deeplab, x, labels=[2], curves=False)


# -- detection ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, num_classes=5
    )
    images = photos(160, normalise=False)
    batch = model.transform(list(images))[0].tensors
    fit_batchnorm(model.backbone, [batch[:4], batch[3:]])
    return model.eval()


def test_a_detector_draws_its_boxes_and_explains_the_one_clicked(detector) -> None:
    x = photos(160, normalise=False)[:2]
    before = snapshot(detector)
    kwargs = {"mean": (0, 0, 0), "std": (1, 1, 1), "layer": "backbone:0", "curve_steps": 8}
    w = camwidget.CamExplorer(detector, x, methods=["gradcam", "hirescam"], method="gradcam", **kwargs)
    try:
        assert w.wait(120) and w.error == "", w.error
        assert w.choices["kind"] == "detections" and not w.choices["searchable"]
        with torch.no_grad():
            found = detector(x[:1])[0]
        assert float(found["scores"].std()) > 1e-4, "every detection scores the same"
        boxes = w.annotations["boxes"]
        assert len(boxes) == len(w.top_classes) == 5
        for drawn in boxes:
            i = drawn["index"]
            assert drawn["box"] == pytest.approx(found["boxes"][i].tolist(), abs=0.01)
            assert drawn["score"] == pytest.approx(float(found["scores"][i]), abs=1e-6)
            assert drawn["name"] == f"class {int(found['labels'][i])} · box {i}"
        # "clicking" the third box: its DetectionBox is explained, with the engine's map
        i = boxes[2]["index"]
        w.class_index = i
        assert w.wait(120) and w.error == ""
        assert MapKey.decode(w.maps[0]["key"]).target == i
        target = DetectionBox(found["boxes"][i], int(found["labels"][i]))
        expected = camwidget.explain(
            detector, x[:1], method="gradcam", layer=w.layer, target=target, mean=(0, 0, 0), std=(1, 1, 1)
        )[0]
        assert np.abs(levels(w).astype(int) - as_levels(expected).astype(int)).max() <= 1
        assert float(expected.std()) > 0.01
        assert w.curves[0]["score"] == "detection score"
        assert w.curves[0]["deletion"][0] == pytest.approx(float(found["scores"][i]), abs=1e-4)
        count = len(found["scores"])
        with pytest.raises(
            TraitError, match=rf"class_index {count} out of range: image 0 has {count} detections"
        ):
            w.class_index = count
    finally:
        w.close()
    assert_same(detector, before)
    with pytest.raises(ValueError, match=r"for a detector, target= takes a camwidget.targets.DetectionBox"):
        camwidget.CamExplorer(detector, x[:1], target=2, **kwargs)


# -- multi-label ------------------------------------------------------------------------------------------
def test_a_multilabel_head_is_explained_per_label_with_its_sigmoid() -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=6)
    fit_batchnorm(net, [photos(64)])  # a trained model's BatchNorm statistics (the weights stay random)
    x = photos(64)[:2]
    names = [f"label {i}" for i in range(6)]
    w = camwidget.CamExplorer(net, x, multilabel=True, class_names=names, curve_steps=8)
    try:
        assert w.wait(60) and w.error == ""
        assert w.choices["kind"] == "labels" and w.choices["score"] == "sigmoid"
        with torch.no_grad():
            sigmoids = torch.sigmoid(net(x))
        for row in w.top_classes:
            assert row["prob"] == pytest.approx(float(sigmoids[0, row["index"]]), abs=1e-6)
        assert sum(r["prob"] for r in w.top_classes) > 1.5  # not a softmax
        # not degenerate: no saturated label, and the head reads the image (not only its bias)
        assert bool(((sigmoids > 0.05) & (sigmoids < 0.95)).all()), sigmoids
        assert float((sigmoids[0] - sigmoids[1]).abs().max()) > 0.01, sigmoids
        top = torch.from_numpy(w.heatmap_array())
        c = w.top_classes[2]["index"]
        w.class_index = c
        assert w.wait(60)
        assert pearson(torch.from_numpy(w.heatmap_array()), top) < 0.9  # each label has its own map
        expected = camwidget.explain(net, x[:1], method="hirescam", layer=w.layer, target=Sigmoid(c))[0]
        assert np.abs(levels(w).astype(int) - as_levels(expected).astype(int)).max() <= 1
        curves = insertion_deletion(net, x[:1], expected[None], target=Sigmoid(c), step=64 * 64 // 8)
        assert w.curves[0]["insertion"] == pytest.approx(curves.insertion[0].tolist(), abs=1e-5)
        assert w.curves[0]["score"] == "label sigmoid" and w.maps[0]["class_name"] == f"label {c}"
    finally:
        w.close()
    w = camwidget.CamExplorer(net, x[:1], target=Sigmoid(4), class_names=names, curves=False)
    try:  # Sigmoid(c) says multi-label by itself
        assert w.choices["kind"] == "labels" and w.class_index == 4
    finally:
        w.close()


# -- a callable, or a score chosen by target= --------------------------------------------------------------
def test_a_callable_target_is_shown_by_its_name_and_explained_as_is(make_explorer, model) -> None:
    def logit_gap(out: torch.Tensor) -> torch.Tensor:
        return out[:, 3] - out[:, 1]

    w = make_explorer(target=logit_gap)
    assert w.wait(30) and w.error == ""
    assert w.choices["kind"] == "target" and w.choices["fixed"] and w.class_names == []
    assert [r["name"] for r in w.top_classes] == ["logit_gap"] and w.class_index == 0
    x = w.inputs[:1]
    with torch.no_grad():
        assert w.top_classes[0]["prob"] == pytest.approx(float(logit_gap(model(x))[0]), abs=1e-5)
    expected = camwidget.explain(model, x, method="hirescam", layer=w.layer, target=logit_gap)[0]
    assert np.abs(levels(w).astype(int) - as_levels(expected).astype(int)).max() <= 1
    assert w.curves[0]["score"] == "logit_gap" and w.maps[0]["class_name"] == "logit_gap"
    w.image_index = 2  # the same target on every image
    assert w.wait(30) and w.class_index == 0 and MapKey.decode(w.maps[0]["key"]).image == 2
    with pytest.raises(TraitError, match=r"class_index 1 out of range: the explorer explains one target"):
        w.class_index = 1
    with pytest.raises(TraitError, match=r"compare 'class' needs choices to compare"):
        w.compare = "class"
    w.compare = "method"  # two methods of the one target
    assert w.wait(30) and len(w.maps) == 2


def test_bad_targets_are_refused_with_what_was_wrong(make_explorer) -> None:
    with pytest.raises(ValueError, match=r"must return one score per image, shape \(1,\); got \(1, 10\)"):
        make_explorer(target=lambda out: out)
    with pytest.raises(ValueError, match=r"returned NaN or infinite scores"):
        make_explorer(target=lambda out: out[:, 0] * float("nan"))
    with pytest.raises(ValueError, match=r"the target failed on the model's output \(a tensor of shape"):
        make_explorer(target=lambda out: out["logits"][:, 0])
    with pytest.raises(ValueError, match=r"compare='class' compares two of the image's choices"):
        make_explorer(target=Output(2), compare="class")
    with pytest.raises(
        TypeError, match=r"which CamExplorer cannot list choices from; pass target= a callable"
    ):
        make_explorer(net=torch.nn.Sequential(TinyNet().features, torch.nn.Flatten(2)))


def test_a_chosen_score_is_kept_for_every_class(make_explorer, model) -> None:
    x = make_explorer(curves=False).inputs[:1]
    with torch.no_grad():
        first, second = model(x)[0].argsort(descending=True)[:2].tolist()
    w = make_explorer(target=Probability(second), layer="features.3")
    assert w.class_index == second and w.choices["kind"] == "classes"
    for c in (second, first):  # another class: still its probability, not its logit
        w.class_index = c
        assert w.wait(30)
        expected = camwidget.explain(model, x, method="hirescam", layer=w.layer, target=Probability(c))[0]
        logit = camwidget.explain(model, x, method="hirescam", layer=w.layer, target=c)[0]
        assert np.abs(levels(w).astype(int) - as_levels(expected).astype(int)).max() <= 1
        assert float((expected - logit).abs().max()) > 0.1  # the two scores give different maps here
    w2 = make_explorer(target=Logit(2))
    assert w2.wait(30) and w2.curves[0]["score"] == "class logit"
    curves = insertion_deletion(
        model, x, torch.from_numpy(w2.heatmap_array())[None], target=Logit(2), step=SIZE * SIZE // 8
    )
    assert w2.curves[0]["insertion"] == pytest.approx(curves.insertion[0].tolist(), abs=1e-5)


# -- video ---------------------------------------------------------------------------------------------------
def test_a_video_model_gets_a_frame_scrubber_and_maps_over_time() -> None:
    torch.manual_seed(0)
    net = torchvision.models.video.r3d_18(weights=None).eval()
    still = photos(96)[2]
    clip = torch.stack([still[:, 8:64, 2 * t : 2 * t + 56] for t in range(16)], dim=1)  # (3, 16, 56, 56)
    clips = torch.stack([clip, clip.flip(1)])  # two clips, the second played backwards
    before = snapshot(net)
    w = camwidget.CamExplorer(net, clips, methods=["gradcam", "hirescam"], method="gradcam", curve_steps=8)
    try:
        assert w.wait(120) and w.error == "", w.error
        assert w.image["frames"] == 16 and len(w.image["rgb"]) == 16 * 56 * 56 * 3
        cam = w.heatmap_array()
        assert cam.shape == (16, 56, 56) and len(w.maps[0]["levels"]) == 16 * 56 * 56
        expected = camwidget.explain(net, clips[:1], method="gradcam", layer=w.layer, target=w.class_index)[0]
        assert np.abs(cam - expected.numpy()).max() < 1e-5
        assert float(expected.std()) > 0.01 and not np.allclose(cam[0], cam[-1])  # it changes over time
        order = np.frombuffer(w.curves[0]["order"], dtype="<u2")
        assert order.shape == (16 * 56 * 56,) and order.max() == w.curves[0]["n_steps"] == 8
        w.frame = 15
        png = w.to_png()
        assert png[:4] == b"\x89PNG"
        with pytest.raises(TraitError, match=r"frame 16 out of range: the clips have 16 frames"):
            w.frame = 16
        # the what-if brush paints every frame of the clip
        painted = np.zeros((56, 56), bool)
        painted[10:30, 10:30] = True
        w.paint(painted, "black")
        assert w.wait(120) and w.error == ""
        x = w.session.painted(0, MapKey.decode(w.maps[0]["key"]).mask)
        black = (-torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])).view(3, 1, 1)
        assert torch.allclose(x[0, :, :, 10:30, 10:30], black[:, None].expand(3, 16, 20, 20))
        assert torch.equal(x[0, :, :, 30:, 30:], clips[0, :, :, 30:, 30:])
        assert w.whatif["after"] is not None
    finally:
        w.close()
    assert_same(net, before)


def test_video_clips_are_checked() -> None:
    net = torchvision.models.video.r3d_18(weights=None).eval()
    with pytest.raises(ValueError, match=r"a clip \(3, T, H, W\)"):
        camwidget.CamExplorer(net, [torch.zeros(2, 4, 8, 8)])
    with pytest.raises(TypeError, match=r"images must be"):
        camwidget.CamExplorer(net, {"clip": 1})


def test_image_lists_are_unchanged_by_the_video_path(make_explorer) -> None:
    w = make_explorer(images=random_images(2), preprocess=small_preprocess())
    assert w.image["frames"] == 1 and len(w.image["rgb"]) == SIZE * SIZE * 3
