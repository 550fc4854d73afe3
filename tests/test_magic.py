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
