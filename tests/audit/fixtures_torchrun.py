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


class _Slow:
    """``dataset()`` read slowly (50 ms an item), so that a test can interrupt the audit mid-way."""

    def __init__(self):
        self.base = dataset()

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        import time

        time.sleep(0.05)
        return self.base[i]


def slow_dataset():
    """``dataset()`` at 50 ms an item."""
    return _Slow()
