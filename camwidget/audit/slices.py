"""Where a model fails without anyone saying where to look: slice discovery and an embedding map.

An auditor rarely starts from a hypothesis ("the watermark"); they ask which coherent groups of images the
model gets wrong. :func:`find_slices` looks for them without group labels, from what the audit recorded for
every image: its penultimate embedding (what the model "sees"), where its map puts its mass, its true class
and the prediction.

Within each true class, images are clustered (k-means, several restarts) on three kinds of feature, each
scaled to unit variance: the embedding's leading principal components, the map pooled to a 4×4 grid (where
the evidence sits), and, following error-aware slice discovery (Domino, Eyuboglu et al. ICLR 2022), whether
the image was classified correctly, so that clusters follow failures where the features allow it. A
cluster's **gap** is the accuracy of the rest of its class minus its own accuracy. Error-awareness alone
would also gather a class's scattered random mistakes into a "slice", so each cluster's **separation** is
measured too: how far its centroid sits from the rest of its class in the features that describe the
images (not their correctness), relative to the members' own spread and their number (about 1 for a random
handful, several for a coherent group). Clusters are ranked by gap × sqrt(size) × s / (s + 3), s the
separation: a large, coherent, failing group first. k-means may cut one group in two, so failing clusters
of a class are merged, pair by pair, as long as the merged cluster scores higher than either part. Only
clusters worse than the rest of their class are returned.

:func:`embedding_2d` gives every image a point on a plane for the gallery's scatter: PCA by default (fast,
deterministic), UMAP (``umap-learn``) when installed and asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Slice", "embedding_2d", "find_slices", "map_features"]

_GLOBAL_PCS = 64  # embeddings are first projected on their 64 leading directions over the whole dataset
_PCS = 16  # then on each class's own 16 leading directions within those
_GRID = 4  # maps pooled to 4x4 for the location features
_ERROR_WEIGHT = 1.5  # how strongly clusters follow correct/incorrect (in units of a feature's spread)
_RESTARTS = 4
_ITERATIONS = 50
_MIN_SIZE = 3
_ENRICHED = 3.0
_COHERENT = 3.0  # the separation at which a slice counts half as coherent as it can


@dataclass
class Slice:
    """A group of images of one true class that the model gets wrong more often than the rest of it.

    Attributes:
        indices: (M,) int64 dataset indices of the members.
        label: their true class; label_name its name.
        accuracy: share of members classified correctly, in [0, 1].
        baseline_accuracy: accuracy on the rest of the class (the class minus the slice), in [0, 1].
        predictions: {predicted class: count} over the members, most frequent first.
        mean_map: (h, w) float32 mean of the members' maps (each scaled to sum 1).
        location: the ninth of the image ("top-left", "centre", ...) where the members' maps hold more
            mass than the rest of the class's, by the widest margin.
        region: the named region the members' maps favour, if any: it holds at least 3 times the share of
            the mean map that its area would, and 1.5 times what it holds of the rest of the class's maps.
        description: one sentence saying what the members share.
        score: the ranking score, gap × sqrt(size) × s / (s + 3) with s the separation (module doc).
    """

    indices: np.ndarray
    label: int
    label_name: str
    accuracy: float
    baseline_accuracy: float
    predictions: dict[int, int]
    mean_map: np.ndarray = field(repr=False)
    location: str
    region: str | None
    description: str
    score: float

    @property
    def size(self) -> int:
        return len(self.indices)

    @property
    def gap(self) -> float:
        """How much worse than the rest of its class, in accuracy (a share)."""
        return self.baseline_accuracy - self.accuracy


def map_features(maps: np.ndarray) -> np.ndarray:
    """(N, h, w) maps -> (N, 16) location features: each map pooled to 4×4 and scaled to sum 1."""
    t = torch.as_tensor(np.asarray(maps, dtype=np.float32)).clamp_min(0)
    if t.ndim != 3:
        raise ValueError(f"maps must be (N, h, w); got shape {tuple(t.shape)}")
    pooled = torch.nn.functional.adaptive_avg_pool2d(t.unsqueeze(1), _GRID).flatten(1)
    total = pooled.sum(dim=1, keepdim=True)
    return torch.where(
        total > 0, pooled / total.clamp_min(1e-12), torch.full_like(pooled, 1 / _GRID**2)
    ).numpy()


def _standardise(x: np.ndarray) -> np.ndarray:
    spread = x.std(axis=0, keepdims=True)
    return (x - x.mean(axis=0, keepdims=True)) / np.where(spread > 1e-8, spread, 1.0)


def _principal(x: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` principal component scores of (n, d) rows (fewer if there are fewer), exactly: an
    eigendecomposition of the d × d covariance in float64 (deterministic, no random state)."""
    centred = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    k = min(k, centred.shape[0] - 1, centred.shape[1])
    if k < 1:
        return centred[:, :0]
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return centred @ vectors[:, ::-1][:, :k]


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means labels of (n, d) rows: k-means++ starts, Lloyd iterations, the best of a few restarts."""
    n = x.shape[0]
    squared = (x * x).sum(axis=1)
    best, best_cost = np.zeros(n, dtype=np.int64), math.inf
    for _ in range(_RESTARTS):
        centres = x[[rng.integers(n)]]
        for _ in range(1, k):
            d = np.maximum(squared[:, None] - 2 * x @ centres.T + (centres * centres).sum(axis=1), 0).min(
                axis=1
            )
            total = d.sum()
            centres = np.vstack([centres, x[rng.choice(n, p=d / total if total > 0 else None)]])
        labels = np.full(n, -1)
        for _ in range(_ITERATIONS):
            distances = squared[:, None] - 2 * x @ centres.T + (centres * centres).sum(axis=1)
            new = distances.argmin(axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = labels == j
                if members.any():
                    centres[j] = x[members].mean(axis=0)
        cost = float(((x - centres[labels]) ** 2).sum())
        if cost < best_cost:
            best, best_cost = labels, cost
    return best


def _score(mine: np.ndarray, ok: np.ndarray, described: np.ndarray) -> tuple[float, float, float]:
    """(score, accuracy, baseline accuracy) of the members ``mine`` (bool over a class) against the rest of
    the class; the score is -inf for a group too small, or no worse than the rest."""
    if int(mine.sum()) < _MIN_SIZE or bool(mine.all()):
        return (-math.inf, 0.0, 0.0)
    accuracy, baseline = float(ok[mine].mean()), float(ok[~mine].mean())
    separation = _separation(described[mine], described[~mine])
    value = (baseline - accuracy) * math.sqrt(int(mine.sum())) * separation / (separation + _COHERENT)
    return (value if accuracy < baseline else -math.inf, accuracy, baseline)


def _separation(inside: np.ndarray, rest: np.ndarray) -> float:
    """How far a cluster's members sit from the rest of their class, in units of the members' own spread
    (the distance between the two centroids over the members' root-mean-square distance to their own,
    times the square root of their number): about 1 for a random handful of images, several for a coherent
    group."""
    spread = math.sqrt(float(((inside - inside.mean(axis=0)) ** 2).sum(axis=1).mean()))
    gap = float(np.linalg.norm(inside.mean(axis=0) - rest.mean(axis=0)))
    return gap / max(spread, 1e-6) * math.sqrt(len(inside))


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's ``k`` nearest other rows (Euclidean), in blocks of rows so that memory
    stays at a few MB per block whatever n is."""
    n = x.shape[0]
    k = min(k, n - 1)
    x = x.astype(np.float32)
    squared = (x * x).sum(axis=1)
    out = np.empty((n, k), dtype=np.int64)
    block = max(1, 4_000_000 // max(n, 1))
    for start in range(0, n, block):
        stop = min(n, start + block)
        d = squared[start:stop, None] - 2 * x[start:stop] @ x.T + squared[None]
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d, axis=1)[:, :k]
        out[start:stop] = part
    return out


