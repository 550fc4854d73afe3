"""``python -m camwidget.audit``: one-line errors listing choices, a help that teaches, Pretrained models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camwidget.audit.__main__ import main
from camwidget.audit.report import AuditReport
from camwidget.methods.registry import METHODS

FIXTURES = Path(__file__).with_name("fixtures_torchrun.py")


def cli(capsys, *args):
    """Run the command line in this process: (exit status, stdout, stderr lines)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse exits
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


BASE = ["--model", f"{FIXTURES}:model", "--dataset", f"{FIXTURES}:dataset"]


def test_missing_folder_says_so(capsys, tmp_path):
    code, _, err = cli(capsys, "--model", f"{FIXTURES}:model", "--dataset", tmp_path / "no_such_folder")
    assert code == 2 and len(err) == 1, err
    assert "no_such_folder" in err[0] and "no such folder" in err[0]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("args", "needle", "choices"),
    [
        (["--method", "nocam"], "nocam", ["hirescam", "scorecam", "gradcam"]),
        (["--layer", "features.99"], "features.99", ["features.6"]),
        (["--metrics", "energy,iou"], "iou", ["energy", "insertion", "deletion"]),
    ],
)
def test_unknown_choices_are_one_line_errors_listing_the_valid_ones(capsys, tmp_path, args, needle, choices):
    store = tmp_path / "x.sqlite"
    code, out, err = cli(capsys, *BASE, "--store", store, "--no-progress", *args)
    assert code == 2, (out, err)
    assert len(err) <= 2 and "Traceback" not in "\n".join(err), err  # argparse: usage + one error line
    last = err[-1]
    assert needle in last and all(c in last for c in choices), last
    assert not store.exists() or AuditReport.load(store).settings is not None


def test_help_documents_preprocessing_regions_methods_and_an_example(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "resize 256" in flat and "centre crop 224" in flat and "ImageNet" in flat  # preprocessing
    assert "--transform" in flat and "--class-names" in flat
    assert "pixels of the model input" in flat and "x1, y1 exclusive" in flat  # --region's frame
    assert all(m in flat for m in METHODS)
    assert "Example" in out and "torchrun" in out and "camwidget.models:squeezenet1_1_imagenet" in out


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for k in range(2):
            pixels = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    return root


def test_camwidgets_own_pretrained_model_is_accepted(capsys, tmp_path):
    store = tmp_path / "sq.sqlite"
    code, out, err = cli(
        capsys,
        "--model",
        "camwidget.models:squeezenet1_1_imagenet",
        "--dataset",
        _folder(tmp_path),
        "--store",
        store,
        "--no-progress",
        "--thumbnail",
        "0",
    )
    assert code == 0, err
    report = AuditReport.load(store)
    assert len(report) == 4 and report.image_size == (224, 224)
    assert report.class_names[0] == "tench" and len(report.class_names) == 1000  # the model's names
    assert report.layer == "features.12" and "AuditReport" in out
    # The Python API takes the Pretrained too: the same transform, names and normalisation.
    import camwidget
    from camwidget.models import squeezenet1_1_imagenet

    again = camwidget.audit(
        squeezenet1_1_imagenet(), _folder(tmp_path / "py"), store=":memory:", thumbnail=0, progress=False
    )
    assert again.image_size == (224, 224) and again.class_names == report.class_names
    assert again.display["mean"] == [0.485, 0.456, 0.406]


def test_transform_and_class_names_options(capsys, tmp_path):
    module = tmp_path / "prep.py"
    module.write_text(
        "from torchvision import transforms as T\n"
        "def small():\n"
        "    return T.Compose([T.Resize((32, 32)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])\n"
    )
    names = tmp_path / "names.txt"
    names.write_text("h_stripes\nv_stripes\nchecks\n")
    store = tmp_path / "t.sqlite"
    code, _, err = cli(
        capsys,
        "--model",
        f"{FIXTURES}:model",
        "--dataset",
        _folder(tmp_path),
        "--transform",
        f"{module}:small",
        "--class-names",
        names,
        "--store",
        store,
        "--no-progress",
    )
    assert code == 0, err
    report = AuditReport.load(store)
    assert report.image_size == (32, 32) and report.class_names == ["h_stripes", "v_stripes", "checks"]
    assert report.display["mean"] == [0.5, 0.5, 0.5]  # read from the transform's Normalize
    assert "Resize" in json.dumps(report.settings["transform"])
    code, _, err = cli(capsys, *BASE, "--class-names", names.with_name("nope.txt"), "--store", store)
    assert code == 2 and "nope.txt" in err[-1]
