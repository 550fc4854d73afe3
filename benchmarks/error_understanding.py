"""The Score-CAM seed's error-understanding benchmark on camwidget's bundled models and sample photos.

"Less is More" (Chen et al., ICLR 2024) asks, on images a model gets wrong: does the map find the evidence
for the *true* class? This script runs it where this project can, offline: the two bundled ImageNet models
(SqueezeNet 1.1 from ``ndf``, EfficientNet-Lite0) on the sample photos that have an ImageNet class
(:data:`camwidget.data.SAMPLE_LABELS`), keeping the images each model gets wrong. Each image is resized whole
to 224×224 (no crop, as the benchmark does), and each method's map is made twice: for the true class and for
the wrong prediction (the paper's Score-CAM runs explained the prediction, its baselines the true class).
The figures are :func:`camwidget.metrics.error_understanding`'s, through
``compare_methods(..., labels=...)``.

Seven photos are no CUB-200-2011 test set (385 misclassified images for ResNet-101): the numbers show the
protocol running on real mistakes, not figures comparable with the paper's 0.2510 / 0.1073.

Run ``python benchmarks/error_understanding.py`` (a few minutes on a 2-core CPU). Writes
``benchmarks/results/error_understanding.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchvision.transforms import functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

from camwidget.data import SAMPLE_LABELS, sample_image
from camwidget.metrics import compare_methods
from camwidget.models import efficientnet_lite0_imagenet, squeezenet1_1_imagenet

METHODS = ("gradcam", "hirescam", "layercam", "scorecam")
# (loader, layer, Score-CAM channels): EfficientNet-Lite0's last layer has 1280 maps; its Score-CAM keeps
# the 256 highest-variance ones (Faster Score-CAM) to stay within minutes on a 2-core CPU.
MODELS = {
    "squeezenet1_1": (squeezenet1_1_imagenet, "features.12", None),
    "efficientnet_lite0": (efficientnet_lite0_imagenet, None, 256),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=C.RESULTS / "error_understanding.md")
    a = p.parse_args()
    lines = [
        "# Error understanding on the bundled models (CPU)",
        "",
        f"- machine: {C.machine()}; {time.strftime('%Y-%m-%d %H:%M')}",
        "- command: `python benchmarks/error_understanding.py`",
        "- images: the sample photos with an ImageNet class (camwidget.data.SAMPLE_LABELS) that the model "
        "gets wrong, resized whole to 224×224; steps 25; maps for the true class and for the prediction",
        "",
    ]
    for model_name, (make, layer, channels) in MODELS.items():
        net = make()
        names = [n for n, label in SAMPLE_LABELS.items() if label is not None]
        x = torch.stack(
            [
                TF.normalize(TF.to_tensor(TF.resize(sample_image(n), [224, 224])), net.mean, net.std)
                for n in names
            ]
        )
        labels = torch.tensor([SAMPLE_LABELS[n] for n in names])
        with torch.no_grad():
            predicted = net.model(x).argmax(1)
        wrong = [
            f"{n} ({net.class_names[int(t)]} → {net.class_names[int(q)]})"
            for n, t, q in zip(names, labels, predicted, strict=True)
            if t != q
        ]
        start = time.perf_counter()
        table = compare_methods(
            net.model,
            x,
            methods=list(METHODS),
            layer=layer,
            labels=labels,
            metrics=["sparseness"],
            mean=net.mean,
            std=net.std,
            warmup=False,
            channels=channels,
        )
        seconds = time.perf_counter() - start
        lines += [
            f"## {model_name} at {layer or 'its default layer'}"
            + (f" (Score-CAM on the {channels} highest-variance maps)" if channels else ""),
            "",
            f"{len(wrong)} of {len(names)} photos wrong: {', '.join(wrong) or 'none'}. ({seconds:.0f} s)",
            "",
            "| method | map made for | images | avg. highest conf. @25% | @50% | @100% | area at max @100% "
            "| insertion AUC |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in table.errors:
            high = [row[f"average_highest_confidence@{p}%"] for p in (25, 50, 100)]
            lines.append(
                f"| {row['method']} | {row['explained']} class | {row['images']} "
                f"| {high[0]:.4f} | {high[1]:.4f} | {high[2]:.4f} | {row['area_at_highest@100%']:.2f} "
                f"| {row['insertion_auc']:.4f} |"
            )
        lines.append("")
    report = "\n".join(lines)
    print(report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report)


if __name__ == "__main__":
    main()
