"""Finer-CAM (Zhang et al., CVPR 2025, arXiv:2501.11309): Grad-CAM of the target class against the classes
the model confuses it with.

The score explained is :class:`~camwidget.targets.FinerContrast`: Σ_j p_j·(z_c − α·z_j) / (Σ_j p_j + 1e-9)
over the comparison classes j (by default the three classes whose logits are closest to z_c), with p the
softmax probabilities; the gradient flows through p as well (pytorch-grad-cam's ``FinerCAM`` with its
default Grad-CAM base). Channel weights are the spatial mean of that score's gradient (Grad-CAM). Options:
``alpha`` (1.0) and ``comparisons`` (ranks (1, 2, 3) among the classes sorted by |z_j − z_c|).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camwidget.methods.gradient import GradCAM
from camwidget.targets import ClassIndex, FinerContrast, Target

__all__ = ["FinerCAM"]


class FinerCAM(GradCAM):
    """Finer-CAM: Grad-CAM of :class:`~camwidget.targets.FinerContrast` (needs a class of a classifier)."""

    name = "finercam"
    label = "Finer-CAM"
    paper = "Zhang et al., CVPR 2025 (arXiv:2501.11309)"
    defaults = {"alpha": 1.0, "comparisons": (1, 2, 3)}

    def method_target(self, target: Target, options: Mapping[str, Any]) -> Target:
        if isinstance(target, FinerContrast):
            return target
        if not isinstance(target, ClassIndex):
            raise ValueError(
                f"finercam contrasts a class with the classes most similar to it; the target here is "
                f"{target.name!r}. Use a class index (or Logit) with a model that returns logits"
            )
        return FinerContrast(target, options["alpha"], options["comparisons"])
