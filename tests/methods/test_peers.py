"""Each new method equals the peer that has it, on ResNet-18, DenseNet-121 and ViT-B/16 (random init, 64 px
real photos): Pearson >= 0.99 per image, on the same post-processing (pytorch-grad-cam's) or on raw maps.

Where camwidget's definition differs from every peer by design (Smooth Grad-CAM++ follows its paper), or a
peer cannot run a model (torchcam's SS-CAM / IS-CAM on a transformer's tokens), the map is checked against a
float64 formula written here (tests/methods/test_formulas.py)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import camwidget

from .conftest import Case, pearson, peer_post, photos

CLASSES = [3, 7]
MIN_PEARSON = 0.99

# camwidget name -> pytorch-grad-cam class; compared after pytorch-grad-cam's own post-processing
PGC_NORMALISED = {
    "gradcam-elementwise": "GradCAMElementWise",
    "fem": "FEM",
    "shapleycam": "ShapleyCAM",
    "finercam": "FinerCAM",
    "fullgrad": "FullGrad",
}
# principal components: the sign of an SVD is arbitrary, so the raw maps are compared up to sign
PGC_RAW_UP_TO_SIGN = {"eigengradcam": "EigenGradCAM", "kpcacam": "KPCA_CAM"}


def _pgc(case: Case, method: str, x: torch.Tensor):
    """pytorch-grad-cam's map (N, H, W) and, for the principal-component methods, its raw map."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    name = {**PGC_NORMALISED, **PGC_RAW_UP_TO_SIGN}[method]
    cls = getattr(pgc, name)
    if method == "fullgrad":  # every biased layer; its reshape would hit the patch convolution's output
        cam = cls(case.model, [], reshape_transform=None)
    else:
        cam = cls(case.model, [case.module(case.layer)], reshape_transform=case.reshape)
    targets = None
    if method != "finercam":  # Finer-CAM's own targets: the predicted class against its 3 closest
        target = ClassifierOutputReST if method == "shapleycam" else ClassifierOutputTarget
        targets = [target(c) for c in CLASSES]
    try:
        with sdpa_kernel(SDPBackend.MATH):  # ShapleyCAM's double backward: no fused attention kernel has one
            out = cam(x, targets)
        raw = None
        if method in PGC_RAW_UP_TO_SIGN:
            acts = cam.activations_and_grads.activations[0].numpy()
            grads = cam.activations_and_grads.gradients
            grads = grads[0].numpy() if grads else None  # KPCA-CAM runs no backward pass
            raw = cam.get_cam_image(x, case.module(case.layer), targets, acts, grads, False)
    finally:
        (cam.base_cam if method == "finercam" else cam).activations_and_grads.release()
        case.model.zero_grad(set_to_none=True)
    return out, raw


MODELS = ("resnet18_case", "densenet121_case", "vit_case")
# pytorch-grad-cam 1.5.7 cannot run ShapleyCAM on token layers (it reshapes the gradients but forms the map
# from the unreshaped activations: "Invalid activation shape"); test_formulas.py checks ours there.
PGC_CASES = [
    (model, method)
    for model in MODELS
    for method in (*PGC_NORMALISED, *PGC_RAW_UP_TO_SIGN)
    if (model, method) != ("vit_case", "shapleycam")
]


@pytest.mark.parametrize(("model", "method"), PGC_CASES)
def test_equals_pytorch_grad_cam(request: pytest.FixtureRequest, model: str, method: str) -> None:
    case: Case = request.getfixturevalue(model)
    x = photos(2)
    out, peer_raw = _pgc(case, method, x)
    target = None if method == "finercam" else CLASSES
    raw = camwidget.explain(
        case.model,
        x,
        method=method,
        layer=case.layer,
        target=target,
        reshape_transform=case.reshape,
        precision="fp32",
        raw=True,
    )
    if method in PGC_RAW_UP_TO_SIGN:
        r = [abs(pearson(raw[i], peer_raw[i])) for i in range(2)]
    else:
        # FullGrad's raw map is already input-sized and non-negative; the peer only min-max scales it
        ours = raw.numpy() if method == "fullgrad" else peer_post(raw)
        r = [pearson(ours[i], out[i]) for i in range(2)]
    assert min(r) >= MIN_PEARSON, f"{case.name} {method}: Pearson {r}"
    # and the map camwidget returns is the normalised version of that raw map
    maps = camwidget.explain(
        case.model, x, method=method, layer=case.layer, target=target, reshape_transform=case.reshape
    )
    assert maps.shape == (2, 64, 64) and float(maps.amax()) == 1.0  # at least one informative map
    assert float(maps.flatten(1).std(1).max()) > 0.01