def _complete(mine: np.ndarray, described: np.ndarray, rounds: int = 10) -> np.ndarray:
    """``mine`` (bool over a class) made a neighbourhood: an image belongs when at least half of its
    ``k`` nearest neighbours in ``described`` (k = clamp(round(sqrt(size)), 3, 10)) belong, repeated
    until nothing changes (at most ``rounds`` times)."""
    size = int(mine.sum())
    if size < _MIN_SIZE or len(mine) <= _MIN_SIZE:
        return mine
    k = int(min(10, max(3, round(math.sqrt(size)))))
    near = _neighbours(described, k)
    current = mine.copy()
    for _ in range(rounds):
        votes = current[near].mean(axis=1)
        new = votes >= 0.5
        if np.array_equal(new, current) or new.sum() < _MIN_SIZE:
            break
        current = new
    return current


_PLACES = (
    ("top-left", "top", "top-right"),
    ("left", "centre", "right"),
    ("bottom-left", "bottom", "bottom-right"),
)


def _location(mean_map: np.ndarray, rest_map: np.ndarray) -> str:
    """Which ninth of the image (top-left ... bottom-right) holds more of ``mean_map``'s mass than of the
    rest of the class's mean map, by the widest margin; "centre" if nowhere differs."""
    h, w = mean_map.shape
    rows, cols = np.array_split(np.arange(h), 3), np.array_split(np.arange(w), 3)
    best, margin = "centre", 0.0
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            difference = float(mean_map[np.ix_(r, c)].sum() - rest_map[np.ix_(r, c)].sum())
            if difference > margin:
                best, margin = _PLACES[i][j], difference
    return best


