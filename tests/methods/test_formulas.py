"""Where camwidget differs from every peer by design, or no peer runs the model, each map equals a float64
formula written here: Smooth Grad-CAM++ (the paper's averages), ShapleyCAM on a ViT (pytorch-grad-cam cannot
run it on tokens), SS-CAM / IS-CAM on a ViT (torchcam needs (N, C, h, w) layers), RandomCAM's documented
draws, FullGrad's decomposition and its official per-layer normalisation, Finer-CAM's gradient through the
softmax weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import camwidget
from camwidget.engine.explainer import Explainer
from camwidget.methods.fullgrad import bias_layers, effective_bias

from .conftest import Case, pearson, photos

C = 3  # the class explained


class _Leaf:
    """Forward hook: replace the layer's output by a float64 leaf that requires grad (the float64 stand-in
    for the engine's capture), keeping it in ``.value``."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        self.value = output.detach().requires_grad_(True)
        return self.value


def _shaped(case: Case, t: torch.Tensor) -> torch.Tensor:
    return case.reshape(t) if case.reshape is not None else t


def _layer_grads(case: Case, model: nn.Module, x: torch.Tensor, score=None, create_graph=False):
    """(activations, gradient, leaf, score) of the float64 ``model`` at ``case.layer`` for class C's logit
    (or ``score(logits)``)."""
    leaf = _Leaf()
    handle = dict(model.named_modules())[case.layer].register_forward_hook(leaf)
    try:
        logits = model(x)
    finally:
        handle.remove()
    y = logits[:, C] if score is None else score(logits)
    (g,) = torch.autograd.grad(y.sum(), leaf.value, create_graph=create_graph)
    return leaf.value, g, y


