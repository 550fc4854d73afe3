"""On the real, trained SqueezeNet 1.1 (camwidget[demo]): RandomCAM fails the sanity check, every other new
method passes it.

The verdict (:func:`camwidget.metrics.sanity_verdict`) has two halves, with fixed thresholds:

- reproducible: two explanations of the unchanged model agree at Spearman >= 0.9 (a stochastic method given
  no seed draws with two different seeds, so its own noise counts against it);
- dependent on the weights: once the cascade has randomised every module with parameters, from the output
  down to the first convolution (26 modules), the mean |Spearman| with the original map is <= 0.5.

RandomCAM (random weights per draw, pytorch-grad-cam's behaviour) is not a function of the model and the
image: it fails the first half (Spearman about 0 between two draws), although it "decorrelates" perfectly.
The Score-CAM family runs on its highest-variance channels (``channels=``) to keep the 29 explanations
affordable. SS-CAM's noise (std 2 on [0, 1] masks, torchcam's default) needs many samples per channel: two
draws (seeds 1 and 2) agree at mean Spearman 0.61 with 8 samples on 8 channels, 0.84 with 16 on 4, 0.95
with 35 on 4 and 0.96 with 16 on 2 (measured); the last is what runs here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import camwidget
from camwidget.data import sample_image
from camwidget.metrics import RANDOMISED_MAX, REPEAT_MIN, sanity_verdict
from camwidget.models import squeezenet1_1_imagenet

NEW_CNN_METHODS = [
    "gradcam-elementwise", "eigengradcam", "fullgrad", "kpcacam", "fem", "shapleycam", "finercam",
    "sscam", "iscam", "smoothgradcam++", "randomcam",
]  # fmt: skip
OPTIONS = {
    "sscam": {"samples": 16, "channels": 2},
    "iscam": {"samples": 2, "channels": 8},
}


@pytest.fixture(scope="module")
def squeezenet() -> tuple[torch.nn.Module, torch.Tensor]:
    net = squeezenet1_1_imagenet()
    x = torch.stack([net.transform(sample_image(name)) for name in ("chelsea", "coffee")])
    x = F.interpolate(x, size=(96, 96), mode="bilinear", antialias=True)  # features.12: 5x5
    return net.model, x


def test_the_new_methods_are_all_checked() -> None:
    new = [m for m in camwidget.METHODS[10:] if m != "legrad"]  # LeGrad needs a vision transformer
    assert sorted(new) == sorted(NEW_CNN_METHODS)
    assert (REPEAT_MIN, RANDOMISED_MAX) == (0.9, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW_CNN_METHODS)
def test_randomcam_fails_the_sanity_check_and_the_others_pass(squeezenet, method: str) -> None:
    model, x = squeezenet
    verdict = sanity_verdict(model, x, method=method, layer="features.12", **OPTIONS.get(method, {}))
    assert verdict.depth == 26
    if method == "randomcam":
        assert not verdict.passed and verdict.repeat < 0.5, verdict.reason
        assert verdict.reason.startswith("not reproducible")
    else:
        assert verdict.passed, f"{method}: {verdict.reason}"
