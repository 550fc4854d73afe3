"""aug_smooth, eigen_smooth and several layers equal their hand computations, and pytorch-grad-cam's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import camwidget
from camwidget.engine.hooks import LayerCapture
from camwidget.engine.normalize import finalize, minmax
from camwidget.targets import SegmentationClass

from .conftest import Case, pearson, peer_post, photos

CLASSES = [3, 7]


def _explain(case: Case, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
    return camwidget.explain(case.model, x, precision="fp32", **{"method": "gradcam", **kwargs})


@pytest.mark.parametrize(
    ("method", "options"), [("gradcam", {}), ("gradcam++", {}), ("scorecam", {"channels": 8})]
)
def test_several_layers_fuse_as_their_single_layer_maps_by_hand(resnet18_case: Case, method, options) -> None:
    """One forward captures every layer (the later ones as nodes of the graph the first re-rooted) and one
    backward gives each its gradient: each layer's map is the one it has alone, and the fusions are the
    mean / product of the normalised maps, or the mean of the raw maps."""
    case = resnet18_case
    x = photos(2)
    layers = ["layer2", "layer3", "layer4"]
    raws = [
        _explain(case, x, method=method, layer=name, target=CLASSES, raw=True, **options) for name in layers
    ]
    normalised = torch.stack([finalize(r, (64, 64)) for r in raws])
    expected = {
        "mean": minmax(normalised.mean(0)),
        "refine": minmax(normalised.prod(0)),
        "raw-mean": finalize(
            torch.stack([F.interpolate(r[:, None], size=(64, 64), mode="bilinear")[:, 0] for r in raws]).mean(
                0
            ),
            (64, 64),
        ),
    }
    for fusion, want in expected.items():
        got = _explain(case, x, method=method, layer=layers, target=CLASSES, fusion=fusion, **options)
        assert torch.allclose(got, want, atol=1e-5), fusion
    assert float((expected["mean"] - expected["refine"]).abs().max()) > 0.05  # the rules differ


def test_several_layers_equal_pytorch_grad_cam(resnet18_case: Case) -> None:
    from pytorch_grad_cam import GradCAM, RefineCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    case = resnet18_case
    x = photos(2)
    modules = [case.module("layer3"), case.module("layer4")]
    targets = [ClassifierOutputTarget(c) for c in CLASSES]
    with GradCAM(case.model, modules) as cam:
        peer_mean = cam(x, targets)
    refine = RefineCAM(case.model, modules, base_method=GradCAM)
    peer_refine = refine(x, targets)
    for base in refine.base_cam_per_layer:
        base.activations_and_grads.release()
    case.model.zero_grad(set_to_none=True)
    # The same post-processing (pytorch-grad-cam's: ReLU and min-max at feature resolution, then resize) on
    # camwidget's per-layer raw maps, fused by the same rules: the peer's maps.
    from pytorch_grad_cam.utils.image import scale_cam_image

    raws = [_explain(case, x, layer=name, target=CLASSES, raw=True) for name in ("layer3", "layer4")]
    posted = np.stack([peer_post(r) for r in raws])
    same_mean, same_refine = scale_cam_image(posted.mean(0)), scale_cam_image(posted.prod(0))
    assert min(pearson(same_mean[i], peer_mean[i]) for i in range(2)) >= 0.99
    assert min(pearson(same_refine[i], peer_refine[i]) for i in range(2)) >= 0.99
    # camwidget's own maps upsample before the ReLU and the min-max (finalize): close, not identical
    mean = _explain(case, x, layer=["layer3", "layer4"], target=CLASSES)
    product = _explain(case, x, layer=["layer3", "layer4"], target=CLASSES, fusion="refine")
    assert min(pearson(mean[i], peer_mean[i]) for i in range(2)) >= 0.95
    assert min(pearson(product[i], peer_refine[i]) for i in range(2)) >= 0.95


def test_eigen_smooth_is_the_first_principal_component_by_hand(resnet18_case: Case) -> None:
    """Grad-CAM's terms T_k = mean(g_k)·A_k as a (positions, C) matrix, centred per channel, projected on the
    first right singular vector (numpy, float64), signed to correlate positively with Σ_k T_k."""
    case = resnet18_case
    x = photos(2)
    with LayerCapture(case.module("layer3"), with_gradients=True) as capture, torch.no_grad():
        out = case.model(x)
        with torch.enable_grad():
            g = capture.gradients(out[torch.arange(2), CLASSES])
        a = capture.activations
    terms = (g.mean(dim=(2, 3), keepdim=True) * a).double().numpy()
    expected = []
    for t in terms:
        m = t.reshape(t.shape[0], -1).T
        m = m - m.mean(axis=0)
        projection = m @ np.linalg.svd(m, full_matrices=False)[2][0]
        if projection @ (t.sum(0).ravel() - t.sum(0).mean()) < 0:
            projection = -projection
        expected.append(projection.reshape(t.shape[1:]))
    got = _explain(case, x, layer="layer3", target=CLASSES, eigen_smooth=True, raw=True)
    assert np.allclose(got.numpy(), np.stack(expected), rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # pytorch-grad-cam's eigen_smooth: the same projection up to the SVD's arbitrary sign
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(case.model, [case.module("layer3")]) as cam:
        targets = [ClassifierOutputTarget(c) for c in CLASSES]
        cam(x, targets)
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        peer = cam.get_cam_image(x, case.module("layer3"), targets, acts, grads, eigen_smooth=True)
    case.model.zero_grad(set_to_none=True)
    assert min(abs(pearson(got[i], peer[i])) for i in range(2)) >= 0.99
    # principal components already: unchanged; no weighted terms: refused
    eigen = _explain(case, x, method="eigencam", layer="layer3")
    assert torch.equal(eigen, _explain(case, x, method="eigencam", layer="layer3", eigen_smooth=True))
    with pytest.raises(ValueError, match="eigen_smooth is not defined for FullGrad"):
        _explain(case, x, method="fullgrad", eigen_smooth=True)


def _by_hand(case: Case, x: torch.Tensor, classes: list[int], scales=(1.0,)) -> torch.Tensor:
    total = torch.zeros(x.shape[0], 64, 64)
    for scale in scales:
        side = round(64 * scale)
        xs = F.interpolate(x, size=(side, side), mode="bilinear") if scale != 1.0 else x
        for flip in (False, True):
            for factor in (0.9, 1.0, 1.1):
                xa = (xs.flip(-1) if flip else xs) * factor
                m = _explain(case, xa, layer="layer3", target=classes)
                m = m.flip(-1) if flip else m
                if scale != 1.0:
                    m = F.interpolate(m[:, None], size=(64, 64), mode="bilinear")[:, 0]
                total += m
    return minmax(total)


def test_aug_smooth_by_hand_and_against_pytorch_grad_cam(resnet18_case: Case) -> None:
    case = resnet18_case
    x = photos(2)
    got = _explain(case, x, layer="layer3", target=CLASSES, aug_smooth=True)
    assert torch.allclose(got, _by_hand(case, x, CLASSES), atol=1e-5)
    with torch.no_grad():
        predicted = case.model(x).argmax(1).tolist()
    fixed = _explain(case, x, layer="layer3", aug_smooth=True)  # the class predicted on the plain inputs
    assert torch.allclose(fixed, _by_hand(case, x, predicted), atol=1e-5)
    scaled = _explain(case, x, layer="layer3", target=CLASSES, aug_smooth=True, aug_scales=(0.75, 1.0))
    assert torch.allclose(scaled, _by_hand(case, x, CLASSES, (0.75, 1.0)), atol=1e-5)
    assert float((scaled - got).abs().max()) > 0.01

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(case.model, [case.module("layer3")]) as cam:
        peer = cam(x, [ClassifierOutputTarget(c) for c in CLASSES], aug_smooth=True)
    case.model.zero_grad(set_to_none=True)
    assert min(pearson(got[i], peer[i]) for i in range(2)) >= 0.99


def test_smoothing_and_fusion_refuse_what_they_cannot_do(resnet18_case: Case) -> None:
    case = resnet18_case
    x = photos(1)
    with pytest.raises(ValueError, match="tied to pixel positions"):
        _explain(case, x, layer="layer3", target=SegmentationClass(1), aug_smooth=True)
    with pytest.raises(ValueError, match="cannot be aug_smooth'ed"):
        _explain(case, x, layer="layer3", aug_smooth=True, raw=True)
    with pytest.raises(ValueError, match="explain them one at a time"):
        _explain(case, x, layer=["layer3", "layer4"], raw=True)
    with pytest.raises(ValueError, match="fusion must be None or one of mean, refine, raw-mean"):
        _explain(case, x, layer=["layer3", "layer4"], fusion="max")
    with pytest.raises(ValueError, match="aug_scales"):
        _explain(case, x, layer="layer3", aug_smooth=True, aug_scales=(0,))
    with pytest.raises(TypeError, match="eigen_smooth must be True or False"):
        _explain(case, x, layer="layer3", eigen_smooth="yes")
    with pytest.raises(ValueError, match="fullgrad reads every layer it needs itself"):
        _explain(case, x, method="fullgrad", layer=["layer3", "layer4"])
