"""``camwidget.audit``: explain every image of a dataset, record what the model looked at, find shortcuts.

One call walks the dataset in batches, runs the same :class:`~camwidget.Explainer` as everything else
in camwidget (one forward + one backward per batch for the default HiResCAM; the logits are taken from
that same forward), and commits each batch's rows to an SQLite store (:mod:`camwidget.audit.store`).
Interrupt it at any point (Ctrl-C, a killed kernel, a crash) and call it again with the same arguments:
it resumes where it stopped, without duplicates. Ctrl-C ends with one line (:class:`AuditInterrupted`)
that says how many images are stored where. With insertion/deletion on, the rows of a batch are
committed in chunks of about ``commit_seconds`` of work, and the progress bar shows the metric's own
progress inside a chunk.

Items that cannot be audited become error rows and the audit goes on: unreadable files, NaN images,
and images of another size than the audit's that a named region does not fit or the model refuses.

Scaling out
-----------
The same audit runs under ``torchrun``, one process per GPU (or several CPU processes)::

    torchrun --nproc-per-node 4 -m camwidget.audit \\
        --model mypkg.models:make_model --dataset /data/val --store val_audit.sqlite

Each rank takes the dataset indices ``i`` with ``i % world_size == rank``, writes its own shard store
``val_audit.rank<r>-of-<n>.sqlite`` next to the target, and when every rank is done rank 0 merges the
shards into ``val_audit.sqlite`` and deletes them. The process group uses NCCL when the model is on a
GPU and gloo on CPU. A rerun -- after a crash, with another number of processes, or in a single
process -- first merges any shard stores left next to the target, then skips every index already
stored.

Several nodes: run the same ``torchrun`` command on every node with ``--nnodes``, ``--node-rank`` and a
rendezvous endpoint (``--rdzv-backend c10d --rdzv-endpoint host:port``). When ``--store`` lies on a
filesystem every node sees, rank 0 merges all shards as above. Otherwise each node keeps its ranks'
shard files; copy them to one machine and merge them with
``python -m camwidget.audit merge val_audit.sqlite shards/*.sqlite`` (or :func:`merge_stores`).
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camwidget.audit.dataset import Failed, Item, LoaderSpec, make_loader, resolve_dataset
from camwidget.audit.embedding import PenultimateTap, find_penultimate
from camwidget.audit.fingerprint import data_fingerprint, model_fingerprint
from camwidget.audit.store import (
    AuditStore,
    ReadOnlyStore,
    merge_stores,
    region_column,
    shard_path,
    shard_stores,
)
from camwidget.engine.batching import model_device
from camwidget.engine.explainer import Explainer
from camwidget.engine.layers import default_layer, resolve_layer
from camwidget.engine.normalize import finalize
from camwidget.methods.registry import get_method
from camwidget.metrics import energy_pointing_game, error_understanding, insertion_deletion
from camwidget.targets import ClassIndex, DetectionBox, SegmentationClass, Similarity, Target, as_target

if TYPE_CHECKING:
    from camwidget.audit.report import AuditReport

__all__ = [
    "METRICS",
    "AuditInterrupted",
    "audit",
    "merge_stores",
    "model_fingerprint",
    "shard_path",
    "shard_stores",
]

METRICS: tuple[str, ...] = ("energy", "insertion", "deletion", "error_understanding")
"""What ``metrics=`` may ask for: "energy" (energy share in each region and in the object box or mask,
i.e. the energy pointing game), "insertion" and "deletion" (RISE AUCs, via :mod:`camwidget.metrics`),
"error_understanding" (for misclassified images, the true class's confidence path and insertion curve
with the true class's map and with the prediction's, via :func:`camwidget.metrics.error_understanding`)."""

EU_STEPS = 25
"""Confidence-path resolution of the audit's error understanding (the benchmark's: 4% of pixels a step)."""

Box = tuple[float, float, float, float]
RegionSpec = Sequence[float] | torch.Tensor | np.ndarray


# -- small helpers ------------------------------------------------------------------------------------
class AuditInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM under the command line) stopped the audit; the message says what is stored
    and how to resume. A ``KeyboardInterrupt``, so code that handles Ctrl-C keeps working."""


