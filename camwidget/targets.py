"""What score is explained: a class index, a class's logit / probability / sigmoid, a segmentation class over
a mask, a detection, an embedding's similarity, a raw output, or any callable ``output -> Tensor[N]``.

This module is the only place that knows what a model's output looks like (a tensor, a tuple, an object
with ``.logits``, torchvision's ``{"out": ...}`` dict, a list of detection dicts). Everything else asks a
:class:`Target` for the score of each image.

``target=`` everywhere in camwidget (``explain``, :class:`~camwidget.Explainer`, the metrics, the audit,
``CamExplorer``, ``%cam``) accepts:

- ``None``: each image's predicted class (the argmax of the logits);
- an ``int``, or one int per image: that class's **logit** for the gradient methods, Ablation-CAM and
  Opti-CAM; the preset's own score for Score-CAM (softmax probability for ``variant="paper"``); its softmax
  probability for the insertion/deletion curves and Average Drop/Increase/Gain (RISE's and the papers'
  definitions);
- a :class:`Target` from this module, or any callable ``f(output) -> Tensor[N]``: that score, the same in
  every method and metric.

Class-index outputs: a (N, K) tensor, the first element of a tuple/list, or an object's ``.logits`` (Hugging
Face) are read as logits. Any other output needs a callable target (the error says so).

Targets compared with pytorch-grad-cam 1.5.7 (the same value on the same output, so the maps agree):
``Logit(c)`` = ``ClassifierOutputTarget(c)``, ``Probability(c)`` = ``ClassifierOutputSoftmaxTarget(c)``,
``ReST(c)`` = ``ClassifierOutputReST(c)``, ``FinerContrast(c)`` = ``FinerWeightedTarget``,
``SegmentationClass(c, mask)`` = ``SemanticSegmentationTarget(c, mask)``; a single-output binary head is
``Logit(0)`` (pytorch-grad-cam's ``BinaryClassifierOutputTarget(1)``) or ``Output(0, sign=-1)``
(``BinaryClassifierOutputTarget(0)``). ``DetectionBox`` differs from ``FasterRCNNBoxScoreTarget`` on
purpose, see its docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "ClassIndex",
    "DetectionBox",
    "FinerContrast",
    "Logit",
    "Output",
    "Probability",
    "ReST",
    "SegmentationClass",
    "Sigmoid",
    "Similarity",
    "Target",
    "as_logits",
    "as_target",
    "check_scores",
    "describe_output",
    "detections",
    "output_kind",
    "segmentation_scores",
]


# -- reading outputs ----------------------------------------------------------------------------------------
def describe_output(output: object) -> str:
    """A short description of a model output, for error messages ("dict with 'out' (1, 21, 64, 64)")."""
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, dict):
        parts = [f"{k!r} {_shape(v)}" for k, v in list(output.items())[:6]]
        return f"a dict with {', '.join(parts)}"
    if isinstance(output, list | tuple):
        inner = describe_output(output[0]) if output else "nothing"
        return f"a {type(output).__name__} of {len(output)} (the first: {inner})"
    if hasattr(output, "logits"):
        return f"a {type(output).__name__} with .logits {_shape(output.logits)}"
    return f"a {type(output).__name__}"


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def as_logits(output: object) -> torch.Tensor:
    """The (N, K) logits in a classifier's output: the tensor itself, the first element of a tuple or list,
    or ``.logits`` (Hugging Face outputs).

    Raises:
        TypeError: the output holds no (N, K) tensor; the message says what it holds and what to pass.
    """
    value = output
    if isinstance(value, list | tuple) and value and isinstance(value[0], torch.Tensor):
        value = value[0]
    elif not isinstance(value, torch.Tensor) and isinstance(getattr(value, "logits", None), torch.Tensor):
        value = value.logits
    if isinstance(value, torch.Tensor) and value.ndim == 2:
        return value
    raise TypeError(
        f"the model returned {describe_output(output)}, not (N, num_classes) logits; a class-index target "
        "needs logits. Pass target= a callable that picks the score to explain from the output, e.g. "
        "camwidget.targets.SegmentationClass(c) for {'out': (N, K, H, W)}, DetectionBox(box, label) for "
        "detections, Output(i) for a regression head, or lambda out: out['logits'][:, c]"
    )


# -- the protocol -------------------------------------------------------------------------------------------
class Target:
    """The score explained for each image: ``target(output) -> Tensor[B]``.

    Subclasses implement :meth:`__call__` and may override:

    - :meth:`prepare`, called once per call on the model's output for the unperturbed inputs (e.g. to take
      the predicted class or the predicted segmentation mask from it, or to embed a reference image);
    - :meth:`rows`, which gives the target for a batch whose rows belong to the images ``index`` (targets
      that differ per image, such as a mask per image, slice themselves).

    Attributes:
        name: how the target is shown to people ("logit of 'tabby'", "segmentation: class 15").
    """

    name: str = "custom target"

    def __call__(self, output: Any) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare(self, output: Any, run: Callable[[torch.Tensor], Any]) -> Target:
        """The target bound to the unperturbed ``output`` of this call; ``run(x)`` runs the model."""
        return self

    def rows(self, index: torch.Tensor) -> Target:
        """The target for a batch whose rows come from images ``index`` (B,)."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class _Callable(Target):
    """A plain user callable ``f(output) -> Tensor[N]``."""

    def __init__(self, fn: Callable[[Any], torch.Tensor]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", None) or type(fn).__name__
        if self.name == "<lambda>":
            self.name = "custom target"

    def __call__(self, output: Any) -> torch.Tensor:
        return self.fn(output)


# -- classifier outputs -------------------------------------------------------------------------------------
_TRANSFORMS = {
    "logit": lambda z: z,
    "probability": lambda z: torch.softmax(z, dim=1),
    "sigmoid": torch.sigmoid,
    "rest": lambda z: z + torch.log_softmax(z, dim=1),
}


class ClassIndex(Target):
    """A class per image, scored as ``kind`` of the logits: "logit" (default), "probability" (softmax),
    "sigmoid" or "rest" (logit + log-softmax, see :class:`ReST`). ``classes`` None means each image's
    predicted class (fixed by :meth:`prepare`).

    Args:
        classes: None, an int, or one int per image.
        kind: "logit", "probability", "sigmoid" or "rest".
        explicit: whether the user chose the score (a :class:`Logit`/:class:`Probability`/:class:`Sigmoid`)
            rather than passing a bare class index; methods and metrics with their own customary score for
            a class (Score-CAM's presets, the curves' softmax) use it only for bare indices.
    """

    def __init__(self, classes: torch.Tensor | None, kind: str = "logit", *, explicit: bool = False) -> None:
        if kind not in _TRANSFORMS:
            raise ValueError(f"kind must be one of {', '.join(_TRANSFORMS)}; got {kind!r}")
        self.classes = classes
        self.kind = kind
        self.explicit = explicit
        what = "predicted class" if classes is None else _class_text(classes)
        self.name = what if not explicit else f"{kind} of {what}"

    def scores_from_logits(self, logits: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) scores from (B, K) logits for ``classes`` (B,) (default: this target's)."""
        chosen = self.classes if classes is None else classes
        if chosen is None:
            raise RuntimeError("the predicted class is only known after prepare()")
        values = _TRANSFORMS[self.kind](logits.float())
        return values.gather(1, chosen.to(values.device).view(-1, 1)).squeeze(1)

    def __call__(self, output: Any) -> torch.Tensor:
        return self.scores_from_logits(as_logits(output))

    def prepare(self, output: Any, run: Callable[[torch.Tensor], Any]) -> ClassIndex:
        logits = as_logits(output)
        k = logits.shape[1]
        if self.classes is None:
            classes = logits.detach().argmax(dim=1)
        else:
            classes = self.classes.to(logits.device)
            if classes.numel() == 1 and logits.shape[0] > 1:
                classes = classes.expand(logits.shape[0]).clone()
            if classes.numel() != logits.shape[0]:
                raise ValueError(
                    f"target has {classes.numel()} entries for {logits.shape[0]} images; pass one per image "
                    "or a single int"
                )
            if bool((classes >= k).any()):
                raise ValueError(
                    f"target {classes.tolist()} out of range: the model has {k} classes (0..{k - 1})"
                )
        return ClassIndex(classes, self.kind, explicit=self.explicit)

    def rows(self, index: torch.Tensor) -> ClassIndex:
        if self.classes is None:
            return self
        return ClassIndex(self.classes[index.to(self.classes.device)], self.kind, explicit=self.explicit)


def _class_text(classes: torch.Tensor) -> str:
    values = classes.flatten().tolist()
    return f"class {values[0]}" if len(set(values)) == 1 else f"classes {values}"


def _check_class(c: object) -> int:
    if isinstance(c, bool) or not hasattr(c, "__index__"):
        raise TypeError(f"class index must be an int; got {type(c).__name__} {c!r}")
    value = int(c)  # type: ignore[arg-type]
    if value < 0:
        raise ValueError(f"class index must be >= 0; got {value}")
    return value


class Logit(ClassIndex):
    """The logit of class ``c`` (pytorch-grad-cam's ``ClassifierOutputTarget``). ``c`` may be one int or
    one int per image."""

    def __init__(self, c: int | Sequence[int]) -> None:
        super().__init__(_classes(c), "logit", explicit=True)


class Probability(ClassIndex):
    """The softmax probability of class ``c`` (pytorch-grad-cam's ``ClassifierOutputSoftmaxTarget``)."""

    def __init__(self, c: int | Sequence[int]) -> None:
        super().__init__(_classes(c), "probability", explicit=True)


class Sigmoid(ClassIndex):
    """The sigmoid of logit ``c``: one label of a multi-label head (each label an independent yes/no)."""

    def __init__(self, c: int | Sequence[int]) -> None:
        super().__init__(_classes(c), "sigmoid", explicit=True)


class ReST(ClassIndex):
    """ReST (Cai, "CAMs as Shapley Value-based Explainers", arXiv:2501.06261): the logit of class ``c`` plus
    its log-softmax, z_c + log softmax(z)_c = z_c − CE(z, c), a score that uses the pre- and the
    post-softmax output at once. Equal to pytorch-grad-cam's ``ClassifierOutputReST(c)``; ShapleyCAM explains
    it by default."""

    def __init__(self, c: int | Sequence[int]) -> None:
        super().__init__(_classes(c), "rest", explicit=True)


class FinerContrast(Target):
    """Finer-CAM's score (Zhang et al., arXiv:2501.11309): class ``c`` against the classes the model finds
    most similar to it, Σ_j p_j·(z_c − α·z_j) / (Σ_j p_j + 1e-9), with z the logits, p = softmax(z) (the
    gradient flows through p too, as in pytorch-grad-cam's ``FinerWeightedTarget``) and j the classes at
    ``ranks`` when all classes are sorted by |z_j − z_c| (rank 0 is c itself; pytorch-grad-cam's
    ``comparison_categories``, default 1, 2, 3: the three most similar). The comparison classes are fixed on
    the unperturbed output by :meth:`prepare`.

    Args:
        target: the class explained: None (the predicted class), an int, N ints or a :class:`ClassIndex`.
        alpha: the weight of the comparison classes (1 by default; 0 gives a softmax-weighted logit).
        ranks: which similarity ranks to compare with (ranks beyond the class count are dropped).
    """

    def __init__(self, target: object = None, alpha: float = 1.0, ranks: Sequence[int] = (1, 2, 3)) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise ValueError(f"alpha must be a number; got {alpha!r}")
        ranks = tuple(ranks)
        if not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in ranks):
            raise ValueError(f"ranks must be a non-empty sequence of ints >= 0; got {ranks!r}")
        if isinstance(target, ClassIndex):
            self.base = target
        elif target is None or isinstance(target, int | Sequence | torch.Tensor):
            self.base = ClassIndex(None if target is None else _classes(target))  # type: ignore[arg-type]
        else:
            raise ValueError(
                f"Finer-CAM contrasts a class with its most similar classes; the target must be a class, got "
                f"{target!r}"
            )
        self.alpha = float(alpha)
        self.ranks = ranks
        self.classes: torch.Tensor | None = None  # (N,) after prepare()
        self.comparisons: torch.Tensor | None = None  # (N, R) after prepare()
        self.name = f"Finer contrast of {self.base.name} (alpha {self.alpha:g})"

    def prepare(self, output: Any, run: Callable[[torch.Tensor], Any]) -> FinerContrast:
        if self.classes is not None:
            return self
        base = self.base.prepare(output, run)
        assert base.classes is not None
        logits = as_logits(output).detach().float()
        k = logits.shape[1]
        ranks = [r for r in self.ranks if r < k]
        if not ranks:
            raise ValueError(f"Finer-CAM needs at least one comparison class; the model has {k} classes")
        main = logits.gather(1, base.classes.view(-1, 1))
        order = torch.argsort((logits - main).abs(), dim=1, stable=True)
        bound = FinerContrast(base, self.alpha, self.ranks)
        bound.classes = base.classes
        bound.comparisons = order[:, ranks]
        bound.name = self.name
        return bound

    def __call__(self, output: Any) -> torch.Tensor:
        if self.classes is None or self.comparisons is None:
            raise RuntimeError("the comparison classes are only known after prepare()")
        z = as_logits(output).float()
        p = torch.softmax(z, dim=1)
        main = z.gather(1, self.classes.to(z.device).view(-1, 1))
        index = self.comparisons.to(z.device)
        weights = p.gather(1, index)
        return (weights * (main - self.alpha * z.gather(1, index))).sum(1) / (weights.sum(1) + 1e-9)

    def rows(self, index: torch.Tensor) -> FinerContrast:
        if self.classes is None or self.comparisons is None:
            return self
        sliced = FinerContrast(self.base, self.alpha, self.ranks)
        sliced.classes = self.classes[index.to(self.classes.device)]
        sliced.comparisons = self.comparisons[index.to(self.comparisons.device)]
        sliced.name = self.name
        return sliced


def _classes(c: int | Sequence[int]) -> torch.Tensor:
    if isinstance(c, Sequence) and not isinstance(c, str):
        return torch.tensor([_check_class(v) for v in c], dtype=torch.long)
    return torch.tensor([_check_class(c)], dtype=torch.long)


class Output(Target):
    """The raw ``i``-th output of a (N, K) head (or of a (N,) head with ``i=0``), times ``sign``: a
    regression head, or a single-logit binary head (``sign=-1`` explains the negative class)."""

    def __init__(self, i: int = 0, *, sign: float = 1.0) -> None:
        self.i = _check_class(i)
        if sign not in (1, -1, 1.0, -1.0):
            raise ValueError(f"sign must be +1 or -1; got {sign!r}")
        self.sign = float(sign)
        self.name = f"output {self.i}" + (" (negated)" if self.sign < 0 else "")

    def __call__(self, output: Any) -> torch.Tensor:
        value = output if isinstance(output, torch.Tensor) else as_logits(output)
        if value.ndim == 1 and self.i == 0:
            return value * self.sign
        if value.ndim != 2 or self.i >= value.shape[1]:
            raise ValueError(
                f"Output({self.i}) needs a (N, K > {self.i}) output; got {describe_output(output)}"
            )
        return value[:, self.i] * self.sign


# -- segmentation -------------------------------------------------------------------------------------------
def _segmentation_logits(output: Any) -> torch.Tensor:
    value = output["out"] if isinstance(output, dict) and "out" in output else output
    if isinstance(value, list | tuple) and value:
        value = value[0]
    if not isinstance(value, torch.Tensor) and isinstance(getattr(value, "logits", None), torch.Tensor):
        value = value.logits
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        raise TypeError(
            f"SegmentationClass needs (N, K, H, W) class scores (or a dict with 'out'); the model returned "
            f"{describe_output(output)}"
        )
    return value


class SegmentationClass(Target):
    """The logits of class ``c`` summed over a mask of pixels (pytorch-grad-cam's
    ``SemanticSegmentationTarget``).

    Args:
        c: the segmentation class.
        mask: which pixels count, bool or float, tensor or numpy, (H, W) for every image or (N, H, W) per
            image, at the output's resolution. Default None: the pixels predicted as class ``c`` on the
            unperturbed image (fixed once, so perturbed inputs are scored over the same pixels).
    """

    def __init__(self, c: int, mask: Any = None) -> None:
        self.c = _check_class(c)
        self.mask = None if mask is None else _as_mask(mask)
        self.name = f"segmentation class {self.c}" + ("" if mask is None else " (masked)")

    def __call__(self, output: Any) -> torch.Tensor:
        logits = _segmentation_logits(output)
        if self.c >= logits.shape[1]:
            raise ValueError(
                f"segmentation class {self.c} out of range: the model scores {logits.shape[1]} classes "
                f"(0..{logits.shape[1] - 1})"
            )
        if self.mask is None:
            raise RuntimeError("the predicted mask is only known after prepare()")
        mask = self.mask.to(device=logits.device, dtype=logits.dtype)
        if mask.shape[-2:] != logits.shape[-2:]:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not match the output's {tuple(logits.shape[-2:])} "
                "pixels; pass a mask at the output's resolution"
            )
        if mask.ndim == 3 and mask.shape[0] not in (1, logits.shape[0]):
            raise ValueError(f"mask holds {mask.shape[0]} masks for {logits.shape[0]} images")
        return (logits[:, self.c] * mask).flatten(1).sum(dim=1)

    def prepare(self, output: Any, run: Callable[[torch.Tensor], Any]) -> SegmentationClass:
        logits = _segmentation_logits(output)
        if self.c >= logits.shape[1]:
            raise ValueError(
                f"segmentation class {self.c} out of range: the model scores {logits.shape[1]} classes "
                f"(0..{logits.shape[1] - 1})"
            )
        prepared = SegmentationClass(self.c)
        prepared.name = self.name
        if self.mask is None:
            prepared.mask = (logits.detach().argmax(dim=1) == self.c).float()  # (N, H, W)
        else:
            prepared.mask = self.mask
        return prepared

    def rows(self, index: torch.Tensor) -> SegmentationClass:
        if self.mask is None or self.mask.ndim == 2 or self.mask.shape[0] == 1:
            return self
        sliced = SegmentationClass(self.c)
        sliced.name = self.name
        sliced.mask = self.mask[index.to(self.mask.device)]
        return sliced


