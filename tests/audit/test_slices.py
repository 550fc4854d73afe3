"""Slice discovery without group labels: a planted subgroup that flips the model is found (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from camwidget.audit.slices import embedding_2d, find_slices, map_features

D, H = 64, 7


def planted(seed: int = 0, *, split_errors: bool = False, n: int = 120, share: float = 0.2):
    """3 classes of n images. A share of class 0 carries a feature (an embedding direction, maps top-left)
    that makes the model wrong 90% of the time; elsewhere 5% of the images are wrong at random."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (3, D))
    labels = np.repeat(np.arange(3), n)
    emb = centres[labels] + rng.normal(0, 1, (3 * n, D))
    maps = rng.random((3 * n, H, H)) * 0.2
    maps[:, 2:5, 2:5] += 1.0  # the object, in the middle
    subgroup = np.zeros(3 * n, dtype=bool)
    subgroup[rng.choice(n, int(share * n), replace=False)] = True  # inside class 0
    direction = rng.normal(0, 1, D)
    emb[subgroup] += 2.5 * direction / np.linalg.norm(direction) * np.sqrt(D) / 4
    maps[subgroup] = rng.random((subgroup.sum(), H, H)) * 0.2
    maps[subgroup, 0:2, 0:2] += 1.0  # the stamp, top-left
    predictions = labels.copy()
    flips = subgroup & (rng.random(3 * n) < 0.9)
    if split_errors:  # the subgroup's mistakes spread over two classes: no single confusion cell
        predictions[flips] = rng.choice([1, 2], flips.sum())
    else:
        predictions[flips] = 1
    noise = ~subgroup & (rng.random(3 * n) < 0.05)
    predictions[noise] = (labels[noise] + rng.integers(1, 3, noise.sum())) % 3
    return emb, maps, labels, predictions, subgroup


@pytest.mark.parametrize("split_errors", [False, True])
def test_the_top_slice_is_the_planted_subgroup(split_errors) -> None:
    emb, maps, labels, predictions, subgroup = planted(split_errors=split_errors)
    regions = {"top-left stamp": np.pad(np.ones((2, 2)), ((0, H - 2), (0, H - 2)))}
    slices = find_slices(emb, maps, labels, predictions, class_names=["cat", "dog", "fox"], regions=regions)
    top = slices[0]
    members = set(np.nonzero(subgroup)[0])
    caught = len(members & set(top.indices.tolist()))
    assert top.label == 0 and caught >= 0.8 * len(members), (caught, len(members))
    assert caught >= 0.5 * top.size
    assert 0 <= top.accuracy < top.baseline_accuracy <= 1
    assert top.region == "top-left stamp" and top.location == "top-left"
    assert "'cat'" in top.description and "top-left stamp" in top.description
    if not split_errors:
        assert next(iter(top.predictions)) == 1 and "'dog'" in top.description
    again = find_slices(emb, maps, labels, predictions)
    assert [s.indices.tolist() for s in again] == [
        s.indices.tolist() for s in find_slices(emb, maps, labels, predictions)
    ]


def test_no_slice_where_the_model_makes_no_mistake() -> None:
    emb, maps, labels, _, _ = planted()
    assert find_slices(emb, maps, labels, labels) == []


def test_embedding_and_features_shapes_and_errors() -> None:
    emb, maps, *_ = planted()
    xy = embedding_2d(emb)
    assert xy.shape == (len(emb), 2) and np.isfinite(xy).all()
    assert np.array_equal(xy, embedding_2d(emb))  # deterministic
    f = map_features(maps)
    assert f.shape == (len(maps), 16) and np.allclose(f.sum(1), 1)
    with pytest.raises(ValueError, match="method must be 'pca' or 'umap'"):
        embedding_2d(emb, "tsne")
    with pytest.raises(ValueError, match="must agree on N"):
        find_slices(emb[:5], maps, [0] * 5, [0] * 5)


def test_many_classes_and_images() -> None:
    # The speed at 50 000 images is measured in benchmarks/bench_slices.py, not here.
    rng = np.random.default_rng(1)
    n = 5_000
    labels = rng.integers(0, 50, n)
    emb = rng.normal(0, 1, (n, 512)).astype(np.float32) + labels[:, None] * 0.01
    maps = rng.random((n, 7, 7)).astype(np.float32)
    predictions = np.where(rng.random(n) < 0.2, (labels + 1) % 50, labels)
    slices = find_slices(emb, maps, labels, predictions)
    assert slices and all(0 <= s.accuracy < s.baseline_accuracy <= 1 for s in slices)
    assert embedding_2d(emb).shape == (n, 2)
