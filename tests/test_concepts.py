"""camwidget.concepts: Deep Feature Factorization finds two planted concepts, their maps and classes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camwidget
from camwidget.concepts import Concepts, nmf

SIZE = 24


class TwoConcepts(nn.Module):
    """A 1x1 convolution with 8 channels: channels 0-3 respond to red (R minus the other two), 4-7 to blue,
    each with its own gain; ReLU; global average pooling; a linear head in which class 0 reads the red
    channels, class 1 the blue ones and class 2 a little of both."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 8, 1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.fill_(-0.1)
            for k, gain in enumerate((1.0, 0.7, 1.3, 0.5)):
                conv.weight[k, :, 0, 0] = torch.tensor([1.0, -0.5, -0.5]) * gain
                conv.weight[4 + k, :, 0, 0] = torch.tensor([-0.5, -0.5, 1.0]) * gain
        self.features = nn.Sequential(conv, nn.ReLU())
        self.fc = nn.Linear(8, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[0, :4] = 1.0
            self.fc.weight[1, 4:] = 1.0
            self.fc.weight[2, :] = 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def planted(n: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gray noise images with a red square and a blue square at random places; their (N, H, W) masks."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.05 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    red = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    blue = torch.zeros_like(red)
    for i in range(n):
        ry, rx, by, bx = (int(v) for v in torch.randint(0, SIZE - 7, (4,), generator=g))
        while abs(ry - by) < 8 and abs(rx - bx) < 8:  # no overlap
            by, bx = (int(v) for v in torch.randint(0, SIZE - 7, (2,), generator=g))
        red[i, ry : ry + 7, rx : rx + 7] = True
        blue[i, by : by + 7, bx : bx + 7] = True
    x.permute(0, 2, 3, 1)[red] = torch.tensor([1.0, 0.1, 0.1])
    x.permute(0, 2, 3, 1)[blue] = torch.tensor([0.1, 0.1, 1.0])
    return x, red, blue


def test_two_planted_concepts_are_found_with_their_maps_and_classes() -> None:
    model = TwoConcepts().eval()
    x, red, blue = planted()
    found = camwidget.concepts(model, x, "features", n=2)  # the module is callable
    assert isinstance(found, Concepts) and len(found) == 2
    assert found.maps.shape == (4, 2, SIZE, SIZE) and found.feature_maps.shape == (4, 2, SIZE, SIZE)
    assert found.embeddings.shape == (2, 8) and found.class_scores.shape == (2, 3)
    assert found.error < 0.05  # two non-negative sources: an (almost) exact rank-2 factorisation
    energy = found.maps.sum(dim=(2, 3))  # (N, 2)
    in_red = (found.maps * red[:, None]).sum(dim=(2, 3)) / energy
    in_blue = (found.maps * blue[:, None]).sum(dim=(2, 3)) / energy
    red_concept = int(in_red.mean(0).argmax())
    blue_concept = 1 - red_concept
    assert in_red[:, red_concept].min() > 0.9 and in_blue[:, blue_concept].min() > 0.9
    assert found.classes[red_concept][0] == 0 and found.classes[blue_concept][0] == 1
    assert found.class_scores[red_concept, 0] > 0.5 and found.class_scores[blue_concept, 1] > 0.5
    # the directions: the red concept lives on channels 0-3, the blue one on 4-7
    e = found.embeddings
    assert e[red_concept, :4].sum() > 10 * e[red_concept, 4:].sum().clamp_min(1e-6)
    assert e[blue_concept, 4:].sum() > 10 * e[blue_concept, :4].sum().clamp_min(1e-6)


def test_logit_parts_split_each_logit_among_the_concepts() -> None:
    """Σ_j parts[i, j] + fc(offsets) + bias = the logit, up to the factorisation's residual; the red concept
    carries class 0's logit and the blue one class 1's."""
    model = TwoConcepts().eval()
    x, _, _ = planted()
    found = camwidget.concepts(model, x, "features", n=2)
    with torch.no_grad():
        a = model.features(x)
        logits = model(x)
    offsets = a.transpose(0, 1).flatten(1).amin(dim=1)  # per channel, over every position of every image
    with torch.no_grad():
        base = model.fc(offsets)  # the head on the offsets, with its bias
    for k in (0, 1, 2):
        parts = found.logit_parts([k] * 4)
        assert parts.shape == (4, 2)
        residual = logits[:, k] - base[k] - parts.sum(1)
        assert float(residual.abs().max()) <= 0.05 * float(logits[:, k].abs().max()), k
    in_red = (found.maps * planted()[1][:, None]).sum(dim=(2, 3)).mean(0)
    red_concept = int(in_red.argmax())
    assert found.logit_parts([0] * 4).argmax(1).tolist() == [red_concept] * 4
    assert found.logit_parts([1] * 4).argmax(1).tolist() == [1 - red_concept] * 4
    with pytest.raises(ValueError, match="one class index per image"):
        found.logit_parts([0])
    no_head = camwidget.concepts(model, x, "features.0", n=2)
    assert no_head.logit_weights is None
    with pytest.raises(ValueError, match="no readout to the classes"):
        no_head.logit_parts([0] * 4)


def test_without_a_linear_head_there_are_no_classes_and_bad_arguments_say_so() -> None:
    model = TwoConcepts().eval()
    x, _, _ = planted(2)
    found = camwidget.concepts(model, x, "features.0", n=2)  # before the ReLU: not what the head reads
    assert found.class_scores is None and found.classes == [[], []]
    with pytest.raises(ValueError, match="exceed the layer's 8 channels"):
        camwidget.concepts(model, x, "features", n=9)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        camwidget.concepts(model, x, "features", n=0)
    with pytest.raises(ValueError, match="not found"):
        camwidget.concepts(model, x, "feature", n=2)


def test_nmf_reconstructs_a_non_negative_low_rank_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    w, h = torch.rand(12, 3, generator=g), torch.rand(3, 40, generator=g)
    v = w @ h
    fw, fh = nmf(v, 3, iterations=2000, tol=0)
    assert (fw >= 0).all() and (fh >= 0).all()
    assert float((fw @ fh - v).norm() / v.norm()) < 1e-2
