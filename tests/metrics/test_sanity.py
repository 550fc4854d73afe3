"""Sanity check (cascading randomisation): our Spearman and SSIM, decorrelation, the caller's model kept."""

from __future__ import annotations

import pytest
import torch

from camwidget.metrics import sanity_check, spearman, ssim
from camwidget.metrics.sanity import cascade_order

from .conftest import assert_untouched, snapshot


def test_spearman_matches_scipy_with_ties() -> None:
    import scipy.stats as stats

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 9, 7, generator=g).round(decimals=1)  # many ties
    b = (a + 0.3 * torch.rand(3, 9, 7, generator=g)).round(decimals=1)
    ours = spearman(a, b)
    for i in range(3):
        expected = stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(expected, abs=1e-6)
    assert spearman(a, a).tolist() == pytest.approx([1, 1, 1])
    assert spearman(a, -a).tolist() == pytest.approx([-1, -1, -1])
    assert spearman(torch.zeros(1, 4, 4), a[:1, :4, :4]).item() == 0  # constant map: 0, not NaN


def test_ssim_matches_scikit_image() -> None:
    import skimage.metrics as metrics

    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 32, 40, generator=g)
    b = (0.6 * a + 0.4 * torch.rand(2, 32, 40, generator=g)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        expected = metrics.structural_similarity(
            a[i].double().numpy(),
            b[i].double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        assert ours[i].item() == pytest.approx(expected, abs=1e-4)
    assert ssim(a, a).tolist() == pytest.approx([1, 1], abs=1e-6)


def test_cascade_goes_from_the_output_down(shortcut_model) -> None:
    order = cascade_order(shortcut_model, torch.zeros(1, 3, 24, 24))
    assert order == ["fc", "features.5", "features.3", "features.2", "features.0"]


@pytest.mark.parametrize("method", ["scorecam", "hirescam"])
def test_maps_decorrelate_as_layers_are_randomised(shortcut_model, patch_images, method) -> None:
    x, _ = patch_images
    before = snapshot(shortcut_model)
    rng = torch.random.get_rng_state()
    rows = sanity_check(shortcut_model, x, method=method, layer="features.6")
    assert [r["layer"] for r in rows] == ["fc", "features.5", "features.3", "features.2", "features.0"]
    first, last = rows[0], rows[-1]
    assert first["spearman"] > 0.6  # only the head randomised: the map still resembles the original
    assert last["spearman"] < 0.45 and last["ssim"] < 0.5  # every layer randomised: it does not
    assert first["spearman"] - last["spearman"] > 0.3
    assert last["spearman_per_image"].shape == (len(x),)
    assert_untouched(shortcut_model, before)  # the caller's model is never randomised
    assert torch.equal(torch.random.get_rng_state(), rng)  # nor the global random state


def test_eigencam_ignores_the_head(shortcut_model, patch_images) -> None:
    # Eigen-CAM reads activations only: randomising the classifier head leaves its map exactly as it was,
    # which is what the check is meant to reveal about a method.
    x, _ = patch_images
    rows = sanity_check(shortcut_model, x, method="eigencam", layer="features.6", max_layers=2)
    assert len(rows) == 2
    assert rows[0]["spearman"] == pytest.approx(1.0) and rows[0]["ssim"] == pytest.approx(1.0)
    assert rows[1]["spearman"] < 0.99


def test_bad_arguments(shortcut_model, patch_images) -> None:
    x, _ = patch_images
    with pytest.raises(ValueError, match="max_layers"):
        sanity_check(shortcut_model, x, method="hirescam", layer="features.6", max_layers=0)
    with pytest.raises(ValueError, match="out of range"):
        sanity_check(shortcut_model, x, method="hirescam", layer="features.6", target=3)
    with pytest.raises(ValueError, match="unknown method"):
        sanity_check(shortcut_model, x, method="nocam", layer="features.6")


def test_randomisation_never_seeds_the_global_generator(shortcut_model, patch_images, monkeypatch) -> None:
    # Another thread of the user's may draw from torch's global generator at any time: the sanity check
    # must neither seed nor advance it (it used to seed it inside fork_rng for each module).
    def seeding(*args, **kwargs):
        raise AssertionError("the sanity check seeded torch's global generator")

    monkeypatch.setattr(torch, "manual_seed", seeding)
    monkeypatch.setattr(torch.random, "manual_seed", seeding)
    x, _ = patch_images
    before = torch.get_rng_state()
    first = sanity_check(shortcut_model, x, method="gradcam", layer="features.6", max_layers=3)
    assert torch.equal(torch.get_rng_state(), before)
    again = sanity_check(shortcut_model, x, method="gradcam", layer="features.6", max_layers=3)
    assert [r["spearman"] for r in first] == [r["spearman"] for r in again]  # same seed, same draws
