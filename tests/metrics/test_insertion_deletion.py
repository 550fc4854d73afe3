"""Insertion/deletion (RISE): values by hand on closed-form models, the planted shortcut, batching, errors."""

from __future__ import annotations

import math

import pytest
import torch

from camwidget.engine.batching import Cancelled
from camwidget.metrics import (
    auc,
    blur_images,
    insertion_deletion,
    perturbed_image,
    rise_blur_kernel,
    saliency_ranks,
)

from .conftest import SIZE, RegionMean, TinyCNN, assert_untouched, patch_maps, snapshot


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_blur_kernel_is_rises(monkeypatch) -> None:
    import numpy as np
    import scipy.ndimage as ndimage

    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    expected = torch.from_numpy(ndimage.gaussian_filter(impulse, 5)).float()
    assert torch.allclose(rise_blur_kernel(11, 5.0), expected, atol=1e-7)
    assert abs(float(rise_blur_kernel(7, 2.0).sum()) - 1) < 1e-6
    # conv2d with zero padding 5, per channel, equals scipy's constant-mode convolution.
    x = torch.randn(1, 3, 9, 12, generator=torch.Generator().manual_seed(0))
    ref = np.stack(
        [
            ndimage.convolve(x[0, c].double().numpy(), expected.double().numpy(), mode="constant")
            for c in range(3)
        ]
    )
    assert torch.allclose(blur_images(x)[0], torch.from_numpy(ref).float(), atol=1e-5)


def test_ranks_are_descending_and_stable_for_ties() -> None:
    maps = torch.tensor([[[0.5, 1.0, 0.5], [0.0, 1.0, 0.5]]])
    # Order: (0,1) then (1,1) [value 1, raster order], then (0,0), (0,2), (1,2) [0.5], then (1,0).
    assert saliency_ranks(maps).tolist() == [[[2, 0, 3], [5, 1, 4]]]


