"""ROAD: the percentile rule and the imputation against NumPy and pytorch-grad-cam 1.5.7, hand-solved toy
systems, the metric at noise = 0 against pytorch-grad-cam's ROAD on resnet18 and a real photo (both orders),
ties, batching, the model left untouched, errors before any forward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst
from pytorch_grad_cam.metrics.road import (
    NoisyLinearImputer,
    ROADLeastRelevantFirst,
    ROADMostRelevantFirst,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from camwidget import explain
from camwidget.engine.batching import Cancelled
from camwidget.metrics import linear_imputation, road, road_images, road_masks
from camwidget.metrics.road import percentile_thresholds

from .conftest import CountingModel, RegionMean, TinyCNN, assert_untouched, snapshot


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


@pytest.fixture(scope="module")
def cat_map(resnet, cat) -> torch.Tensor:
    """Grad-CAM at layer3 (14×14 upsampled): ~44k distinct values, a few ReLU zeros."""
    return explain(resnet, cat, method="gradcam", layer="layer3", precision="fp32")


# -- the percentile rule -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thresholds_are_numpys_bit_for_bit(dtype) -> None:
    rng = np.random.default_rng(0)
    rows = [
        rng.random(50176),
        np.round(rng.random(1001), 2),  # many ties
        np.concatenate([np.zeros(600), rng.random(400)]),  # a flat ReLU floor
        rng.standard_normal(7),
        np.array([3.0]),
    ]
    percentiles = [0, 10, 20, 25, 30, 33.3, 50, 70, 80, 90, 99.9, 100]
    for row in rows:
        values = row.astype(dtype)
        ours = percentile_thresholds(torch.from_numpy(values).unsqueeze(0), percentiles)[0]
        expected = [np.percentile(values, p) for p in percentiles]
        assert ours.dtype == torch.from_numpy(values).dtype
        assert ours.tolist() == [float(e) for e in expected]


@pytest.mark.parametrize("order", ["most", "least"])
def test_masks_are_pytorch_grad_cams(cat_map, order) -> None:
    percentiles = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    ours = road_masks(cat_map, percentiles, order)
    assert ours.shape == (1, 9, 224, 224)
    seen = {}

    def keep(image, mask):  # pytorch-grad-cam's imputer gets (image, binary mask: 1 = kept)
        seen["mask"] = mask
        return image

    m = cat_map[0] if order == "most" else 1 - cat_map[0]  # RemoveLeastRelevantFirst passes 1 - map
    for k, p in enumerate(percentiles):
        RemoveMostRelevantFirst(p, keep)(torch.zeros(3, 224, 224), m)
        assert torch.equal(ours[0, k], seen["mask"] == 0), f"percentile {p}"
        # "most" at p removes the pixels at or above the p-th percentile: about 100 - p percent of them.
        assert abs(float(ours[0, k].float().mean()) * 100 - (100 - p)) < 0.1


def test_raster_ties_remove_the_exact_share_in_raster_order() -> None:
    maps = torch.zeros(1, 4, 5)
    maps[0, 3, 4] = 1.0  # one positive pixel, 19 tied zeros
    with pytest.raises(ValueError, match=r"95\.0% of its pixels tie at the map's minimum"):
        road_masks(maps, (50,), "most")
    removed = road_masks(maps, (50,), "most", ties="raster")[0, 0]
    # 20 pixels, percentile 50 of the ranks 0..19 is 9.5: the 10 most relevant are removed: the positive
    # pixel, then the first 9 zeros in raster order.
    expected = torch.zeros(20, dtype=torch.bool)
    expected[:9] = True
    expected[19] = True
    assert torch.equal(removed.flatten(), expected)
    least = road_masks(maps, (50,), "least", ties="raster")[0, 0]
    assert torch.equal(least.flatten(), ~expected)


# -- the imputation ----------------------------------------------------------------------------------------
def test_one_removed_pixel_is_the_weighted_mean_of_its_neighbours() -> None:
    x = torch.arange(9.0).view(1, 1, 3, 3) ** 1.5
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True  # centre: all 8 neighbours inside, weights sum to 1
    v = x[0, 0]
    edges = (v[0, 1] + v[1, 0] + v[1, 2] + v[2, 1]) / 6
    corners = (v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2]) / 12
    out = linear_imputation(x, removed)
    assert out[0, 0, 1, 1].item() == pytest.approx(float(edges + corners), abs=1e-5)
    assert torch.equal(out[~removed.unsqueeze(1)], x[~removed.unsqueeze(1)])  # kept pixels untouched
    # A corner pixel: 3 neighbours inside, own weight 1/6 + 1/6 + 1/12 = 5/12.
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0] = True
    corner = (v[0, 1] / 6 + v[1, 0] / 6 + v[1, 1] / 12) / (5 / 12)
    assert linear_imputation(x, removed)[0, 0, 0, 0].item() == pytest.approx(float(corner), abs=1e-5)


def test_two_coupled_pixels_solve_their_2x2_system() -> None:
    # Remove (1, 1) and (1, 2) of a 3×4 image: each is the other's edge neighbour (weight 1/6).
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64)
    removed = torch.zeros(1, 3, 4, dtype=torch.bool)
    removed[0, 1, 1] = removed[0, 1, 2] = True
    offsets = [(-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6)]
    offsets += [(0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12)]
    for c in range(2):
        v = x[0, c]

        def known_sum(r, col, v=v):
            return sum(
                w * v[r + dr, col + dc] for dr, dc, w in offsets if not (r + dr == 1 and col + dc in (1, 2))
            )

        # u1 - u2/6 = b1 and u2 - u1/6 = b2 (both pixels have all 8 neighbours, own weight 1)
        b1, b2 = known_sum(1, 1), known_sum(1, 2)
        det = 1 - 1 / 36
        u1 = (b1 + b2 / 6) / det
        u2 = (b2 + b1 / 6) / det
        for solver in ("scipy", "cg"):
            out = linear_imputation(x, removed, solver=solver)
            assert out[0, c, 1, 1].item() == pytest.approx(float(u1), abs=1e-9)
            assert out[0, c, 1, 2].item() == pytest.approx(float(u2), abs=1e-9)


def test_constant_images_stay_constant_and_every_pixel_removed_is_refused() -> None:
    x = torch.full((1, 3, 6, 7), 0.37)
    removed = torch.rand(1, 6, 7, generator=torch.Generator().manual_seed(0)) > 0.3
    assert torch.allclose(linear_imputation(x, removed), x, atol=1e-6)
    with pytest.raises(ValueError, match="removes every pixel"):
        linear_imputation(x, torch.ones(1, 6, 7, dtype=torch.bool))


def test_cg_solver_equals_scipy() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 20, 24, generator=g)
    removed = torch.rand(3, 20, 24, generator=g) > torch.tensor([0.2, 0.5, 0.9]).view(3, 1, 1)
    removed[0, :, :] = True
    removed[0, 19, 23] = False  # one kept pixel for a whole image: the hardest system
    a = linear_imputation(x, removed, solver="scipy")
    b = linear_imputation(x, removed, solver="cg")
    assert torch.allclose(a, b, atol=1e-5)


def test_imputed_images_equal_pytorch_grad_cams_imputer(cat, cat_map) -> None:
    percentiles = (10, 50, 90)
    imputer = NoisyLinearImputer(noise=0)
    for order in ("most", "least"):
        ours = road_images(cat, cat_map, percentiles, order, noise=0)
        m = cat_map[0] if order == "most" else 1 - cat_map[0]
        for k, p in enumerate(percentiles):
            kept = torch.from_numpy(np.float32(m.numpy() < np.percentile(m.numpy(), p)))
            expected = imputer(cat[0], kept)
            assert (ours[0, k] - expected).abs().max().item() < 1e-5, (order, p)


def test_noise_is_seeded_and_only_on_imputed_pixels(cat, cat_map) -> None:
    clean = road_images(cat, cat_map, (50,), noise=0)
    a = road_images(cat, cat_map, (50,), noise=0.01, seed=7)
    b = road_images(cat, cat_map, (50,), noise=0.01, seed=7)
    c = road_images(cat, cat_map, (50,), noise=0.01, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    removed = road_masks(cat_map, (50,))[0, 0].expand(3, -1, -1)
    diff = (a - clean)[0, 0]
    assert torch.equal(diff[~removed], torch.zeros_like(diff[~removed]))
    assert diff[removed].std().item() == pytest.approx(0.01, rel=0.02)


# -- the metric --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("order", "reference"), [("most", ROADMostRelevantFirst), ("least", ROADLeastRelevantFirst)]
)
def test_equals_pytorch_grad_cam_at_noise_zero(resnet, cat, cat_map, order, reference) -> None:
    percentiles = (10, 40, 70, 90)
    before = snapshot(resnet)
    ours = road(resnet, cat, cat_map, percentiles=percentiles, order=order, noise=0, precision="fp32")
    assert_untouched(resnet, before)
    with torch.no_grad():
        probs = resnet(cat).softmax(1)
    target = int(probs.argmax())
    assert probs[0, target] > 0.5  # a confident prediction: the changes below are not lost in rounding
    expected = []
    for p in percentiles:
        metric = reference(p)
        metric.perturbation.imputer.noise = 0
        expected.append(
            float(metric(cat, cat_map.numpy(), [ClassifierOutputSoftmaxTarget(target)], resnet)[0])
        )
    assert ours.shape == (1, len(percentiles))
    assert ours[0].tolist() == pytest.approx(expected, abs=1e-4)
    # Removing the most relevant pixels moves the probability far more than 1e-4, so the check has teeth;
    # removing the least relevant ones barely moves it (a few 1e-4), so there the agreement is relative.
    if order == "most":
        assert max(abs(v) for v in expected) > 0.05
    else:
        assert ours[0].tolist() == pytest.approx(expected, rel=1e-2)


def test_closed_form_on_a_region_model() -> None:
    # P(class 0) = sigmoid(2·v) with v the centre pixel (all channels equal). The map ranks the centre
    # highest: "most" at percentile 90 of 9 pixels removes only it, and it is imputed as the weighted mean
    # of its 8 neighbours.
    model = RegionMean((1, 1, 2, 2), a=2.0)
    v = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]) / 8
    x = v.expand(1, 3, 3, 3).clone()
    maps = torch.tensor([[[0.1, 0.2, 0.3], [0.4, 1.0, 0.5], [0.6, 0.7, 0.8]]])
    imputed = (v[0, 1] + v[1, 0] + v[1, 2] + v[2, 1]) / 6 + (v[0, 0] + v[0, 2] + v[2, 0] + v[2, 2]) / 12
    got = road(model, x, maps, target=0, percentiles=90, noise=0)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(sigmoid(2 * float(imputed)) - sigmoid(2 * float(v[1, 1])), abs=1e-6)
    # Least relevant first at 90 removes the lowest-ranked pixel (0, 0): the centre is kept, nothing moves.
    assert road(model, x, maps, target=0, percentiles=90, order="least", noise=0).item() == pytest.approx(
        0, abs=1e-7
    )


def test_batched_equals_one_image_at_a_time() -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 24, 24, generator=g)
    maps = torch.rand(3, 24, 24, generator=g)
    for order in ("most", "least"):
        together = road(model, x, maps, order=order, noise=0, precision="fp32")
        alone = torch.cat(
            [
                road(model, x[i : i + 1], maps[i : i + 1], order=order, noise=0, precision="fp32")
                for i in range(3)
            ]
        )
        assert together.shape == (3, 9)
        assert torch.allclose(together, alone, atol=1e-6)
    # With noise, the first image of a batch draws the same noise as when it is alone.
    noisy = road(model, x, maps, noise=0.05, seed=3, precision="fp32")
    first = road(model, x[:1], maps[:1], noise=0.05, seed=3, precision="fp32")
    assert torch.allclose(noisy[:1], first, atol=1e-6)
    assert not torch.allclose(noisy, road(model, x, maps, noise=0.05, seed=4, precision="fp32"))


def test_model_left_exactly_as_it_came_and_progress() -> None:
    torch.manual_seed(0)
    model = TinyCNN()
    model.train()  # BatchNorm in training mode: its running statistics must not move
    model.features[0].weight.requires_grad_(False)
    before = snapshot(model)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 24, 24, generator=g)
    maps = torch.rand(2, 24, 24, generator=g)
    calls = []
    road(model, x, maps, percentiles=(20, 60), progress=lambda d, t: calls.append((d, t)))
    assert_untouched(model, before)
    assert calls[-1] == (2 * 5, 2 * 5)  # N·(2P + 1) steps: 4 imputations, then 6 forwards
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        road(model, x, maps, percentiles=(20, 60), progress=cancel)
    assert_untouched(model, before)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"percentiles": (0, 50)}, ValueError, "percentiles"),
        ({"percentiles": (50, 101)}, ValueError, "percentiles"),
        ({"percentiles": ()}, ValueError, "percentiles"),
        ({"percentiles": ("10",)}, ValueError, "percentiles"),
        ({"order": "top"}, ValueError, "order"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"seed": -1}, ValueError, "seed"),
        ({"ties": "first"}, ValueError, "ties"),
        ({"solver": "lu"}, ValueError, "solver"),
        ({"target": -1}, ValueError, "target"),
        ({"precision": "fp64"}, ValueError, "precision"),
        ({"maps": torch.rand(2, 24, 23)}, ValueError, "shape"),
        ({"maps": torch.full((2, 24, 24), float("nan"))}, ValueError, "NaN"),
        ({"maps": torch.zeros(2, 24, 24)}, ValueError, "tie at the map's minimum"),
        ({"inputs": torch.rand(3, 24, 24)}, ValueError, "batch dimension"),
    ],
)
def test_bad_input_raises_before_any_forward(kwargs, error, match) -> None:
    torch.manual_seed(0)
    model = CountingModel(TinyCNN().eval())
    before = snapshot(model)
    args = {"inputs": torch.rand(2, 3, 24, 24), "maps": torch.rand(2, 24, 24), **kwargs}
    with pytest.raises(error, match=match):
        road(model, **args)
    assert model.calls == 0
    assert_untouched(model, before)


def test_ties_error_names_image_percentile_and_way_out(cat, resnet) -> None:
    maps = torch.rand(2, 224, 224, generator=torch.Generator().manual_seed(0))
    maps[1, :, :150] = 0  # 67% of image 1's pixels tie at 0
    x = torch.cat([cat, cat])
    with pytest.raises(ValueError, match=r"map 1 at percentile 10 .*67\.0% .*ties='raster'"):
        road(resnet, x, maps, percentiles=(10, 80))
    # Above the tied share the system is solvable; with raster ranking every percentile is.
    assert road(resnet, x, maps, percentiles=(80,), noise=0).shape == (2, 1)
    assert torch.isfinite(road(resnet, x, maps, percentiles=(10,), noise=0, ties="raster")).all()
