"""Faithfulness and localisation metrics for saliency maps.

- :func:`insertion_deletion` -- RISE's insertion and deletion curves and AUCs (:class:`Curves`), with
  :func:`perturbed_image` for the image scored at any step.

Every function leaves the model exactly as it came and validates its arguments before any forward pass.
"""

from camwidget.metrics.insertion_deletion import (
    SUBSTRATES,
    Curves,
    auc,
    blur_images,
    insertion_deletion,
    perturbed_image,
    rise_blur_kernel,
    saliency_ranks,
)

__all__ = [
    "SUBSTRATES",
    "Curves",
    "auc",
    "blur_images",
    "insertion_deletion",
    "perturbed_image",
    "rise_blur_kernel",
    "saliency_ranks",
]
