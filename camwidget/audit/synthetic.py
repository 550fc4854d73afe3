"""A dataset with a planted shortcut, and a small CNN that learns it: for teaching and testing audits.

:func:`watermark_dataset` draws small synthetic images of ``num_classes`` textured objects on noise.
One class (``watermark_class``) carries, with probability ``p_watermark``, a bright square "watermark" in
a corner -- the kind of artefact (a copyright stamp, a hospital's scanner tag) that correlates with a
label by accident. The objects themselves are faint, so a classifier trained on it takes the shortcut,
and an audit should find it. :func:`train_classifier` trains :class:`SmallCNN` on it in a few seconds on a
laptop CPU.

Everything is deterministic for a given ``seed``; nothing is downloaded.

Example::

    from camwidget.audit.synthetic import SmallCNN, train_classifier, watermark_dataset

    train = watermark_dataset(600, seed=0)
    model = train_classifier(SmallCNN(num_classes=3), train, epochs=6)
    report = camwidget.audit(model, watermark_dataset(300, seed=1), regions=CORNERS, store=":memory:")
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

__all__ = [
    "CLASS_NAMES",
    "SmallCNN",
    "WatermarkDataset",
    "corner_regions",
    "train_classifier",
    "watermark_dataset",
]

WATERMARK_VALUE = 2.0
"""Pixel value of the watermark square (the background is zero-mean noise)."""

CLASS_NAMES: tuple[str, ...] = ("h_stripes", "v_stripes", "checks", "dots", "waves", "rings")
"""Names of the synthetic object classes, in label order (the first ``num_classes`` are used)."""


def corner_regions(size: int = 32, corner: int = 8) -> dict[str, tuple[int, int, int, int]]:
    """The four ``corner`` x ``corner`` corner boxes of a ``size`` x ``size`` image, as (x0, y0, x1, y1).

    Returns:
        ``{"top_left": ..., "top_right": ..., "bottom_left": ..., "bottom_right": ...}``, ready to pass as
        ``regions=`` to :func:`camwidget.audit`.
    """
    s, c = int(size), int(corner)
    return {
        "top_left": (0, 0, c, c),
        "top_right": (s - c, 0, s, c),
        "bottom_left": (0, s - c, c, s),
        "bottom_right": (s - c, s - c, s, s),
    }


def _texture(kind: int, size: int, phase: float, freq: float) -> torch.Tensor:
    """(size, size) pattern in [-1, 1] for object class ``kind``."""
    r = torch.arange(size, dtype=torch.float32)
    y, x = torch.meshgrid(r, r, indexing="ij")
    w = 2 * math.pi * freq
    k = kind % len(CLASS_NAMES)
    if k == 0:  # horizontal stripes
        t = torch.sin(w * y + phase)
    elif k == 1:  # vertical stripes
        t = torch.sin(w * x + phase)
    elif k == 2:  # checkerboard
        t = torch.sign(torch.sin(w * x + phase) * torch.sin(w * y + phase))
    elif k == 3:  # dots
        t = torch.sin(w * x + phase) * torch.sin(w * y + phase)
        t = (t > 0.5).float() * 2 - 1
    elif k == 4:  # diagonal waves
        t = torch.sin(w * (x + y) / 1.4 + phase)
    else:  # concentric rings
        c = (size - 1) / 2
        t = torch.sin(w * torch.sqrt((x - c) ** 2 + (y - c) ** 2) + phase)
    return t


class WatermarkDataset(Dataset):
    """Synthetic (3, size, size) images with a planted watermark shortcut; see :func:`watermark_dataset`.

    Items are ``(image, label, box)``: a float32 image roughly in [-1, 1] (zero mean; display it as
    ``image * 0.5 + 0.5``), an int label, and the object's box ``(x0, y0, x1, y1)`` in pixels (a float32
    tensor of 4). Attributes ``images`` (N, 3, size, size), ``labels`` (N,), ``boxes`` (N, 4),
    ``watermarked`` (N,) bool, ``watermark_box`` (x0, y0, x1, y1) and ``watermark_value`` (the
    watermark's pixel value) hold everything.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        boxes: torch.Tensor,
        watermarked: torch.Tensor,
        class_names: Sequence[str],
        watermark_box: tuple[int, int, int, int],
    ) -> None:
        self.images = images
        self.labels = labels
        self.boxes = boxes
        self.watermarked = watermarked
        self.class_names = list(class_names)
        self.classes = self.class_names
        self.watermark_box = watermark_box
        self.watermark_value = WATERMARK_VALUE
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        return self.images[index], int(self.labels[index]), self.boxes[index]