def test_kpcacam_other_kernels_equal_scikit_learn(resnet18_case: Case) -> None:
    import pytorch_grad_cam as pgc

    x = photos(2)
    case = resnet18_case
    for kernel in ("rbf", "poly", "cosine"):
        with pgc.KPCA_CAM(case.model, [case.module(case.layer)], kernel=kernel) as cam:
            cam(x, None)
            acts = cam.activations_and_grads.activations[0].numpy()
            peer = cam.get_cam_image(x, None, None, acts, None, False)
        ours = camwidget.explain(case.model, x, method="kpcacam", layer=case.layer, kernel=kernel, raw=True)
        r = [abs(pearson(ours[i], peer[i])) for i in range(2)]
        assert min(r) >= MIN_PEARSON, f"kernel {kernel}: {r}"


@pytest.mark.parametrize("method", ["sscam", "iscam"])
@pytest.mark.parametrize("model", ["resnet18_case", "densenet121_case"])
def test_score_family_equals_torchcam(request: pytest.FixtureRequest, model: str, method: str) -> None:
    """One image (torchcam draws SS-CAM's noise for the whole batch at once), the same seed: the same noise,
    the same masks, the same logits minus the unmasked logit, the same softmax."""
    from torchcam.methods import ISCAM, SSCAM

    case: Case = request.getfixturevalue(model)
    x = photos(1)
    c = 3
    peer_options = {"num_samples": 2} | ({"std": 2.0} if method == "sscam" else {})
    with (SSCAM if method == "sscam" else ISCAM)(case.model, case.score_layer, **peer_options) as extractor:
        with torch.no_grad():
            case.model(x)
        torch.manual_seed(11)
        peer = extractor(class_idx=c, normalized=False)[0]
    ours = {"samples": 2} | ({"noise": 2.0, "seed": 11} if method == "sscam" else {})
    raw = camwidget.explain(
        case.model, x, method=method, layer=case.score_layer, target=c, precision="fp32", raw=True, **ours
    )
    r = pearson(torch.relu(raw), peer)  # torchcam's unnormalised map is already ReLU'd
    assert r >= MIN_PEARSON, f"{case.name} {method}: Pearson {r}"


def test_legrad_equals_torchcam_for_one_block_and_fused_blocks(vit_case: Case) -> None:
    from torchcam.methods import LeGrad

    case = vit_case
    x = photos(2)
    blocks = ["encoder.layers.encoder_layer_10", "encoder.layers.encoder_layer_11"]
    for chosen in (blocks[1:], blocks):
        with LeGrad(case.model, chosen) as extractor:
            case.model(x)
            peer = extractor(CLASSES, normalized=False)[0]  # mean of the blocks' raw maps
        case.model.zero_grad(set_to_none=True)
        if len(chosen) == 1:
            raw = camwidget.explain(
                case.model,
                x,
                method="legrad",
                layer=chosen[0],
                target=CLASSES,
                reshape_transform=case.reshape,
                raw=True,
            )
            r = [pearson(raw[i], peer[i]) for i in range(2)]
        else:  # fused by LeGrad's own rule (the raw mean), the method's default
            maps = camwidget.explain(
                case.model, x, method="legrad", layer=chosen, target=CLASSES, reshape_transform=case.reshape
            )
            up = torch.nn.functional.interpolate(peer[:, None], size=(64, 64), mode="bilinear")[:, 0]
            r = [pearson(maps[i], up[i]) for i in range(2)]
        assert min(r) >= MIN_PEARSON, f"LeGrad {chosen}: Pearson {r}"


def test_legrad_refuses_a_cnn_with_a_clear_message(resnet18_case: Case) -> None:
    with pytest.raises(ValueError, match="legrad explains vision transformers"):
        camwidget.explain(resnet18_case.model, photos(1), method="legrad", layer="layer3")


def test_finer_contrast_equals_pytorch_grad_cams_target(resnet18_case: Case) -> None:
    from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

    from camwidget.targets import FinerContrast, ReST

    x = photos(2)
    with torch.no_grad():
        logits = resnet18_case.model(x)
    bound = FinerContrast(CLASSES).prepare(logits, lambda t: t)
    order = torch.argsort((logits - logits[torch.arange(2), CLASSES].view(-1, 1)).abs(), dim=1)
    for i in range(2):
        peer = FinerWeightedTarget(CLASSES[i], order[i, 1:4].tolist(), 1.0)(logits[i])
        assert bound.comparisons[i].tolist() == order[i, 1:4].tolist()
        assert float(bound(logits)[i]) == pytest.approx(float(peer), rel=1e-5)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST

    rest = ReST(CLASSES).prepare(logits, lambda t: t)(logits)
    for i in range(2):
        assert float(rest[i]) == pytest.approx(float(ClassifierOutputReST(CLASSES[i])(logits[i])), rel=1e-5)
