"""The %cam line magic, driven through a real IPython shell with CamExplorer stubbed out."""

from __future__ import annotations

import pytest
import torch
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import camwidget
from camwidget.magic import USAGE
from camwidget.models import IMAGENET_MEAN, IMAGENET_STD, Pretrained


class FakeExplorer:
    def __init__(self, model, images, **kwargs):
        self.model, self.images, self.kwargs = model, images, kwargs


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "camwidget")
    return ip


@pytest.fixture
def ns(shell, monkeypatch):
    # setitem, not setattr: reading the old value would import the real widget lazily
    monkeypatch.setitem(vars(camwidget), "CamExplorer", FakeExplorer)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    names = {"model": model, "image": object(), "names": ["cat", "tiger cat", "dog"], "prep": str}
    for key, value in names.items():
        monkeypatch.setitem(shell.user_ns, key, value)
    return names


def test_minimal_call_passes_only_what_was_given(shell, ns):
    explorer = shell.run_line_magic("cam", "model image")
    assert isinstance(explorer, FakeExplorer)
    assert explorer.model is ns["model"] and explorer.images is ns["image"]
    assert explorer.kwargs == {}


def test_all_options(shell, ns):
    line = (
        "model image --method hirescam --layer 0 --class 'tiger cat' --methods scorecam, hirescam"
        " --class-names names --preprocess prep --topk 3"
    )
    with pytest.raises(UsageError, match="unrecognized arguments"):  # a space after the comma splits words
        shell.run_line_magic("cam", line)
    explorer = shell.run_line_magic("cam", line.replace(", ", ","))
    assert explorer.kwargs == {
        "method": "hirescam",
        "layer": "0",
        "target": 1,  # resolved against --class-names
        "methods": ["scorecam", "hirescam"],
        "class_names": ns["names"],
        "preprocess": ns["prep"],
        "topk": 3,
    }


def test_class_index_and_unresolved_name(shell, ns):
    assert shell.run_line_magic("cam", "model image --class 281").kwargs["target"] == 281
    # without class names the name is passed through for CamExplorer to resolve
    assert shell.run_line_magic("cam", "model image --class tabby").kwargs["target"] == "tabby"


def test_pretrained_is_unpacked(shell, ns, monkeypatch):
    pretrained = Pretrained(ns["model"], ["a", "b"], str, IMAGENET_MEAN, IMAGENET_STD, "tiny")
    monkeypatch.setitem(shell.user_ns, "demo", pretrained)
    explorer = shell.run_line_magic("cam", "demo image --class B")
    assert explorer.model is ns["model"]
    assert explorer.kwargs == {"class_names": ["a", "b"], "preprocess": str, "target": 1}
    # dotted names work too
    assert shell.run_line_magic("cam", "demo.model image").model is ns["model"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("modle image", "name 'modle' is not defined in the notebook; did you mean 'model'?"),
        ("model imgae", "did you mean 'image'?"),
        ("model image --class 'tigr cat' --class-names names", "no class is called 'tigr cat'. Did you mean"),
        ("names image", "'names' is a list, not a torch.nn.Module"),
        ("model", "the following arguments are required: image"),
        ("model image --colour red", "unrecognized arguments: --colour"),
        ("model image --topk many", "invalid int value"),
        ("model image --topk 0", "--topk must be at least 1"),
        ("model image[0]", "not a variable name"),
        ("model.nope image", "'model' has no attribute 'nope'"),
        ("", "needs a model and an image"),
        ("model 'image", "cannot parse"),
    ],
)
def test_mistakes_are_usage_errors(shell, ns, line, message):
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("cam", line)
    assert message in str(info.value)


def test_usage_error_is_shown_without_traceback(shell, ns, capsys):
    shell.run_cell("%cam modle image")
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "did you mean 'model'?" in output
    assert "Traceback" not in output


def test_help_prints_usage(shell, ns, capsys):
    assert shell.run_line_magic("cam", "--help") is None
    out = capsys.readouterr().out
    assert out.strip() == USAGE.strip()
    for option in ("--method", "--layer", "--class", "--methods", "model", "image"):
        assert option in out


def test_target_names_a_variable_holding_a_target_or_a_callable(shell, ns, monkeypatch):
    from camwidget.targets import Sigmoid

    def score(out):
        return out[:, 1]

    monkeypatch.setitem(shell.user_ns, "tgt", Sigmoid(2))
    monkeypatch.setitem(shell.user_ns, "fn", score)
    assert shell.run_line_magic("cam", "model image --target tgt").kwargs == {"target": shell.user_ns["tgt"]}
    assert shell.run_line_magic("cam", "model image --target fn").kwargs == {"target": score}
    with pytest.raises(UsageError, match=r"name 'tgg' is not defined in the notebook; did you mean 'tgt'"):
        shell.run_line_magic("cam", "model image --target tgg")
    with pytest.raises(UsageError, match=r"--target 'names' is a list, not a camwidget\.targets target"):
        shell.run_line_magic("cam", "model image --target names")
    with pytest.raises(UsageError, match="give --class or --target, not both"):
        shell.run_line_magic("cam", "model image --class 1 --target fn")


def test_target_reaches_a_real_explorer(shell, monkeypatch):
    """The magic's --target through the real CamExplorer: the selector shows the callable's name."""
    from tests.widget.conftest import TinyNet, random_images, small_preprocess

    torch.manual_seed(0)

    def logit_gap(out):
        return out[:, 3] - out[:, 1]

    for key, value in {"net": TinyNet().eval(), "pics": random_images(1), "gap": logit_gap}.items():
        monkeypatch.setitem(shell.user_ns, key, value)
    monkeypatch.setitem(shell.user_ns, "prep", small_preprocess())
    w = shell.run_line_magic("cam", "net pics --target gap --preprocess prep")
    try:
        assert w.wait(30) and w.error == ""
        assert w.choices["kind"] == "target" and w.top_classes[0]["name"] == "logit_gap"
        assert w.maps[0]["class_name"] == "logit_gap"
    finally:
        w.close()