def _normalise_regions(regions: Mapping[str, RegionSpec] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check ``regions``; return (JSON description for the settings, name -> box tuple or bool mask)."""
    if regions is None:
        return {}, {}
    if not isinstance(regions, Mapping):
        raise TypeError(
            "regions must be a dict of name -> box (x0, y0, x1, y1) or (H, W) mask, e.g. "
            f"{{'top_left_corner': (0, 0, 32, 32)}}; got {type(regions).__name__}"
        )
    described: dict[str, Any] = {}
    shapes: dict[str, Any] = {}
    for name, spec in regions.items():
        region_column(name)  # validates the name
        value: Any = spec
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if isinstance(value, torch.Tensor) and value.ndim == 2:
            mask = value.bool() if value.dtype == torch.bool else value.float() > 0.5
            if not mask.any():
                raise ValueError(f"region {name!r}: the mask is empty (no pixel set)")
            ys, xs = torch.nonzero(mask, as_tuple=True)
            sha = hashlib.sha1(np.packbits(mask.cpu().numpy()).tobytes()).hexdigest()[:16]
            described[name] = {
                "mask": sha,
                "shape": list(mask.shape),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                "pixels": int(mask.sum()),
            }
            shapes[name] = mask.cpu()
            continue
        if isinstance(value, torch.Tensor):
            value = value.flatten().tolist() if value.numel() == 4 else value
        if (
            not isinstance(value, (tuple, list))
            or len(value) != 4
            or not all(isinstance(v, (int, float, np.integer, np.floating)) for v in value)
        ):
            raise TypeError(
                f"region {name!r} must be a box (x0, y0, x1, y1) in input pixels or an (H, W) mask; "
                f"got {spec!r}"
            )
        x0, y0, x1, y1 = (float(v) for v in value)
        if not (x1 > x0 and y1 > y0) or min(x0, y0) < 0:
            raise ValueError(
                f"region {name!r} = {tuple(value)} is not a box inside the image: boxes are "
                "(x0, y0, x1, y1) in pixels with 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height"
            )
        described[name] = {"box": [x0, y0, x1, y1]}
        shapes[name] = (x0, y0, x1, y1)
    return described, shapes


def _regions_misfit(regions: dict[str, Any], size: tuple[int, int]) -> str:
    """Why ``regions`` do not fit an image of ``size`` (H, W), or "" when they all do."""
    h, w = size
    for name, spec in regions.items():
        if isinstance(spec, torch.Tensor):
            if tuple(spec.shape) != (h, w):
                return (
                    f"region {name!r} is a {tuple(spec.shape)} mask but the images are {h}x{w} (H x W); "
                    "give a mask of the input's size"
                )
        else:
            x0, y0, x1, y1 = spec
            if x1 > w or y1 > h:
                box = f"({x0:g}, {y0:g}, {x1:g}, {y1:g})"
                return (
                    f"region {name!r} = {box} lies outside the {w}x{h} (W x H) input image; boxes are "
                    f"(x0, y0, x1, y1) in input pixels with x1 <= {w} and y1 <= {h}"
                )
    return ""


def _check_regions_fit(regions: dict[str, Any], size: tuple[int, int]) -> None:
    problem = _regions_misfit(regions, size)
    if problem:
        raise ValueError(f"{problem}. Nothing was written")


def box_masks(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, 4) boxes (x0, y0, x1, y1) -> (N, h, w) bool masks, in a few vectorised ops.

    Same convention as :func:`camwidget.metrics.region_masks`: x0, y0 floored and inclusive, x1, y1
    ceiled and exclusive, clipped to the image. Masks are made on ``boxes``' device.
    """
    b = boxes.to(torch.float64)
    x0, y0 = b[:, 0].floor(), b[:, 1].floor()
    x1, y1 = b[:, 2].ceil(), b[:, 3].ceil()
    xs = torch.arange(w, device=b.device, dtype=torch.float64)
    ys = torch.arange(h, device=b.device, dtype=torch.float64)
    cols = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])  # (N, w)
    rows = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])  # (N, h)
    return rows[:, :, None] & cols[:, None, :]