def find_slices(
    embeddings: np.ndarray,
    maps: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    k: int | None = None,
    class_names: Sequence[str] | None = None,
    regions: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> list[Slice]:
    """Coherent groups of images that the model gets wrong more often than the rest of their class.

    Args:
        embeddings: (N, D) penultimate embeddings. maps: (N, h, w) maps (feature resolution is enough).
        labels, predictions: (N,) true and predicted classes.
        indices: (N,) dataset indices to report (default 0..N-1).
        k: clusters per class; None (default) picks ``clamp(round(sqrt(n_class / 4)), 2, 8)``.
        class_names: names for the descriptions (default "class c").
        regions: {name: (h, w) bool/0-1 mask at the maps' resolution} to name where a slice's maps sit.
        seed: the clustering's random starts (the same seed gives the same slices).

    Returns:
        The slices, worst first (see the module doc); empty if no group does worse than its class.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    yhat = np.asarray(predictions, dtype=np.int64)
    mp = np.asarray(maps, dtype=np.float32)
    n = len(y)
    if emb.ndim != 2 or emb.shape[0] != n or len(yhat) != n or mp.shape[0] != n:
        raise ValueError(
            f"embeddings (N, D), maps (N, h, w), labels and predictions (N,) must agree on N; got "
            f"{emb.shape}, {mp.shape}, {len(y)}, {len(yhat)}"
        )
    ids = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    # One global projection first (the D x D eigendecomposition once, not once per class), then each
    # class's own leading directions within it.
    emb = _principal(emb, _GLOBAL_PCS)
    location = map_features(mp)
    correct = y == yhat
    rng = np.random.default_rng(seed)
    normalised = mp.clip(min=0)
    sums = normalised.reshape(n, -1).sum(axis=1)
    normalised = normalised / np.where(sums > 0, sums, 1).reshape(n, 1, 1)
    found: list[Slice] = []
    for c in np.unique(y):
        members = np.nonzero(y == c)[0]
        if len(members) < 2 * _MIN_SIZE or bool(correct[members].all()) or not bool(correct[members].any()):
            continue
        wrong = (~correct[members]).astype(np.float64)[:, None]
        described = np.hstack([_standardise(_principal(emb[members], _PCS)), _standardise(location[members])])
        features = np.hstack([described, _standardise(wrong) * _ERROR_WEIGHT * math.sqrt(_PCS)])
        clusters = k or int(min(8, max(2, round(math.sqrt(len(members) / 4)))))
        assignment = _kmeans(features, min(clusters, len(members)), rng)
        ok = correct[members]

        def score(mine: np.ndarray, ok: np.ndarray = ok, described: np.ndarray = described) -> float:
            return _score(mine, ok, described)[0]

        groups = [assignment == j for j in np.unique(assignment)]
        groups = [g for g in groups if score(g) > -math.inf]
        # k-means may cut one coherent failing group in two: merge failing clusters while that scores higher
        while len(groups) > 1:
            best = max(
                ((a, b) for a in range(len(groups)) for b in range(a + 1, len(groups))),
                key=lambda ab: score(groups[ab[0]] | groups[ab[1]]),
            )
            merged = groups[best[0]] | groups[best[1]]
            if score(merged) <= max(score(groups[best[0]]), score(groups[best[1]])):
                break
            groups = [g for i, g in enumerate(groups) if i not in best] + [merged]
        # A slice is what its members share, not their mistakes: each failing cluster is completed by
        # its neighbours in the features that describe the images (members of a stamped subgroup the
        # model still gets right join it; scattered mistakes with nothing in common fall apart).
        groups = [_complete(g, described) for g in groups]
        unique: list[np.ndarray] = []
        for g in groups:
            if score(g) > -math.inf and not any(np.array_equal(g, u) for u in unique):
                unique.append(g)
        for mine in unique:
            value, accuracy, baseline = _score(mine, ok, described)
            found.append(
                _describe(
                    members[mine],
                    members[~mine],
                    int(c),
                    accuracy,
                    baseline,
                    value,
                    yhat,
                    normalised,
                    ids,
                    class_names,
                    regions,
                )
            )
    found.sort(key=lambda s: -s.score)
    return found


def _describe(
    inside: np.ndarray,
    rest: np.ndarray,
    c: int,
    accuracy: float,
    baseline: float,
    score: float,
    yhat: np.ndarray,
    maps: np.ndarray,
    ids: np.ndarray,
    class_names: Sequence[str] | None,
    regions: dict[str, np.ndarray] | None,
) -> Slice:
    def name(k: int) -> str:
        return class_names[k] if class_names is not None and 0 <= k < len(class_names) else f"class {k}"

    values, counts = np.unique(yhat[inside], return_counts=True)
    order = np.argsort(-counts)
    predictions = {int(values[i]): int(counts[i]) for i in order}
    mean_map = maps[inside].mean(axis=0)
    location = _location(mean_map, maps[rest].mean(axis=0))
    region = None
    for region_name, mask in (regions or {}).items():
        m = np.asarray(mask, dtype=np.float32)
        if m.shape != mean_map.shape:
            continue
        share = float((mean_map * m).sum())
        others = float((maps[rest].mean(axis=0) * m).sum())
        area = float(m.sum()) / m.size
        # a region the slice's maps favour: 3x the mass its area would get, 1.5x the rest of the class's
        if share >= _ENRICHED * area and share > 1.5 * others and (region is None or share > region[1]):
            region = (region_name, share)
    top, top_count = next(iter(predictions.items()))
    size = len(inside)
    parts = [
        f"{size} images of {name(c)!r}: {accuracy:.0%} correct against {baseline:.0%} for the rest of the "
        "class",
        f"most often taken for {name(top)!r} ({top_count} of {size})" if top != c else None,
        f"their maps favour the {location}"
        + (f", on {region[0]!r} ({region[1]:.0%} of the mass)" if region else ""),
    ]
    return Slice(
        indices=ids[inside],
        label=c,
        label_name=name(c),
        accuracy=accuracy,
        baseline_accuracy=baseline,
        predictions=predictions,
        mean_map=mean_map.astype(np.float32),
        location=location,
        region=region[0] if region else None,
        description="; ".join(p for p in parts if p) + ".",
        score=score,
    )


def embedding_2d(embeddings: np.ndarray, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """(N, D) embeddings -> (N, 2) float32 coordinates for a scatter plot.

    Args:
        method: "pca" (default: the two leading principal components; deterministic, each axis's sign
            fixed so that its largest coordinate is positive) or "umap" (needs ``umap-learn``; the error
            says how to install it).
        seed: UMAP's random state.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"embeddings must be (N, D) with N >= 1; got {x.shape}")
    if method == "umap":
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ImportError(
                "method='umap' needs umap-learn: pip install umap-learn (or use 'pca')"
            ) from exc
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
    if method != "pca":
        raise ValueError(f"method must be 'pca' or 'umap'; got {method!r}")
    scores = np.zeros((x.shape[0], 2))
    found = _principal(x, 2)
    scores[:, : found.shape[1]] = found
    flip = np.sign(scores[np.abs(scores).argmax(axis=0), [0, 1]])
    return (scores * np.where(flip == 0, 1, flip)).astype(np.float32)