def _as_mask(mask: Any) -> torch.Tensor:
    m = torch.as_tensor(mask)
    if m.ndim not in (2, 3):
        raise ValueError(f"mask must be (H, W) or (N, H, W); got shape {tuple(m.shape)}")
    if m.is_complex():
        raise TypeError("mask must be bool or real-valued")
    m = m.float()
    if not bool(torch.isfinite(m).all()):
        raise ValueError("mask contains NaN or infinite values")
    return m


# -- detection ----------------------------------------------------------------------------------------------
class DetectionBox(Target):
    """The score of the detection of class ``label`` that best overlaps ``box``; 0 when no detection of
    that label overlaps it by at least ``iou``.

    For torchvision-style detectors, whose output is one dict per image with "boxes" (M, 4) in x0, y0, x1,
    y1 pixels, "labels" (M,) and "scores" (M,). pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` differs in
    two ways: it takes the best-overlapping detection of *any* label and then requires the label to match
    (so a better-overlapping detection of another class hides the one asked for), and it adds the IoU to the
    score (so the explanation also rewards the box's position). Here the score is the detector's own
    confidence for that object, nothing else.

    Args:
        box: (4,) x0, y0, x1, y1 in the input's pixels, or (N, 4) one per image.
        label: the class of the detection.
        iou: the least intersection over union with ``box``. Default 0.5.
    """

    def __init__(self, box: Any, label: int, iou: float = 0.5) -> None:
        b = torch.as_tensor(box, dtype=torch.float32)
        if b.ndim == 1:
            b = b.view(1, 4) if b.numel() == 4 else b
        if b.ndim != 2 or b.shape[-1] != 4 or not bool(torch.isfinite(b).all()):
            raise ValueError(f"box must be (x0, y0, x1, y1) or (N, 4) finite numbers; got {box!r}")
        if bool((b[:, 2] <= b[:, 0]).any() | (b[:, 3] <= b[:, 1]).any()):
            raise ValueError(f"box must have x1 > x0 and y1 > y0 (x0, y0, x1, y1); got {b.tolist()}")
        if isinstance(iou, bool) or not isinstance(iou, int | float) or not 0 < iou <= 1:
            raise ValueError(f"iou must be a number in (0, 1]; got {iou!r}")
        self.box = b
        self.label = _check_class(label)
        self.iou = float(iou)
        self.name = f"detection of class {self.label} at {[round(v) for v in b[0].tolist()]}"

    def __call__(self, output: Any) -> torch.Tensor:
        from torchvision.ops import box_iou

        if not isinstance(output, list | tuple) or not all(isinstance(d, dict) for d in output):
            raise TypeError(
                f"DetectionBox needs a list of detection dicts (boxes, labels, scores); the model returned "
                f"{describe_output(output)}"
            )
        scores = []
        for i, det in enumerate(output):
            boxes, labels, confidence = det["boxes"], det["labels"], det["scores"]
            box = self.box[i if self.box.shape[0] > 1 else 0].to(boxes.device, boxes.dtype)
            best = confidence.sum() * 0  # no match: 0, still part of the graph (the map is then all zero)
            mine = labels == self.label
            if bool(mine.any()):
                overlap = box_iou(box.view(1, 4), boxes[mine])[0]
                ok = overlap >= self.iou
                if bool(ok.any()):
                    best = confidence[mine][ok][overlap[ok].argmax()]
            scores.append(best)
        return torch.stack(scores)

    def rows(self, index: torch.Tensor) -> DetectionBox:
        if self.box.shape[0] == 1:
            return self
        sliced = DetectionBox(self.box[index.cpu()], self.label, self.iou)
        sliced.name = self.name
        return sliced


