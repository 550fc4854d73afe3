"""MapKey's two codecs (Python here, js/src/map_key.js in the browser) agree on every key, selection and
what-if mask id."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from camwidget.widget.map_key import KEY_FIELDS, MapKey, Selection, mask_id

ROOT = Path(__file__).resolve().parents[2]

KEYS = [
    MapKey(0, "hirescam", "features.12", 281),
    MapKey(12, "gradcam++", "layer4.1", 0),
    MapKey(3, "scorecam", "blocks.11.norm1", 999),
    MapKey(1, "eigencam", "übung.conv", 7),  # non-ASCII module names spell the same on both sides
    MapKey(2, "hirescam", "features", 3, "blur:0123456789abcdef"),  # a painted image
    MapKey(0, "gradcam", "layer4", 281, "", "aug"),  # smoothed
    MapKey(0, "gradcam", "layer4", 281, "", "eigen", ("layer3", "layer2.1")),  # smoothed and fused
]
SELECTIONS = [
    Selection(0, "hirescam", "features", 5),
    Selection(2, "hirescam", "features", 5, "method", "scorecam", 9),
    Selection(2, "hirescam", "features", 5, "class", "scorecam", 9),
    Selection(2, "hirescam", "features", -1, "method", "scorecam", 9),
    Selection(2, "hirescam", "features", 5, "class", "scorecam", -1),
    Selection(2, "hirescam", "features", 5, "class", "scorecam", 9, "black:00ff00ff00ff00ff"),
    Selection(2, "hirescam", "features", 5, "method", "gradcam", 9, "", "eigen", ("features.3",)),
    # the chosen layer and repeats are left out of the further layers
    Selection(
        2, "hirescam", "features", 5, "off", "", -1, "", "aug", ("features.1", "features", "features.1")
    ),
]


def masks() -> list[np.ndarray]:
    """What-if masks: none painted, one pixel, a box, a random scribble, an odd pixel count."""
    rng = np.random.default_rng(0)
    box = np.zeros((24, 32), bool)
    box[5:12, 7:20] = True
    one = np.zeros((24, 32), bool)
    one[23, 31] = True
    return [np.zeros((24, 32), bool), one, box, rng.random((24, 32)) < 0.3, rng.random((7, 9)) < 0.5]


def test_encode_decode_round_trip() -> None:
    for key in KEYS:
        text = key.encode()
        assert MapKey.decode(text) == key
        fields = [
            key.image,
            key.method,
            key.layer,
            key.target,
            key.mask,
            key.smoothing,
            list(key.extra_layers),
        ]
        assert json.loads(text) == fields
        assert hash(MapKey.decode(text)) == hash(key)  # a decoded key finds its cache entry
    assert MapKey(0, "cam", "l", 1).encode() == '[0,"cam","l",1,"","none",[]]'
    assert MapKey(0, "cam", "l", 1, "", "aug", ("k",)).encode() == '[0,"cam","l",1,"","aug",["k"]]'
    assert MapKey(0, "cam", "l", 1, extra_layers=["k"]) == MapKey(0, "cam", "l", 1, extra_layers=("k",))
    assert MapKey(0, "cam", "l", 1, extra_layers=("k",)).layer_names == ["l", "k"]
    with pytest.raises(ValueError, match="not an encoded map key"):
        MapKey.decode("hirescam/features")
    with pytest.raises(ValueError, match="a list of 7 values"):
        MapKey.decode("[1, 2]")


def test_mask_ids_name_the_painted_pixels_and_the_fill() -> None:
    empty, one, box, scribble, _ = (np.packbits(m.reshape(-1)).tobytes() for m in masks())
    assert mask_id(b"", "blur") == mask_id(empty, "blur") == ""  # nothing painted: the image as it is
    ids = {mask_id(bits, fill) for bits in (one, box, scribble) for fill in ("blur", "black", "zeros")}
    assert len(ids) == 9 and all(len(i.split(":")[1]) == 16 for i in ids)
    assert mask_id(box, "black") == mask_id(bytes(box), "black")  # the same pixels, the same id


def test_selection_keys() -> None:
    one, method, cls, unknown, no_second, _, eigen, fused = (s.keys() for s in SELECTIONS)
    assert one == (MapKey(0, "hirescam", "features", 5),)
    painted = SELECTIONS[5].keys()
    assert [k.mask for k in painted] == ["black:00ff00ff00ff00ff"] * 2  # both slots show the painted image
    assert method == (MapKey(2, "hirescam", "features", 5), MapKey(2, "scorecam", "features", 5))
    assert cls == (MapKey(2, "hirescam", "features", 5), MapKey(2, "hirescam", "features", 9))
    assert unknown == (None, None) and no_second[1] is None
    # smoothing and further layers reach both slots
    assert eigen == (
        MapKey(2, "hirescam", "features", 5, "", "eigen", ("features.3",)),
        MapKey(2, "gradcam", "features", 5, "", "eigen", ("features.3",)),
    )
    assert fused == (MapKey(2, "hirescam", "features", 5, "", "aug", ("features.1",)),)


def test_the_javascript_codec_agrees() -> None:
    node = shutil.which("node")
    assert node, "Node.js is required (it builds and tests the front end)"
    traits = [
        {
            "image_index": s.image,
            "method": s.method,
            "layer": s.layer,
            "class_index": s.target,
            "compare": s.compare,
            "compare_method": s.compare_method,
            "compare_class": s.compare_target,
            "mask": s.mask,
            "smoothing": s.smoothing,
            "extra_layers": list(s.extra_layers),
        }
        for s in SELECTIONS
    ]
    keys = [
        {name: list(v) if isinstance(v := getattr(k, name), tuple) else v for name in KEY_FIELDS}
        for k in KEYS
    ]
    flat = [m.reshape(-1).astype(int).tolist() for m in masks()]
    codec = ROOT / "js/src/map_key.js"
    script = f"""
    import {{ KEY_FIELDS, encodeKey, decodeKey, maskId, packMask, slotKeys }} from "{codec}";
    const keys = {json.dumps(keys)};
    const sels = {json.dumps(traits)};
    const masks = {json.dumps(flat)}.map((m) => Uint8Array.from(m));
    console.log(JSON.stringify({{
      fields: KEY_FIELDS,
      encoded: keys.map(encodeKey),
      decoded: keys.map((k) => decodeKey(encodeKey(k))),
      slots: sels.map(slotKeys),
      packed: masks.map((m) => Array.from(packMask(m))),
      ids: masks.flatMap((m) => ["blur", "black", "zeros"].map((f) => maskId(packMask(m), f))),
    }}));
    """
    out = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=True
    )
    js = json.loads(out.stdout)
    assert js["fields"] == list(KEY_FIELDS)
    assert js["encoded"] == [k.encode() for k in KEYS]
    assert js["decoded"] == keys
    assert js["slots"] == [[None if k is None else k.encode() for k in s.keys()] for s in SELECTIONS]
    packed = [np.packbits(m.reshape(-1)).tobytes() for m in masks()]
    assert js["packed"] == [list(p) for p in packed]  # numpy.packbits, bit for bit
    assert js["ids"] == [mask_id(p, f) for p in packed for f in ("blur", "black", "zeros")]
