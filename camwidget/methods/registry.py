"""Method names -> method classes; ``METHODS`` lists the names users pass as ``method=``."""

from __future__ import annotations

from camwidget.methods.ablation import AblationCAM
from camwidget.methods.base import CamMethod
from camwidget.methods.cam import CAM
from camwidget.methods.eigen import EigenCAM
from camwidget.methods.fem import FEM
from camwidget.methods.finer import FinerCAM
from camwidget.methods.fullgrad import FullGrad
from camwidget.methods.gradient import (
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from camwidget.methods.kpca import KPCACAM
from camwidget.methods.legrad import LeGrad
from camwidget.methods.opti import OptiCAM
from camwidget.methods.random import RandomCAM
from camwidget.methods.score import ISCAM, SSCAM, ScoreCAM
from camwidget.methods.shapley import ShapleyCAM
from camwidget.methods.smooth_gradcampp import SmoothGradCAMPlusPlus

__all__ = ["METHODS", "METHOD_CLASSES", "get_method", "method_options"]

METHOD_CLASSES: dict[str, type[CamMethod]] = {
    cls.name: cls
    for cls in (
        CAM,
        GradCAM,
        GradCAMPlusPlus,
        HiResCAM,
        XGradCAM,
        LayerCAM,
        ScoreCAM,
        AblationCAM,
        EigenCAM,
        OptiCAM,
        GradCAMElementWise,
        EigenGradCAM,
        FullGrad,
        KPCACAM,
        FEM,
        ShapleyCAM,
        FinerCAM,
        SSCAM,
        ISCAM,
        SmoothGradCAMPlusPlus,
        LeGrad,
        RandomCAM,
    )
}

METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)
"""All method names: cam, gradcam, gradcam++, hirescam, xgradcam, layercam, scorecam, ablationcam,
eigencam, opticam, gradcam-elementwise, eigengradcam, fullgrad, kpcacam, fem, shapleycam, finercam, sscam,
iscam, smoothgradcam++, legrad (vision transformers), randomcam (a random baseline). Each class says how it
is shown (``label``), its paper, whether it needs gradients, whether it is ``interactive`` (one forward and
backward pass per image) and which models it explains (``architecture``)."""


def get_method(name: str) -> type[CamMethod]:
    """The method class called ``name`` (case-insensitive; "grad-cam", "score_cam" spellings accepted).

    Raises:
        TypeError: ``name`` is not a string. ValueError: no such method (the message lists them).
    """
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, one of {', '.join(METHODS)}; got {type(name).__name__}")
    key = name.lower().replace("-", "").replace("_", "").replace("plusplus", "++")
    for method in METHODS:
        if method.replace("-", "") == key:
            return METHOD_CLASSES[method]
    raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")


def method_options() -> set[str]:
    """Every keyword option some method accepts."""
    return {key for cls in METHOD_CLASSES.values() for key in cls.defaults}