def region_shares(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's energy inside each of R regions shared by all maps, in one matrix product.

    Args:
        maps: (N, H, W) non-negative maps (the explainer's [0, 1] maps).
        masks: (R, H, W) bool or 0/1 region masks.

    Returns:
        (N, R) float32 shares in [0, 1]; a map with no energy scores 0, as in
        :func:`camwidget.metrics.energy_pointing_game`.
    """
    flat = maps.flatten(1).float()
    total = flat.sum(dim=1, keepdim=True)
    inside = flat @ masks.flatten(1).float().T
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(inside))


def _thumbnails(
    x: torch.Tensor, side: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> list[bytes]:
    """(N, C, H, W) model inputs -> JPEG bytes of thumbnails whose longer side is ``side``."""
    from PIL import Image

    _, c, h, w = x.shape
    scale = side / max(h, w)
    with torch.no_grad():
        t = x.float()
        if scale < 1:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
        if c >= 3:
            t = t[:, :3]
        else:
            t = t[:, :1].expand(-1, 3, -1, -1)
        if mean is not None and std is not None and c >= 3:
            m = torch.tensor(mean, device=t.device).view(1, 3, 1, 1)
            s = torch.tensor(std, device=t.device).view(1, 3, 1, 1)
            t = t * s + m
        else:  # unknown normalisation: stretch each image's range to [0, 1]
            lo = t.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
            hi = t.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
            t = (t - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        pixels = t.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for rgb in pixels:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def _nan_to_none(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


# -- torch.distributed ----------------------------------------------------------------------------------
class _Dist:
    """The process group the audit runs in (a single process when not launched by torchrun)."""

    def __init__(self, model: nn.Module) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.owned = False
        device = model_device(model)
        self.device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
        if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if device.type == "cuda":
                if device.index is not None:
                    torch.cuda.set_device(device)  # NCCL's collectives run on the current device
                dist.init_process_group(backend="nccl")
            else:
                dist.init_process_group(backend="gloo")
            self.owned = True
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world_size = dist.get_world_size() if self.active else 1

    def barrier(self) -> None:
        if self.active and self.world_size > 1:
            if self.dist.get_backend() == "nccl" and self.device_ids:
                self.dist.barrier(device_ids=self.device_ids)
            else:
                self.dist.barrier()

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()


# -- the per-batch work ------------------------------------------------------------------------------
Rows = list[dict[str, Any]]


class _Auditor:
    """Turns batches of items into result rows, yielded in chunks that are committed one by one."""

    def __init__(
        self,
        explainer: Explainer,
        regions: dict[str, Any],
        metrics: tuple[str, ...],
        thumbnail: int,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        insertion_deletion: Callable[..., Any] | None,
        shape: tuple[int, ...],
        commit_seconds: float,
        tap: PenultimateTap | None = None,
        error_understanding: Callable[..., Any] | None = None,
        target: Target | None = None,
    ) -> None:
        self.explainer = explainer
        self.target = target  # None: each image's predicted class
        self.tap = tap
        self.error_understanding = error_understanding
        self.eu_kept: list[float] | None = None  # share of pixels kept along the confidence path
        self.empty_maps = 0  # images whose map carried no information (see camwidget.engine.diagnostics)
        self.empty_reason = ""
        self.model = explainer.model
        self.device = model_device(self.model)
        self.regions = regions
        self.energy = "energy" in metrics
        self.metrics = metrics
        self.thumbnail = thumbnail
        self.mean, self.std = mean, std
        self.insertion_deletion = insertion_deletion
        self.shape = tuple(shape)  # the audit's input shape (C, H, W), from the first item
        self.commit_seconds = float(commit_seconds)
        self._region_masks: dict[tuple[int, int], torch.Tensor] = {}
        self._seconds_per_image: float | None = None  # of the metrics, measured as they run
        self.on_metric_progress: Callable[[int, int], None] | None = None

    def region_masks(self, h: int, w: int) -> torch.Tensor:
        key = (h, w)
        if key not in self._region_masks:
            _check_regions_fit(self.regions, (h, w))
            masks = []
            for spec in self.regions.values():
                if isinstance(spec, torch.Tensor):
                    masks.append(spec.to(self.device))
                else:
                    masks.append(box_masks(torch.tensor([spec], device=self.device), h, w)[0])
            self._region_masks[key] = (
                torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.bool, device=self.device)
            )
        return self._region_masks[key]

    def explain(
        self, x: torch.Tensor, target: object = None, *, record: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Raw maps (N, h, w) for ``target``, the logits (N, K) and, with ``record``, the penultimate
        embeddings (N, D) (None without a tap) of the very forward pass that made them. Maps that carry
        no information (all zero, numerical noise) are counted, not warned about one batch at a time."""
        embedding = None
        if self.tap is not None and record:
            with self.tap.recording() as got:
                raw, logits = self.explainer(x, target, raw=True, return_logits=True)
            embedding = got.get("embedding")
        else:
            raw, logits = self.explainer(x, target, raw=True, return_logits=True)
        if self.explainer.last_warnings:
            self.empty_maps += int((torch.relu(raw).flatten(1).amax(dim=1) <= 0).sum())
            self.empty_reason = self.empty_reason or self.explainer.last_warnings[0]
        return raw, logits, embedding

    def rows(self, items: list[Item]) -> Iterator[Rows]:
        """Result rows for ``items``, in chunks; error rows for images that cannot be audited.

        An image holding NaN or infinite values, or of another size than the audit's that a named
        region does not fit or that the model refuses, becomes an error row; a failure on images of the
        audit's own size (a crashing model, a CUDA error) propagates.
        """
        groups: dict[tuple[int, ...], list[Item]] = {}
        for item in items:
            groups.setdefault(tuple(item.image.shape), []).append(item)
        for shape, group in groups.items():
            x = torch.stack([it.image for it in group])
            finite = torch.isfinite(x).flatten(1).all(dim=1)
            if not bool(finite.all()):
                ok = finite.tolist()
                message = "the image contains NaN or infinite values"
                yield [
                    _failure_row(Failed(it.index, message, it.label, it.path))
                    for it, k in zip(group, ok, strict=True)
                    if not k
                ]
                group = [it for it, k in zip(group, ok, strict=True) if k]
                x = x[finite]
            if not group:
                continue
            if shape == self.shape:
                yield from self._group_rows(group, x.to(self.device, non_blocking=True))
                continue
            # Another size than the audit's: audited on its own if the regions fit and the model takes it.
            size = "x".join(str(v) for v in shape[-2:])
            problem = _regions_misfit(self.regions, tuple(shape[-2:])) if self.energy else ""
            if problem:
                message = f"the image is {size} (H x W), the audit's images {self._size()}: {problem}"
                yield [_failure_row(Failed(it.index, message, it.label, it.path)) for it in group]
                continue
            try:
                done = [row for chunk in self._group_rows(group, x.to(self.device)) for row in chunk]
            except Exception as exc:  # the model refuses this shape: the image is bad, not the model
                message = (
                    f"the model failed on this {tuple(shape)} image (the audit's inputs are "
                    f"{self.shape}): {type(exc).__name__}: {_first_line(exc)}"
                )
                done = [_failure_row(Failed(it.index, message, it.label, it.path)) for it in group]
            yield done

    def _size(self) -> str:
        return "x".join(str(v) for v in self.shape[-2:])

    def _chunk(self, remaining: int) -> int:
        """Images per metrics chunk: about ``commit_seconds`` of work, one image until it is measured."""
        if self._seconds_per_image is None or self.commit_seconds <= 0:
            return 1
        return max(1, min(remaining, int(self.commit_seconds / max(self._seconds_per_image, 1e-9))))

    def _group_rows(self, items: list[Item], x: torch.Tensor) -> Iterator[Rows]:
        n, _, h, w = x.shape
        region_masks = self.region_masks(h, w) if self.energy else None
        raw, logits, embedding = self.explain(x, self.target)
        with torch.no_grad():
            probs = torch.softmax(logits, dim=1)
            prob, pred = probs.max(dim=1)
            maps = finalize(raw, (h, w))
        # Misclassified images: the TRUE class (the label) is explained too, beside the prediction.
        k = logits.shape[1]
        labels = [it.label if it.label is not None and 0 <= it.label < k else -1 for it in items]
        label_t = torch.tensor(labels, device=pred.device)
        wrong = torch.nonzero((label_t >= 0) & (label_t != pred)).flatten()
        true_raw = None
        if len(wrong):
            true_raw, _, _ = self.explain(
                x[wrong], self._true_target([labels[i] for i in wrong.tolist()]), record=False
            )
        with torch.no_grad():
            cols: dict[str, list[Any]] = {}
            if self.energy:
                assert region_masks is not None
                if len(self.regions):
                    shares = region_shares(maps, region_masks).cpu().tolist()
                    for r, name in enumerate(self.regions):
                        cols[region_column(name)] = [s[r] for s in shares]
                has_object = [it.box is not None or it.mask is not None for it in items]
                if any(has_object):
                    boxes = [it.box if it.box is not None else (0.0, 0.0, 0.0, 0.0) for it in items]
                    obj = box_masks(torch.tensor(boxes, device=self.device), h, w)
                    for i, it in enumerate(items):
                        if it.mask is not None:
                            obj[i] = it.mask.to(self.device)
                    energy = energy_pointing_game(maps, obj).cpu().tolist()
                    cols["object_energy"] = [
                        e if o else float("nan") for e, o in zip(energy, has_object, strict=True)
                    ]
            blobs, scale_l = _half(raw)
            true_blobs: dict[int, tuple[bytes, float]] = {}
            if true_raw is not None:
                t_blobs, t_scales = _half(true_raw)
                true_blobs = {i: (t_blobs[j].tobytes(), t_scales[j]) for j, i in enumerate(wrong.tolist())}
            emb_blobs, emb_scales = _half(embedding) if embedding is not None else (None, None)
            logit_rows = logits.float().cpu().numpy().astype("<f4")
        thumbs = _thumbnails(x, self.thumbnail, self.mean, self.std) if self.thumbnail else [None] * n
        pred_l, prob_l = pred.cpu().tolist(), prob.cpu().tolist()

        def make(i: int) -> dict[str, Any]:
            it = items[i]
            row: dict[str, Any] = {
                "idx": it.index,
                "label": it.label,
                "predicted": pred_l[i],
                "probability": prob_l[i],
                "correct": None if it.label is None else int(pred_l[i] == it.label),
                "path": it.path,
                "object_box": _describe_object(it),
                "map": blobs[i].tobytes(),
                "map_h": int(raw.shape[1]),
                "map_w": int(raw.shape[2]),
                "map_scale": scale_l[i],
                "logits": logit_rows[i].tobytes(),
                "thumb": thumbs[i],
            }
            if i in true_blobs:
                row["true_map"], row["true_map_scale"] = true_blobs[i]
            if emb_blobs is not None and emb_scales is not None:
                row["embedding"], row["embedding_scale"] = emb_blobs[i].tobytes(), emb_scales[i]
            for key, values in cols.items():
                row[key] = _nan_to_none(values[i])
            return row

        if self.insertion_deletion is None and (self.error_understanding is None or true_raw is None):
            yield [make(i) for i in range(n)]
            return
        norm = {"mean": self.mean, "std": self.std} if self.mean is not None else {}
        wrong_l = wrong.tolist()
        true_maps = finalize(true_raw, (h, w)) if true_raw is not None else None
        start = 0
        while start < n:
            size = self._chunk(n - start)
            part = slice(start, start + size)
            began = time.perf_counter()
            chunk = [make(i) for i in range(start, start + size)]
            if self.insertion_deletion is not None:
                curves = self.insertion_deletion(
                    self.model,
                    x[part],
                    maps[part],
                    target=pred[part] if self.target is None else self.target,
                    progress=self._progress("insertion/deletion"),
                    **norm,
                )
                for metric in ("insertion", "deletion"):
                    if metric in self.metrics:
                        values = _as_list(getattr(curves, f"{metric}_auc"), size)
                        for row, v in zip(chunk, values, strict=True):
                            row[f"{metric}_auc"] = _nan_to_none(v)
            mine = [j for j, i in enumerate(wrong_l) if start <= i < start + size]
            if self.error_understanding is not None and true_maps is not None and mine:
                self._understand(chunk, start, x, maps, true_maps, wrong_l, mine, labels)
            per_image = (time.perf_counter() - began) / size
            self._seconds_per_image = (
                per_image if self._seconds_per_image is None else 0.5 * (self._seconds_per_image + per_image)
            )
            yield chunk
            start += size

    def _true_target(self, labels: list[int]) -> object:
        """What explains the true classes ``labels`` of misclassified images: their logits, or their
        softmax probability / sigmoid when the audit's target is a ``Probability`` / ``Sigmoid``."""
        if isinstance(self.target, ClassIndex) and self.target.explicit:
            return ClassIndex(torch.tensor(labels, dtype=torch.long), self.target.kind, explicit=True)
        return labels

    def _progress(self, what: str) -> Callable[[int, int], None] | None:
        report = self.on_metric_progress
        if report is None:
            return None
        return lambda done, total: report(done, total, what)  # type: ignore[call-arg]

    def _understand(
        self,
        chunk: Rows,
        start: int,
        x: torch.Tensor,
        maps: torch.Tensor,
        true_maps: torch.Tensor,
        wrong: list[int],
        mine: list[int],
        labels: list[int],
    ) -> None:
        """Error understanding of the misclassified images ``wrong[mine]`` of this chunk, with the true
        class's map and the prediction's, in one stream of forwards; the curves go into their rows."""
        assert self.error_understanding is not None
        positions = [wrong[j] for j in mine]
        sel = torch.tensor(positions, device=x.device)
        both = torch.cat([x[sel], x[sel]])
        truth = [labels[i] for i in positions] * 2
        channels = x.shape[1]
        mean = self.mean if self.mean is not None else (0.0,) * channels  # black: input value 0
        std = self.std if self.std is not None else (1.0,) * channels
        result = self.error_understanding(
            self.model,
            both,
            truth,
            torch.cat([true_maps[torch.tensor(mine, device=x.device)], maps[sel]]),
            steps=EU_STEPS,
            mean=mean,
            std=std,
            progress=self._progress("error understanding"),
        )
        m = len(positions)
        path = result.path.float().cpu().numpy().astype("<f4")
        insertion = result.insertion.float().cpu().numpy().astype("<f4")
        if self.eu_kept is None:
            self.eu_kept = [float(v) for v in result.kept.cpu().tolist()]
        for j, i in enumerate(positions):
            row = chunk[i - start]
            row["eu_true_path"], row["eu_true_insertion"] = path[j].tobytes(), insertion[j].tobytes()
            row["eu_predicted_path"] = path[m + j].tobytes()
            row["eu_predicted_insertion"] = insertion[m + j].tobytes()


def _half(values: torch.Tensor) -> tuple[np.ndarray, list[float]]:
    """(N, ...) float tensor -> (N, ...) float16 numpy rows scaled to [-1, 1], and the N scales (the
    largest absolute value of each row, 0 for an all-zero one): value = float16 row * scale."""
    flat = values.detach().float().flatten(1)
    scale = flat.abs().amax(dim=1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    half = (values.float() / safe.view(-1, *([1] * (values.ndim - 1)))).to(torch.float16).cpu().numpy()
    return half, scale.cpu().tolist()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]


def _as_list(values: Any, n: int) -> list[float]:
    t = torch.as_tensor(values).detach().float().cpu().flatten()
    if t.numel() != n:
        raise RuntimeError(f"the metric returned {t.numel()} values for {n} images")
    return t.tolist()


def _check_classes(names: Sequence[str] | None, num_classes: int) -> None:
    if names is not None and len(names) != num_classes:
        raise ValueError(
            f"class_names has {len(names)} names but the model has {num_classes} outputs; pass one name "
            "per class (class_names=...). Nothing was written"
        )


def _audit_target(target: object) -> Target | None:
    """The audit's ``target=``: None (each image's predicted class), one class index for every image, a
    :class:`~camwidget.targets.Target` or a callable ``f(output) -> Tensor[N]`` (:mod:`camwidget.targets`).

    The audit explains a dataset in batches of its own choosing, so a target holding one entry per image
    (N class indices, an (N, H, W) mask, N boxes, N reference embeddings) cannot follow the images and is
    refused, as is anything else that is not a target.

    Raises:
        TypeError: not None, an int, a Target or a callable.
        ValueError: a negative class index, or a per-image target.
    """
    if target is None:
        return None
    per_image = (
        "the audit explains the dataset in batches of its own choosing, so a target must say the same "
        "thing for every image: {what}"
    )
    if isinstance(target, Target) or (callable(target) and not isinstance(target, type)):
        wanted = as_target(target, 1)
        what = ""
        if isinstance(wanted, ClassIndex) and wanted.classes is not None and wanted.classes.numel() > 1:
            what = f"pass one class, not {wanted.classes.numel()}"
        elif isinstance(wanted, SegmentationClass) and wanted.mask is not None and wanted.mask.ndim == 3:
            what = "pass one (H, W) mask for every image (or none: each image's predicted pixels)"
        elif isinstance(wanted, DetectionBox) and wanted.box.shape[0] > 1:
            what = "pass one box"
        elif isinstance(wanted, Similarity) and wanted.embedding is not None and wanted.embedding.ndim == 2:
            what = "pass one reference embedding (D,) or one reference image"
        if what:
            raise ValueError(per_image.format(what=what))
        return wanted
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(
            f"target must be None (each image's predicted class), one class index, a camwidget.targets "
            f"target (Logit, Probability, Sigmoid, ...) or a callable f(output) -> Tensor[N]; got "
            f"{type(target).__name__} {target!r}"
            + (
                f" ({per_image.format(what='pass one class index')})"
                if isinstance(target, (list, tuple, torch.Tensor, np.ndarray))
                else ""
            )
        )
    return as_target(target, 1)


def _describe_object(item: Item) -> str | None:
    """JSON box "[x0, y0, x1, y1]", "mask", or None."""
    if item.box is not None:
        return "[" + ", ".join(f"{v:g}" for v in item.box) + "]"
    return "mask" if item.mask is not None else None


def _failure_row(f: Failed) -> dict[str, Any]:
    return {"idx": f.index, "label": f.label, "error": f.message, "path": f.path}


def _probe(spec: LoaderSpec) -> Item:
    """The first loadable item (for the input size and the default layer); raise on a wrong type."""
    from camwidget.audit.dataset import Items

    items = Items(spec.dataset, spec.transform)
    n = len(items)
    if n == 0:
        raise ValueError("the dataset is empty: there is nothing to audit")
    first_error = None
    for i in range(min(n, 32)):
        got = items[i]
        if isinstance(got, Item):
            return got
        if got.fatal:
            raise TypeError(got.message)
        first_error = first_error or got
    assert first_error is not None
    raise ValueError(
        f"none of the first {min(n, 32)} dataset items could be loaded; the first failed with: "
        f"{first_error.message}"
    )


def _resolve_layer(model: nn.Module, layer: str | nn.Module | None, example: torch.Tensor) -> str:
    """The layer's name; an unknown name lists the spatial layers one could explain instead."""
    if layer is None:
        return default_layer(model, example)
    try:
        return resolve_layer(model, layer)[0]
    except ValueError as exc:
        from camwidget.engine.layers import candidate_layers

        try:
            names = [info.name for info in candidate_layers(model, example)]
        except Exception:  # the engine's own message is still there
            raise exc from None
        raise ValueError(
            f"layer {layer!r} is not a layer of the model; choose one of: {', '.join(names)}"
        ) from None


@contextmanager
def _progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not enabled, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


class _MetricProgress:
    """Shows a metric's own progress (insertion/deletion's or error understanding's perturbed forwards)
    in the bar's postfix, at most every half second, so that a long chunk is visibly moving."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.last = 0.0

    def __call__(self, done: int, total: int, what: str = "insertion/deletion") -> None:
        now = time.monotonic()
        if self.last and now - self.last < 0.5 and done < total:
            return
        self.last = now
        self.bar.set_postfix_str(f"{what} {done}/{total} forwards", refresh=True)


def _remove_store(path: str | os.PathLike[str]) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _stored(store: str | os.PathLike[str]) -> tuple[int, int]:
    """(images stored in ``store`` and its shard files together, number of shard files)."""
    shards = [s for s in shard_stores(store) if s.exists()]
    try:
        with AuditStore(store, readonly=True, shards=shards) as s:
            return s.count(), len(s.shards) + (0 if Path(store).exists() else 1)
    except Exception:  # nothing readable yet
        return 0, len(shards)


def _interrupted_message(store: str | os.PathLike[str], total: int, world_size: int) -> str:
    if str(store) == ":memory:":
        return (
            "audit interrupted: its rows were in the store=':memory:', which is gone; pass store= a file "
            "path to be able to resume"
        )
    count, shards = _stored(store)
    where = f"{str(store)!r}"
    if shards:
        where += f" and {shards} shard file{'s' if shards != 1 else ''} next to it"
    how = (
        "run the same torchrun command again to resume (it merges the shards first)"
        if world_size > 1 or shards
        else "run the same audit again to resume"
    )
    return f"audit interrupted: {count} of {total} images are stored in {where}; {how}"


# -- the entry point -------------------------------------------------------------------------------------
def audit(
    model: nn.Module,
    dataset: Any,
    *,
    method: str = "hirescam",
    layer: str | nn.Module | None = None,
    store: str | os.PathLike[str] = "audit.sqlite",
    regions: Mapping[str, RegionSpec] | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 64,
    metrics: Sequence[str] = ("energy",),
    num_workers: int = 0,
    transform: Callable[[Any], Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    thumbnail: int = 64,
    overwrite: bool = False,
    progress: bool = True,
    commit_seconds: float = 10.0,
    target: object = None,
) -> AuditReport:
    """Explain every image of ``dataset`` with ``model`` and record the results in an SQLite ``store``.

    Per image the store gets: the dataset index, the label, the predicted class and its softmax
    probability, whether it was correct, the full logit vector, the penultimate embedding (the input
    of the model's last linear layer, float16; see :mod:`camwidget.audit.embedding`), the signed raw
    map at the layer's resolution (float16), a small JPEG thumbnail, the share of map energy inside each
    of ``regions``, the share inside the item's own object box or mask
    (:func:`camwidget.metrics.energy_pointing_game`) when the dataset gives one, and insertion/deletion
    AUCs when asked. The map explains the *predicted* class; a misclassified image also gets the map of
    its *true* class (``report.maps(..., which="true")``) and, with ``"error_understanding"`` in
    ``metrics``, the error-understanding curves of both maps (``report.error_understanding()``). At
    the end the 2-D embedding map (``report.embedding()``) is computed once and kept in the store.
    Energy shares are measured on the map the explainer shows (upsampled to the input size, ReLU,
    min-max to [0, 1]); a map with no positive evidence scores 0. Boxes follow camwidget.metrics:
    (x0, y0, x1, y1), x1 and y1 exclusive.

    Results are committed batch by batch (in chunks of about ``commit_seconds`` with insertion/deletion);
    interrupting loses at most the chunk in flight, and calling again with the same arguments resumes.
    Ctrl-C raises :class:`AuditInterrupted` (a ``KeyboardInterrupt``) whose message says what is stored.
    Items that cannot be loaded (or are NaN, or of another size that a region does not fit or the
    model refuses) become error rows (column ``error``) and the audit goes on. Two audits with the same
    settings may write one store at once: each skips what the other stored. Under ``torchrun`` each
    process audits its shard; see the module documentation.

    The store records fingerprints of the model, the data and the transform (a digest of 16 sampled
    items and of the inputs the transform makes of them, see :mod:`camwidget.audit.fingerprint`) and
    refuses to resume with other ones, saying what differs.

    Args:
        model: classifier returning (N, K) logits, on any device; left exactly as it came. A
            :class:`camwidget.models.Pretrained` brings its own transform, class names and mean/std.
        dataset: a map-style ``torch.utils.data.Dataset`` or ``DataLoader`` yielding ``(image, label)``
            or ``(image, label, box_or_mask)``, or a folder in ImageFolder layout. ``image``: a (3, H, W)
            float tensor preprocessed for the model (or anything ``transform`` turns into one);
            ``box_or_mask``: (x0, y0, x1, y1) in input pixels, or an (H, W) bool mask.
        method: any name in :data:`camwidget.METHODS`. Default "hirescam" (one forward + backward).
        layer: the layer to explain (name or module); None: the last spatial layer before pooling.
        store: path of the SQLite file (created if missing; reused to resume), or ":memory:".
            Default "audit.sqlite". A complete audit on read-only media is read back as it is.
        regions: named regions to measure, ``{"name": (x0, y0, x1, y1)}`` in pixels of the model input
            (after ``transform``) or ``{"name": mask}`` with an (H, W) bool mask. Names must be identifiers.
        class_names: one name per model output; default the dataset's ``classes`` if it has them.
        batch_size: images per explainer call and per committed transaction. Default 64 (a
            DataLoader's own batch size is used when this is left at 64).
        metrics: any of "energy" (default), "insertion", "deletion", "error_understanding".
            Insertion/deletion follow RISE (:func:`camwidget.metrics.insertion_deletion`, 224 pixels per
            step): about 2·H·W/224 extra forwards per image, hundreds at 224x224, so expect the audit to
            run that much slower. Error understanding (:func:`camwidget.metrics.error_understanding`,
            the "Less is More" protocol, 25 steps) costs 100 forwards per *misclassified* image (49
            perturbed inputs for each of its two maps), none for the others.
        num_workers: DataLoader worker processes for loading images. Default 0.
        transform: applied to each image before the model (needed when the dataset yields PIL images).
            For a folder the default is resize 256, centre crop 224, ImageNet normalisation.
        mean, std: the input normalisation, used to draw thumbnails and by the gallery's CamExplorer;
            None (default): read from a ``Normalize`` inside ``transform`` if there is one, else each
            thumbnail's value range is stretched.
        thumbnail: longer side of the stored thumbnails in pixels; 0 stores none. Default 64.
        overwrite: delete an existing store first instead of resuming it. Default False.
        progress: show a tqdm progress bar with images per second. Default True.
        commit_seconds: with insertion/deletion, commit rows after about this many seconds of metric
            work (the first image of an audit alone, to measure). Default 10; 0 commits every image.
        target: the score each stored map explains (see :mod:`camwidget.targets`): None (default: each
            image's predicted class, its logit), one class index for every image, a target such as
            ``camwidget.targets.Sigmoid(c)`` (one label of a multi-label head) or ``Probability(c)``,
            or any callable ``f(output) -> Tensor[N]``; the same for every image (a per-image target
            is refused). Insertion/deletion score the same target. A misclassified image's true-class
            map explains its label's logit (its sigmoid / softmax probability when the target is a
            ``Sigmoid`` / ``Probability``). The model must still return logits (predictions, the
            confusion matrix and slices need them). Recorded in the store's settings
            (``report.target``): a resume with another target is refused.

    Returns:
        The :class:`~camwidget.AuditReport` of the whole store.

    Raises:
        TypeError: the model or the dataset's items have the wrong type (the message names the item).
        ValueError: bad arguments, a region outside the image, or a store holding an audit with other
            settings (``SettingsMismatch``). Nothing already stored is ever deleted by an error.
        camwidget.audit.store.UnusableStore: a folder, read-only or damaged ``store``; the message says
            what to do.
        AuditInterrupted: Ctrl-C; the message says how many images are stored and how to resume.
    """
    from camwidget.audit.report import AuditReport

    pretrained_model = getattr(model, "model", None)
    if not isinstance(model, nn.Module) and isinstance(pretrained_model, nn.Module):
        # camwidget.models.Pretrained: its transform, names and normalisation unless given
        transform = transform if transform is not None else getattr(model, "transform", None)
        class_names = class_names if class_names is not None else getattr(model, "class_names", None)
        if mean is None and std is None:
            mean, std = getattr(model, "mean", None), getattr(model, "std", None)
        model = pretrained_model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module returning (N, K) logits, got {type(model).__name__}"
        )
    method_name = get_method(method).name
    wanted = _audit_target(target)
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics_t = tuple(dict.fromkeys(metrics))
    unknown = [m for m in metrics_t if m not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(map(str, unknown))}; choose from {', '.join(METRICS)}"
        )
    region_desc, region_specs = _normalise_regions(regions)
    if region_specs and "energy" not in metrics_t:
        raise ValueError("regions are measured by the 'energy' metric; add 'energy' to metrics=")
    if isinstance(thumbnail, bool) or not isinstance(thumbnail, int) or thumbnail < 0:
        raise ValueError(f"thumbnail must be an int >= 0 (pixels), got {thumbnail!r}")
    if isinstance(commit_seconds, bool) or not isinstance(commit_seconds, (int, float)) or commit_seconds < 0:
        raise ValueError(f"commit_seconds must be a number >= 0, got {commit_seconds!r}")
    if str(store) != ":memory:":
        from camwidget.audit.store import check_store_path

        check_store_path(store)
    spec = resolve_dataset(
        dataset,
        transform=transform,
        batch_size=batch_size,
        num_workers=num_workers,
        class_names=class_names,
        mean=mean,
        std=std,
    )

    dist = _Dist(model)
    n = len(spec.dataset)  # type: ignore[arg-type]
    try:
        return _run(
            model, spec, dist, n, method_name, layer, store, region_desc, region_specs, metrics_t,
            thumbnail, overwrite, progress, commit_seconds, AuditReport, wanted,
        )  # fmt: skip
    except KeyboardInterrupt as exc:
        if isinstance(exc, AuditInterrupted):
            raise
        raise AuditInterrupted(_interrupted_message(store, n, dist.world_size)) from None
    finally:
        dist.close()


def _run(
    model: nn.Module,
    spec: LoaderSpec,
    dist: _Dist,
    n: int,
    method_name: str,
    layer: str | nn.Module | None,
    store: str | os.PathLike[str],
    region_desc: dict[str, Any],
    region_specs: dict[str, Any],
    metrics_t: tuple[str, ...],
    thumbnail: int,
    overwrite: bool,
    progress: bool,
    commit_seconds: float,
    report_class: type[AuditReport],
    wanted: Target | None = None,
) -> AuditReport:
    if dist.world_size > 1 and str(store) == ":memory:":
        raise ValueError("store=':memory:' cannot be shared by several processes; pass a file path")
    probe = _probe(spec)
    example = probe.image.unsqueeze(0).to(model_device(model))
    layer_name = _resolve_layer(model, layer, example)
    names = spec.class_names
    _check_regions_fit(region_specs, tuple(probe.image.shape[-2:]))  # type: ignore[arg-type]
    explainer = Explainer(model, layer_name, method_name, warn=False)  # one summary warning at the end
    num_classes = int(explainer.predict(example).shape[1])
    if (
        wanted is not None
    ):  # a target that fails on the model's output fails here, before any store is touched
        explainer(example, wanted, raw=True)
    tap = find_penultimate(model, example, layer_name)
    _check_classes(names, num_classes)
    data_fp, transform_fp = data_fingerprint(spec.dataset, spec.transform)
    if transform_fp["random"]:
        import warnings

        warnings.warn(
            "the transform is random (two calls on one image gave different inputs): the audit explains "
            "one random view of each image, and a resumed audit another one",
            stacklevel=3,
        )
    dataset_type = f"{type(spec.dataset).__module__}.{type(spec.dataset).__qualname__}"
    settings = {
        "method": method_name,
        "layer": layer_name,
        "model": model_fingerprint(model),
        "dataset": {**spec.describe, "fingerprint": data_fp},
        "transform": transform_fp,
        "regions": region_desc,
        "metrics": sorted(metrics_t),
    }
    if wanted is not None:  # absent for the predicted class, so stores made before target= still resume
        settings["target"] = wanted.name
    display = {"mean": spec.mean, "std": spec.std, "thumbnail": thumbnail, "dataset_type": dataset_type}

    # Open (and check) every store this process reads or writes before writing anything.
    if str(store) != ":memory:" and dist.rank == 0:
        leftovers = shard_stores(store)
        if overwrite:
            for path in [Path(store), *leftovers]:
                _remove_store(path)
        elif leftovers:  # shards of an interrupted torchrun audit (any world size): consolidate first
            merge_stores(store, leftovers, remove=True)
    dist.barrier()
    done: set[int] = set()
    if dist.world_size > 1:
        if Path(store).exists():
            with AuditStore(store, readonly=True) as merged:
                merged.check_settings(settings)
                done = merged.done_indices()
        target = AuditStore(shard_path(store, dist.rank, dist.world_size))
    else:
        try:
            target = AuditStore(store)
        except ReadOnlyStore:
            return _read_only(store, settings, n, spec, report_class)
    try:
        target.check_settings(settings)  # before any work; recorded with the first rows

        started: list[bool] = []

        def start() -> None:
            """Record the settings and metadata (once, just before the first rows)."""
            if not started:
                target.init_settings(settings)
                target.set_meta("display", display)
                if names is not None or target.get_meta("class_names") is None:
                    target.set_meta("class_names", names)
                if target.get_meta("image_size") is None:
                    target.set_meta("image_size", list(probe.image.shape[-2:]))
                if target.get_meta("num_classes") is None:
                    target.set_meta("num_classes", num_classes)
                if target.get_meta("embedding") is None:
                    target.set_meta("embedding", tap.describe())
                if "error_understanding" in metrics_t and target.get_meta("error_understanding") is None:
                    target.set_meta("error_understanding", {"steps": EU_STEPS})  # "kept" once measured
                started.append(True)

        done |= target.done_indices()
        mine = [i for i in range(dist.rank, n, dist.world_size)]
        todo = [i for i in mine if i not in done]
        auditor = _Auditor(
            explainer,
            region_specs,
            metrics_t,
            thumbnail,
            spec.mean,
            spec.std,
            insertion_deletion if {"insertion", "deletion"} & set(metrics_t) else None,
            tuple(probe.image.shape),
            commit_seconds,
            tap,
            error_understanding if "error_understanding" in metrics_t else None,
            wanted,
        )
        desc = "audit" if dist.world_size == 1 else f"audit rank {dist.rank}/{dist.world_size}"
        errors = 0
        with _progress_bar(len(mine), len(mine) - len(todo), progress and dist.rank == 0, desc) as bar:
            if bar is not None and progress and dist.rank == 0:
                auditor.on_metric_progress = _MetricProgress(bar)
            if todo:
                for batch in make_loader(spec, todo):
                    fatal = [f for f in batch.failures if f.fatal]
                    if fatal:
                        raise TypeError(
                            f"{fatal[0].message}. Audit stopped; the {target.count()} rows already "
                            "stored are kept"
                        )
                    # another audit writing this store may have got here first: skip what it stored
                    taken = target.stored_among(
                        [it.index for it in batch.items] + [f.index for f in batch.failures]
                    )
                    skipped = 0
                    if taken:
                        skipped = len(taken)
                        batch.items = [it for it in batch.items if it.index not in taken]
                        batch.failures = [f for f in batch.failures if f.index not in taken]
                    start()
                    if batch.failures:
                        target.write_rows([_failure_row(f) for f in batch.failures], skip_existing=True)
                        errors += len(batch.failures)
                        bar.set_postfix(errors=errors, refresh=False)
                        bar.update(len(batch.failures))
                    for chunk in auditor.rows(batch.items):
                        if auditor.eu_kept is not None and "kept" not in target.get_meta(
                            "error_understanding", {}
                        ):
                            target.set_meta(
                                "error_understanding", {"steps": EU_STEPS, "kept": auditor.eu_kept}
                            )
                        target.write_rows(chunk, skip_existing=True)
                        bad = sum(1 for row in chunk if row.get("error") is not None)
                        if bad:
                            errors += bad
                            bar.set_postfix(errors=errors, refresh=False)
                        bar.update(len(chunk))
                    if skipped:
                        bar.update(skipped)
        start()
        target.checkpoint()
    finally:
        if str(store) != ":memory:":
            target.close()

    if auditor.empty_maps:
        import warnings

        from camwidget.engine.diagnostics import MapWarning

        warnings.warn(
            f"{auditor.empty_maps} of the maps this audit made are all zero (no evidence at layer "
            f"{layer_name!r}); the first reason given: {auditor.empty_reason}",
            MapWarning,
            stacklevel=3,
        )
    if dist.world_size > 1:
        dist.barrier()
        if dist.rank == 0:
            shards = [shard_path(store, r, dist.world_size) for r in range(dist.world_size)]
            missing = [str(s) for s in shards if not s.exists()]
            if missing:
                import warnings

                warnings.warn(
                    f"shard stores {missing} are not visible from rank 0 (another node's disk?); copy "
                    f"them here and run: python -m camwidget.audit merge {store} <shards>",
                    stacklevel=3,
                )
            merge_stores(store, [s for s in shards if s.exists()], remove=True)
        dist.barrier()
    if str(store) == ":memory:":
        report = report_class(target, dataset=spec.dataset, transform=spec.transform, verified=True)
    else:
        own_shard = shard_path(store, dist.rank, dist.world_size)
        if dist.world_size > 1 and not Path(store).exists() and own_shard.exists():
            # another node's disk: this shard
            return report_class.load(own_shard, dataset=spec.dataset, transform=spec.transform, verified=True)
        report = report_class.load(store, dataset=spec.dataset, transform=spec.transform, verified=True)
    if dist.rank == 0 and report.has_embeddings():
        report.embedding()  # computed once here and kept in the store (a rerun with no new rows reuses it)
    return report


def _read_only(
    store: str | os.PathLike[str],
    settings: dict[str, Any],
    n: int,
    spec: LoaderSpec,
    report_class: type[AuditReport],
) -> AuditReport:
    """A store that cannot be written: its report if it already holds this whole audit, else why not."""
    if not Path(store).exists():
        raise ReadOnlyStore(
            f"cannot create the audit store {str(store)!r}: its folder is read-only. Pass store= a path "
            "in a writable folder"
        )
    with AuditStore(store, readonly=True) as ro:
        ro.check_settings(settings)
        done = ro.done_indices()
    stored = len(done & set(range(n)))
    if stored < n:
        raise ReadOnlyStore(
            f"the audit store {str(store)!r} is read-only and holds {stored} of {n} images of this audit; "
            "copy it to a writable folder and pass that path as store= to finish it"
        )
    return report_class.load(store, dataset=spec.dataset, transform=spec.transform, verified=True)
