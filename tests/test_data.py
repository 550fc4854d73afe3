"""Sample photos shipped inside scikit-image, scikit-learn and matplotlib."""

from __future__ import annotations

import sys

import pytest

from camwidget import data

SIZES = {
    "chelsea": (451, 300),
    "coffee": (600, 400),
    "astronaut": (512, 512),
    "rocket": (640, 427),
    "china": (640, 427),
    "flower": (640, 427),
    "grace_hopper": (512, 600),
}


def test_all_samples_load_as_rgb():
    images = data.sample_images()
    assert tuple(images) == data.SAMPLE_NAMES == tuple(SIZES)
    for name, image in images.items():
        assert image.mode == "RGB", name
        assert image.size == SIZES[name], name
        assert image.getextrema()[0][1] > 100, f"{name} looks blank"


def test_subset_keeps_requested_order():
    assert list(data.sample_images(["coffee", "chelsea"])) == ["coffee", "chelsea"]
    assert list(data.sample_images("coffee")) == ["coffee"]
    assert data.sample_image("grace_hopper").size == SIZES["grace_hopper"]


def test_unknown_name_lists_available_names():
    with pytest.raises(ValueError, match="unknown sample image 'kitten'; available: chelsea, coffee"):
        data.sample_image("kitten")
    with pytest.raises(ValueError, match=r"'kitten'.*available:.*grace_hopper"):
        data.sample_images(["chelsea", "kitten"])


@pytest.mark.parametrize(("name", "module"), [("chelsea", "skimage"), ("china", "sklearn")])
def test_missing_extra_names_the_pip_command(name, module, monkeypatch):
    for mod in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"pip install 'camwidget\[demo\]'"):
        data.sample_image(name)