# -- embeddings ---------------------------------------------------------------------------------------------
class Similarity(Target):
    """The cosine similarity of the output embedding (N, D) to a reference: an embedding (D,) or (N, D), or
    an image (C, H, W) / (1, C, H, W) preprocessed like the inputs, which the model embeds once per call.
    For retrieval models and CLIP-like image encoders: "which pixels make this image look like that one"."""

    def __init__(self, reference: Any) -> None:
        r = torch.as_tensor(reference)
        if not r.is_floating_point() or not bool(torch.isfinite(r).all()):
            raise ValueError("reference must be a finite float embedding or image")
        if r.ndim not in (1, 2, 3, 4):
            raise ValueError(
                f"reference must be an embedding (D,) / (N, D) or an image; got {tuple(r.shape)}"
            )
        self.reference = r
        self.embedding: torch.Tensor | None = r if r.ndim <= 2 else None
        self.name = "similarity to the reference"

    def __call__(self, output: Any) -> torch.Tensor:
        if self.embedding is None:
            raise RuntimeError("the reference image is only embedded after prepare()")
        out = _embedding(output)
        ref = self.embedding.to(out.device, out.dtype)
        if ref.shape[-1] != out.shape[-1]:
            raise ValueError(
                f"reference embedding has {ref.shape[-1]} dimensions, the output {out.shape[-1]}"
            )
        return torch.nn.functional.cosine_similarity(out, ref.expand_as(out) if ref.ndim == 1 else ref, dim=1)

    def prepare(self, output: Any, run: Callable[[torch.Tensor], Any]) -> Similarity:
        if self.embedding is not None:
            return self
        image = self.reference if self.reference.ndim == 4 else self.reference.unsqueeze(0)
        with torch.no_grad():
            embedded = _embedding(run(image)).detach()[0]
        prepared = Similarity(embedded)
        prepared.name = self.name
        return prepared

    def rows(self, index: torch.Tensor) -> Similarity:
        if self.embedding is None or self.embedding.ndim == 1 or self.embedding.shape[0] == 1:
            return self
        sliced = Similarity(self.embedding[index.to(self.embedding.device)])
        sliced.name = self.name
        return sliced


