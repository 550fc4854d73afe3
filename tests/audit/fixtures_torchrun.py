"""Model and dataset factories shared by the in-process tests and ``torchrun -m camwidget.audit``."""

from __future__ import annotations

from camwidget.audit.synthetic import SmallCNN, watermark_dataset

N_IMAGES = 90


def model() -> SmallCNN:
    """An untrained, seeded SmallCNN: the same weights in every process."""
    return SmallCNN(num_classes=3, seed=0).eval()


def dataset():
    """90 synthetic 32x32 images with object boxes."""
    return watermark_dataset(N_IMAGES, seed=3)