def test_smooth_gradcampp_follows_its_paper(case: Case) -> None:
    """D1, D2, D3 = means of g, g², g³ over the noisy copies; Grad-CAM++'s α from D2, D3 and the clean
    activations; w = Σ α ReLU(D1); map = Σ w A_clean. The noise: sample s draws randn(C, H, W) from a CPU
    generator seeded with ``seed``, the same for every image."""
    x = photos(2)
    samples, std, seed = 3, 0.3, 17
    model = copy.deepcopy(case.model).double()
    generator = torch.Generator().manual_seed(seed)
    noise = [torch.randn(x.shape[1:], generator=generator) * std for _ in range(samples)]
    with torch.no_grad():
        leaf = _Leaf()
        handle = dict(model.named_modules())[case.layer].register_forward_hook(leaf)
        model(x.double())
        handle.remove()
    a = _shaped(case, leaf.value.detach())
    grads = []
    for s in range(samples):
        _, g, _ = _layer_grads(case, model, x.double() + noise[s].double())
        grads.append(_shaped(case, g))
    g = torch.stack(grads)
    d1, d2, d3 = g.mean(0), (g**2).mean(0), (g**3).mean(0)
    alpha = torch.where(
        d2 != 0, d2 / (2 * d2 + a.sum(dim=(2, 3), keepdim=True) * d3 + 1e-6), torch.zeros_like(d2)
    )
    w = (alpha * torch.relu(d1)).sum(dim=(2, 3))
    expected = torch.einsum("nc,nchw->nhw", w, a)
    got = camwidget.explain(
        case.model, x, method="smoothgradcam++", layer=case.layer, target=C, reshape_transform=case.reshape,
        samples=samples, noise=std, seed=seed, raw=True, precision="fp32",
    )  # fmt: skip
    r = [pearson(got[i], expected[i]) for i in range(2)]
    assert min(r) >= 0.999, f"{case.name}: Pearson {r}"
    assert (got.double() - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_shapleycam_on_a_vit_equals_its_formula(vit_case: Case) -> None:
    """w = mean(g − ½·H·A) with H·A = ∂(g·A)/∂A at fixed A, for ReST of class C; map = Σ w A."""
    case = vit_case
    x = photos(2)
    model = copy.deepcopy(case.model).double()

    def rest(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, C] + torch.log_softmax(logits, dim=1)[:, C]

    with sdpa_kernel(SDPBackend.MATH):
        a, g, _ = _layer_grads(case, model, x.double(), rest, create_graph=True)
        (hv,) = torch.autograd.grad(g, a, grad_outputs=a.detach())
    a, g, hv = (_shaped(case, t.detach()) for t in (a, g, hv))
    assert float(hv.abs().max()) > 1e-3 * float(g.abs().max())  # the second-order term is not nothing here
    expected = torch.einsum("nc,nchw->nhw", (g - 0.5 * hv).mean(dim=(2, 3)), a)
    got = camwidget.explain(
        case.model, x, method="shapleycam", layer=case.layer, target=C, reshape_transform=case.reshape,
        raw=True, precision="fp32",
    )  # fmt: skip
    r = [pearson(got[i], expected[i]) for i in range(2)]
    assert min(r) >= 0.999, f"Pearson {r}"


def test_shapleycam_with_a_logit_target_is_gradcam_on_a_relu_cnn(resnet18_case: Case) -> None:
    """After layer3 a ResNet is piecewise linear in it (ReLU, eval BatchNorm, pooling, linear head): H·A = 0,
    so ShapleyCAM of Logit(c) is Grad-CAM, while its default (ReST) is not."""
    from camwidget.targets import Logit

    case = resnet18_case
    x = photos(2)
    common = {"layer": case.layer, "raw": True, "precision": "fp32"}
    shapley = camwidget.explain(case.model, x, method="shapleycam", target=Logit(C), **common)
    grad = camwidget.explain(case.model, x, method="gradcam", target=C, **common)
    assert torch.allclose(shapley, grad, rtol=1e-4, atol=1e-6 * float(grad.abs().max()))
    rest = camwidget.explain(case.model, x, method="shapleycam", target=C, **common)
    assert not torch.allclose(rest, grad, rtol=1e-3, atol=1e-3 * float(grad.abs().max()))


@pytest.mark.parametrize("method", ["sscam", "iscam"])
def test_score_family_on_a_vit_equals_its_formula(vit_case: Case, method: str) -> None:
    """torchcam's SS-CAM / IS-CAM written out in float64 for the 6 highest-variance channels (channels=6):
    masks M_k = bilinear upsampling of the channel's map min-max scaled (+1e-8) at feature resolution;
    w = softmax_k(mean_s z_C(input_s,k) − z_C(x)) with input = (M_k + δ_s,k)·x (SS-CAM, δ_s = 2·randn(C, H, W)
    drawn sample after sample from a generator seeded 5) or c_s·M_k·x, c_s = s(s+1)/(2S) (IS-CAM)."""
    case = vit_case
    x = photos(1)
    samples, channels, seed, std = 2, 6, 5, 2.0
    model = copy.deepcopy(case.model).double()
    leaf = _Leaf()
    handle = dict(model.named_modules())[case.layer].register_forward_hook(leaf)
    with torch.no_grad():
        base = model(x.double())[0, C]
    handle.remove()
    a = _shaped(case, leaf.value.detach())[0]  # (768, 4, 4)
    top = a.flatten(1).var(dim=1).topk(channels).indices
    generator = torch.Generator().manual_seed(seed)
    noise = [torch.randn(a.shape[0], 64, 64, generator=generator).double() * std for _ in range(samples)]
    scores = []
    with torch.no_grad():
        for k in top.tolist():
            m = a[k]
            normed = (m - m.min()) / (m.max() - m.min() + 1e-8)
            mask = F.interpolate(normed[None, None], size=(64, 64), mode="bilinear", align_corners=False)[
                0, 0
            ]
            values = []
            for s in range(samples):
                if method == "sscam":
                    masked = (mask + noise[s][k]) * x.double()
                else:
                    masked = (s + 1) * (s + 2) / (2 * samples) * (mask * x.double())
                values.append(model(masked)[0, C])
            scores.append(torch.stack(values).mean() - base)
    w = torch.softmax(torch.stack(scores), dim=0)
    expected = torch.einsum("k,khw->hw", w, a[top])
    options = {"samples": samples, "channels": channels} | (
        {"seed": seed, "noise": std} if method == "sscam" else {}
    )
    got = camwidget.explain(
        case.model, x, method=method, layer=case.layer, target=C, reshape_transform=case.reshape,
        raw=True, precision="fp32", **options,
    )[0]  # fmt: skip
    assert pearson(got, expected) >= 0.999
    assert (got.double() - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_randomcam_is_its_documented_draws_and_records_its_seed(resnet18_case: Case) -> None:
    case = resnet18_case
    x = photos(2)
    with Explainer(case.model, case.layer, "randomcam", precision="fp32") as explainer:
        first = explainer(x, C, raw=True)
        seed = explainer.seed_used
        second = explainer(x, C, raw=True)
        assert isinstance(seed, int) and explainer.seed_used != seed  # a fresh seed per call, recorded
        again = explainer(x, C, raw=True, seed=seed)
    assert torch.equal(first, again) and not torch.allclose(first, second)
    from camwidget.engine.hooks import LayerCapture

    with LayerCapture(case.module(case.layer)) as capture, torch.no_grad():
        case.model(x)
    a = capture.activations.double()
    w = torch.rand(a.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    expected = torch.einsum("c,nchw->nhw", w, a)
    assert torch.allclose(first.double(), expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    assert -1 <= float(w.min()) < -0.9 and 0.9 < float(w.max()) <= 1  # Uniform(-1, 1) over 256 channels


def _fullgrad_parts(model: nn.Module, x: torch.Tensor):
    """Float64 input-gradient and per-layer bias-gradients of class C's logit (the clone keeps the layer's
    output out of reach of the in-place ReLU after it)."""
    model = copy.deepcopy(model).double()
    kept: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def keep(name: str):
        def hook(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
            kept[name] = output
            return output.clone()

        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in bias_layers(model)]
    xx = x.double().requires_grad_(True)
    try:
        y = model(xx)[:, C]
    finally:
        for h in handles:
            h.remove()
    names = list(kept)
    grads = torch.autograd.grad(y.sum(), [xx, *(kept[n] for n in names)])
    biases = [effective_bias(modules[n]).double() for n in names]
    return model, xx, y, grads[0], [(b.view(1, -1, 1, 1) * g) for b, g in zip(biases, grads[1:], strict=True)]


def test_fullgrad_bias_set_is_complete(resnet18_case: Case) -> None:
    """FullGrad's decomposition: the logit = Σ x·∂y/∂x + Σ over the layers FullGrad reads of Σ b·∂y/∂z, plus
    the linear head's bias (not spatial). Exact for a ReLU network: every bias FullGrad needs is found."""
    x = photos(2)
    model, xx, y, gx, terms = _fullgrad_parts(resnet18_case.model, x)
    total = (xx * gx).flatten(1).sum(1) + sum(t.flatten(1).sum(1) for t in terms) + model.fc.bias[C]
    assert torch.allclose(total, y, rtol=1e-9, atol=1e-9)


def test_fullgrad_layer_normalisation_is_the_official_one(resnet18_case: Case) -> None:
    """normalization="layer": per image, |term| − min over the layer, divided by (max + 1e-6), resized
    bilinearly with align_corners=True, summed over channels (the official saliency/fullgrad.py)."""
    x = photos(2)
    _, xx, _, gx, terms = _fullgrad_parts(resnet18_case.model, x)

    def post(t: torch.Tensor) -> torch.Tensor:
        t = t.abs()
        flat = t.flatten(1)
        t = (t - flat.amin(1).view(-1, 1, 1, 1)) / (
            (flat - flat.amin(1, keepdim=True)).amax(1).view(-1, 1, 1, 1) + 1e-6
        )
        if t.shape[-1] != 64:
            t = F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=True)
        return t.sum(1)

    expected = post(xx.detach() * gx) + sum(post(t) for t in terms)
    got = camwidget.explain(
        resnet18_case.model, x, method="fullgrad", target=C, normalization="layer", raw=True, precision="fp32"
    )
    assert min(pearson(got[i], expected[i]) for i in range(2)) >= 0.999
    channel = camwidget.explain(resnet18_case.model, x, method="fullgrad", target=C)  # the default
    layer = camwidget.explain(resnet18_case.model, x, method="fullgrad", target=C, normalization="layer")
    assert float((channel - layer).abs().max()) > 0.02  # is another map (similar: Pearson ~0.996 here)


def test_finercam_gradient_flows_through_the_softmax_weights(resnet18_case: Case) -> None:
    """Grad-CAM of Σ_j p_j (z_c − z_j) / (Σ_j p_j + 1e-9), j the 3 classes closest to c, with ∂p/∂A kept
    (pytorch-grad-cam); detaching p gives another map."""
    case = resnet18_case
    x = photos(2)
    model = copy.deepcopy(case.model).double()
    with torch.no_grad():
        logits = model(x.double())
    order = torch.argsort((logits - logits[:, C : C + 1]).abs(), dim=1, stable=True)[:, 1:4]

    def contrast(detach: bool):
        def score(z: torch.Tensor) -> torch.Tensor:
            p = torch.softmax(z, dim=1)
            p = p.detach() if detach else p
            pj = p.gather(1, order)
            return (pj * (z[:, C : C + 1] - z.gather(1, order))).sum(1) / (pj.sum(1) + 1e-9)

        return score

    maps = {}
    for detach in (False, True):
        a, g, _ = _layer_grads(case, model, x.double(), contrast(detach))
        maps[detach] = torch.einsum("nc,nchw->nhw", g.mean(dim=(2, 3)), a.detach())
    got = camwidget.explain(
        case.model, x, method="finercam", layer=case.layer, target=C, raw=True, precision="fp32"
    )
    flowing = (got.double() - maps[False]).abs().max()
    detached = (got.double() - maps[True]).abs().max()
    assert flowing <= 1e-4 * maps[False].abs().max()
    assert detached > 10 * flowing  # the softmax weights' gradient is part of the map