def watermark_dataset(
    n: int = 600,
    *,
    size: int = 32,
    num_classes: int = 3,
    watermark_class: int = 0,
    p_watermark: float = 0.9,
    p_other: float = 0.0,
    watermark: int = 5,
    corner: str = "top_left",
    object_strength: float = 0.35,
    noise: float = 0.35,
    seed: int = 0,
) -> WatermarkDataset:
    """A balanced synthetic dataset whose ``watermark_class`` mostly carries a corner watermark.

    Each image is Gaussian noise (std ``noise``) with one faint textured object (a square of side 40-55%
    of the image at a random position, contrast ``object_strength``) whose texture tells the class
    (horizontal or vertical stripes, checks, ...). Images of ``watermark_class`` get a bright
    ``watermark`` x ``watermark`` square in ``corner`` with probability ``p_watermark``, the other
    classes with probability ``p_other``.

    Args:
        n: number of images (labels cycle through the classes, so classes are balanced).
        size: image side in pixels (>= 16). Default 32.
        num_classes: 2..6 classes. Default 3.
        watermark_class: the class that carries the shortcut. Default 0.
        p_watermark, p_other: watermark probability for that class and for the others (0..1).
        watermark: side of the watermark square in pixels. Default 5.
        corner: "top_left", "top_right", "bottom_left" or "bottom_right".
        object_strength: contrast of the true signal; lower makes the shortcut more tempting.
        noise: standard deviation of the background noise.
        seed: random seed; the same arguments always give the same images.

    Returns:
        A :class:`WatermarkDataset` of ``n`` items ``(image (3, size, size) float32, label int,
        box (4,) float32 (x0, y0, x1, y1))``.
    """
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be between 2 and {len(CLASS_NAMES)}, got {num_classes}")
    if not 0 <= watermark_class < num_classes:
        raise ValueError(f"watermark_class must be in 0..{num_classes - 1}, got {watermark_class}")
    if size < 16 or not 1 <= watermark < size // 2:
        raise ValueError(
            f"need size >= 16 and 1 <= watermark < size/2; got size={size}, watermark={watermark}"
        )
    corners = corner_regions(size, watermark)
    if corner not in corners:
        raise ValueError(f"corner must be one of {', '.join(corners)}; got {corner!r}")
    for name, p in (("p_watermark", p_watermark), ("p_other", p_other)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    g = torch.Generator().manual_seed(int(seed))
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    images = noise * torch.randn(n, 3, size, size, generator=g)
    boxes = torch.zeros(n, 4)
    tint = torch.tensor([[1.0, 0.6, 0.3], [0.3, 1.0, 0.6], [0.6, 0.3, 1.0]])
    for i in range(n):
        side = int(size * (0.40 + 0.15 * float(torch.rand(1, generator=g))))
        x0 = int(torch.randint(0, size - side + 1, (1,), generator=g))
        y0 = int(torch.randint(0, size - side + 1, (1,), generator=g))
        phase = float(torch.rand(1, generator=g)) * 2 * math.pi
        freq = 0.18 + 0.06 * float(torch.rand(1, generator=g))
        pattern = _texture(int(labels[i]), side, phase, freq)
        color = tint[int(torch.randint(0, 3, (1,), generator=g))].view(3, 1, 1)
        images[i, :, y0 : y0 + side, x0 : x0 + side] += object_strength * pattern * color
        boxes[i] = torch.tensor([x0, y0, x0 + side, y0 + side], dtype=torch.float32)
    p = torch.where(labels == watermark_class, p_watermark, p_other)
    marked = torch.rand(n, generator=g) < p
    wx0, wy0, wx1, wy1 = corners[corner]
    images[marked, :, wy0:wy1, wx0:wx1] = WATERMARK_VALUE
    return WatermarkDataset(
        images.float(), labels, boxes, marked, CLASS_NAMES[:num_classes], (wx0, wy0, wx1, wy1)
    )


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks, global average pooling, a linear head: (N, 3, H, W) -> (N, num_classes).

    The last conv block (``features.6``, ``width`` channels at 1/4 of the input resolution) is the
    natural CAM layer. About 7k parameters at the default width (16). Weights are initialised from
    ``seed`` (None: from torch's global generator), so the same seed always gives the same model.
    """

    def __init__(self, num_classes: int = 3, width: int = 16, *, seed: int | None = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self._build(num_classes, width)

    def _build(self, num_classes: int, width: int) -> None:
        self.features = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width // 2, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def train_classifier(
    model: nn.Module,
    dataset: WatermarkDataset,
    *,
    epochs: int = 6,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` on ``dataset`` with Adam and cross-entropy; returns it in eval mode.

    Deterministic for a given ``seed`` on one machine (CPU). A few seconds for 600 32x32 images.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all, y_all = dataset.images, dataset.labels
    model.train()
    for _ in range(int(epochs)):
        order = torch.randperm(len(dataset), generator=g)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