def test_deletion_curve_and_auc_equal_closed_form() -> None:
    # P(class 0) = sigmoid(2·m), m = mean of columns 0-1. All-ones image; the map marks columns 0-1 (ties
    # broken in raster order), 4 pixels per step: the region loses half its pixels at step 1, all at step 2.
    model = RegionMean((0, 0, 2, 4), a=2.0)
    x = torch.ones(1, 3, 4, 4)
    maps = torch.zeros(1, 4, 4)
    maps[:, :, :2] = 1
    curves = insertion_deletion(model, x, maps, step=4)
    expected = torch.tensor([[sigmoid(2), sigmoid(1), 0.5, 0.5, 0.5]])
    assert curves.n_steps == 4
    assert torch.allclose(curves.deletion, expected, atol=1e-6)
    assert torch.allclose(curves.fractions, torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
    hand_auc = (sigmoid(2) / 2 + sigmoid(1) + 0.5 + 0.5 + 0.5 / 2) / 4
    assert curves.deletion_auc.item() == pytest.approx(hand_auc, abs=1e-6)
    assert curves.targets.tolist() == [0]
    # "black" substrate: (0 - mean) / std = -2 in every channel, so m = -2 once the region is gone.
    black = insertion_deletion(model, x, maps, step=4, substrate="black", mean=(0.5,) * 3, std=(0.25,) * 3)
    expected_black = [sigmoid(2), sigmoid(2 * (1 - 2) / 2), sigmoid(-4), sigmoid(-4), sigmoid(-4)]
    assert torch.allclose(black.deletion[0], torch.tensor(expected_black), atol=1e-6)


def _reference_curves(model, x, maps, step, blurred, substrate_values):
    """Naive per-pixel loops: the RISE protocol as written, one image, one forward per step."""
    h, w = maps.shape
    order = sorted(range(h * w), key=lambda i: (-float(maps.flatten()[i]), i))
    n = math.ceil(h * w / step)
    deletion, insertion = [], []
    for s in range(n + 1):
        d, ins = x.clone(), blurred.clone()
        for i in order[: min(s * step, h * w)]:
            r, c = divmod(i, w)
            d[:, r, c] = substrate_values[:, r, c]
            ins[:, r, c] = x[:, r, c]
        with torch.no_grad():
            deletion.append(torch.softmax(model(d[None]), 1)[0, 0].item())
            insertion.append(torch.softmax(model(ins[None]), 1)[0, 0].item())
    return torch.tensor(deletion), torch.tensor(insertion)


@pytest.mark.parametrize("substrate", ["zeros", "blur"])
def test_curves_equal_a_naive_per_step_loop(substrate) -> None:
    import numpy as np
    import scipy.ndimage as ndimage

    g = torch.Generator().manual_seed(3)
    model = RegionMean((1, 2, 5, 6), a=1.5)
    x = torch.randn(1, 3, 7, 8, generator=g) + 0.5
    maps = torch.rand(1, 7, 8, generator=g).round(decimals=1)  # plenty of ties
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    kernel = ndimage.gaussian_filter(impulse, 5)
    blurred = torch.from_numpy(
        np.stack([ndimage.convolve(x[0, c].double().numpy(), kernel, mode="constant") for c in range(3)])
    ).float()
    substrate_values = torch.zeros_like(x[0]) if substrate == "zeros" else blurred
    ref_del, ref_ins = _reference_curves(model, x[0], maps[0], 5, blurred, substrate_values)
    curves = insertion_deletion(model, x, maps, 0, step=5, substrate=substrate)
    assert curves.n_steps == math.ceil(56 / 5) == 12
    assert torch.allclose(curves.deletion[0], ref_del, atol=1e-5)
    assert torch.allclose(curves.insertion[0], ref_ins, atol=1e-5)
    hand = lambda c: (c.sum() - c[0] / 2 - c[-1] / 2) / 12  # noqa: E731
    assert curves.insertion_auc.item() == pytest.approx(hand(ref_ins).item(), abs=1e-5)
    assert curves.deletion_auc.item() == pytest.approx(hand(ref_del).item(), abs=1e-5)
    assert curves.pixel_fractions[-2:].tolist() == pytest.approx([55 / 56, 1.0])


def test_perturbed_image_is_the_scored_input() -> None:
    g = torch.Generator().manual_seed(4)
    model = RegionMean((0, 0, 3, 3), a=3.0)
    x = torch.randn(2, 3, 6, 6, generator=g)
    maps = torch.rand(2, 6, 6, generator=g)
    curves = insertion_deletion(
        model, x, maps, 0, step=7, substrate="black", mean=(0.1, 0.2, 0.3), std=(1, 2, 3)
    )
    for kind in ("deletion", "insertion"):
        images = curves.image(1, list(range(curves.n_steps + 1)), kind)
        assert images.shape == (curves.n_steps + 1, 3, 6, 6)
        probs = torch.softmax(model(images), 1)[:, 0]
        assert torch.allclose(probs, getattr(curves, kind)[1], atol=1e-6)
        same = perturbed_image(
            x, maps, 1, 3, kind, step=7, substrate="black", mean=(0.1, 0.2, 0.3), std=(1, 2, 3)
        )
        assert torch.equal(same, images[3])
    assert torch.equal(curves.image(0, 0, "deletion"), x[0])
    assert torch.equal(curves.image(0, curves.n_steps, "insertion"), x[0])
    assert torch.equal(curves.image(0, 0, "insertion"), blur_images(x[:1])[0])


def test_auc_of_known_curves() -> None:
    assert auc(torch.tensor([1.0, 1.0, 1.0])).item() == 1.0
    assert auc(torch.tensor([0.0, 1.0])).item() == 0.5
    assert auc(torch.tensor([1.0, 0.0, 0.0, 0.0])).item() == pytest.approx(1 / 6)


def test_planted_shortcut_patch_map_beats_random_map(shortcut_model, patch_images) -> None:
    x, y = patch_images
    g = torch.Generator().manual_seed(11)
    truth = insertion_deletion(shortcut_model, x, patch_maps(len(x)), step=8)
    random = insertion_deletion(shortcut_model, x, torch.rand(len(x), SIZE, SIZE, generator=g), step=8)
    assert torch.equal(truth.targets, y)
    assert truth.deletion_auc.mean() < 0.15 < 0.45 < random.deletion_auc.mean()
    assert truth.insertion_auc.mean() > 0.9 > 0.75 > random.insertion_auc.mean()
    assert (truth.deletion_auc < random.deletion_auc).all() and (
        truth.insertion_auc > random.insertion_auc
    ).all()
    assert truth.insertion[:, 0].max() < 0.2  # the blur erases the checkerboard: insertion starts low


def test_batch_equals_one_at_a_time_and_model_untouched(shortcut_model, patch_images) -> None:
    model = TinyCNN()
    model.load_state_dict(shortcut_model.state_dict())
    model.train()  # BatchNorm statistics would move if anything ran in train mode
    model.features[0].weight.requires_grad_(False)
    before = snapshot(model)
    x, _ = patch_images
    maps = torch.rand(len(x), SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    batch = insertion_deletion(model, x, maps, step=16, substrate="blur", precision="fp32")
    for i in range(len(x)):
        one = insertion_deletion(
            model, x[i : i + 1], maps[i : i + 1], step=16, substrate="blur", precision="fp32"
        )
        assert torch.allclose(one.insertion, batch.insertion[i : i + 1], atol=1e-6)
        assert torch.allclose(one.deletion, batch.deletion[i : i + 1], atol=1e-6)
        assert torch.equal(one.targets, batch.targets[i : i + 1])
    assert_untouched(model, before)
    assert model.training


def test_progress_counts_every_perturbed_forward_and_can_cancel() -> None:
    model = RegionMean((0, 0, 2, 2))
    x, maps = torch.randn(3, 3, 4, 4), torch.rand(3, 4, 4)
    seen: list[tuple[int, int]] = []
    insertion_deletion(model, x, maps, step=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3 * 2 * 5, 30) and all(t == 30 for _, t in seen)

    def cancel(done: int, total: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        insertion_deletion(model, x, maps, step=4, progress=cancel)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"maps": torch.rand(2, 8, 8)}, "shape"),
        ({"maps": torch.rand(3, SIZE, SIZE)}, "3 maps for 2 images"),
        ({"maps": torch.full((2, SIZE, SIZE), float("nan"))}, "NaN"),
        ({"step": 0}, "step"),
        ({"step": -5}, "step"),
        ({"step": 2.5}, "step"),
        ({"target": 3}, "out of range"),
        ({"target": -1}, "out of range"),
        ({"target": [0, 1, 1]}, "3 entries for 2 images"),
        ({"substrate": "mean"}, "substrate"),
        ({"blur": (10, 5.0)}, "odd"),
        ({"blur": (11, 0)}, "sigma"),
        ({"precision": "fp64"}, "precision"),
        ({"mean": (0.5, 0.5)}, "one value per input channel"),
    ],
)
def test_bad_input_raises_value_error_and_leaves_model_untouched(shortcut_model, change, message) -> None:
    x = torch.randn(2, 3, SIZE, SIZE)
    args = {"maps": torch.rand(2, SIZE, SIZE), "step": 16, **change}
    before = snapshot(shortcut_model)
    with pytest.raises(ValueError, match=message):
        insertion_deletion(shortcut_model, x, args.pop("maps"), **args)
    assert_untouched(shortcut_model, before)