def _embedding(output: Any) -> torch.Tensor:
    value = output
    for attr in ("image_embeds", "pooler_output"):
        if not isinstance(value, torch.Tensor) and isinstance(getattr(value, attr, None), torch.Tensor):
            value = getattr(value, attr)
    if isinstance(value, list | tuple) and value and isinstance(value[0], torch.Tensor):
        value = value[0]
    if not isinstance(value, torch.Tensor) or value.ndim != 2:
        raise TypeError(f"Similarity needs (N, D) embeddings; the model returned {describe_output(output)}")
    return value.float()


# -- from what users pass -----------------------------------------------------------------------------------
def as_target(target: object, n: int) -> Target:
    """The :class:`Target` for a ``target=`` argument and ``n`` images (see the module doc).

    Raises:
        TypeError: not None, an int, a sequence of ints, an integer tensor/array, a Target or a callable.
        ValueError: a negative or absurdly large class index, or the wrong number of them for ``n`` images.
    """
    from camwidget.engine.validation import check_target_values

    if isinstance(target, Target):
        return target
    if callable(target) and not isinstance(target, type):
        return _Callable(target)
    return ClassIndex(check_target_values(target, n))  # type: ignore[arg-type]


def check_scores(scores: object, n: int, what: str = "the target") -> torch.Tensor:
    """``scores`` if it is a finite float (n,) tensor (a (n, 1) or 0-d one for n = 1 is accepted), else a
    ValueError/TypeError that names the problem."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"{what} must return a torch.Tensor of one score per image; got {type(scores).__name__}"
        )
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.ndim == 0 and n == 1:
        scores = scores.view(1)
    if scores.ndim != 1 or scores.shape[0] != n:
        raise ValueError(f"{what} must return one score per image, shape ({n},); got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"{what} must return float scores (differentiable); got {scores.dtype}")
    if not bool(torch.isfinite(scores.detach()).all()):
        raise ValueError(f"{what} returned NaN or infinite scores: {scores.detach().flatten()[:4].tolist()}")
    return scores


# -- what an output holds, for readers that show it (the widget's class selector) ------------------------
def output_kind(output: object) -> str:
    """What a model's output holds, as this module reads it:

    - ``"logits"``: (N, K) class scores (a tensor, the first of a tuple/list, ``.logits``; see
      :func:`as_logits`);
    - ``"segmentation"``: (N, K, H, W) per-pixel class scores (a tensor, ``{"out": ...}``, the first of a
      tuple/list, ``.logits``; see :func:`segmentation_scores`);
    - ``"detections"``: a list of torchvision-style detection dicts (``boxes``, ``labels``, ``scores``; see
      :func:`detections`);
    - ``"other"``: anything else (explained with a callable target).
    """
    try:
        as_logits(output)
        return "logits"
    except TypeError:
        pass
    try:
        _segmentation_logits(output)
        return "segmentation"
    except TypeError:
        pass
    try:
        detections(output)
        return "detections"
    except TypeError:
        return "other"


def segmentation_scores(output: object) -> torch.Tensor:
    """The (N, K, H, W) per-pixel class scores in a segmentation model's output (the tensor itself, a
    dict's ``"out"``, the first element of a tuple or list, or ``.logits``), as :class:`SegmentationClass`
    reads them.

    Raises:
        TypeError: the output holds no (N, K, H, W) tensor.
    """
    return _segmentation_logits(output)


def detections(output: object) -> list[dict[str, torch.Tensor]]:
    """The detections in a detector's output, one dict per image with ``"boxes"`` (M, 4) x0, y0, x1, y1 in
    input pixels, ``"labels"`` (M,) and ``"scores"`` (M,), as :class:`DetectionBox` reads them.

    Raises:
        TypeError: the output is not a list/tuple of such dicts.
    """
    keys = ("boxes", "labels", "scores")
    if (
        isinstance(output, list | tuple)
        and output
        and all(isinstance(d, dict) and all(isinstance(d.get(k), torch.Tensor) for k in keys) for d in output)
    ):
        return list(output)
    raise TypeError(
        f"detections are a list of dicts with 'boxes', 'labels' and 'scores'; the model returned "
        f"{describe_output(output)}"
    )