def test_perturbed_image_rejects_bad_steps() -> None:
    x, maps = torch.randn(1, 3, 4, 4), torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        perturbed_image(x, maps, 0, 5, step=4)
    with pytest.raises(ValueError, match="kind"):
        perturbed_image(x, maps, 0, 1, "removal", step=4)
    with pytest.raises(ValueError, match="index"):
        perturbed_image(x, maps, 2, 1, step=4)


def test_batches_mixing_images_and_kinds_match_single_rows() -> None:
    from camwidget.metrics.insertion_deletion import _Perturber

    g = torch.Generator().manual_seed(9)
    x, maps = torch.randn(3, 3, 5, 6, generator=g), torch.rand(3, 5, 6, generator=g)
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    perturber = _Perturber(x, maps, 4, "blur", (3, 1.0), mean, std)
    index, steps, kind = (
        torch.tensor([0, 0, 2, 1, 1, 0]),
        torch.tensor([1, 2, 8, 0, 3, 5]),
        torch.tensor([0, 0, 1, 1, 0, 1]),
    )
    for channels_last in (False, True):
        batch = perturber.images(index, steps, kind, channels_last=channels_last)
        assert batch.is_contiguous(memory_format=torch.channels_last) == channels_last
        for row in range(6):
            one = perturbed_image(
                x,
                maps,
                int(index[row]),
                int(steps[row]),
                ("deletion", "insertion")[int(kind[row])],
                step=4,
                substrate="blur",
                blur=(3, 1.0),
                mean=(0, 0, 0),
                std=(1, 1, 1),
            )
            assert torch.equal(batch[row], one)
