"""MapKey's two codecs (Python here, js/src/map_key.js in the browser) agree on every key and selection."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from camwidget.widget.map_key import KEY_FIELDS, MapKey, Selection

ROOT = Path(__file__).resolve().parents[2]

KEYS = [
    MapKey(0, "hirescam", "features.12", 281),
    MapKey(12, "gradcam++", "layer4.1", 0),
    MapKey(3, "scorecam", "blocks.11.norm1", 999),
    MapKey(1, "eigencam", "übung.conv", 7),  # non-ASCII module names spell the same on both sides
]
SELECTIONS = [
    Selection(0, "hirescam", "features", 5),
    Selection(2, "hirescam", "features", 5, "method", "scorecam", 9),
    Selection(2, "hirescam", "features", 5, "class", "scorecam", 9),
    Selection(2, "hirescam", "features", -1, "method", "scorecam", 9),
    Selection(2, "hirescam", "features", 5, "class", "scorecam", -1),
]


def test_encode_decode_round_trip() -> None:
    for key in KEYS:
        text = key.encode()
        assert MapKey.decode(text) == key
        assert json.loads(text) == [key.image, key.method, key.layer, key.target]
    assert MapKey(0, "cam", "l", 1).encode() == '[0,"cam","l",1]'
    with pytest.raises(ValueError, match="not an encoded map key"):
        MapKey.decode("hirescam/features")
    with pytest.raises(ValueError, match="a list of 4 values"):
        MapKey.decode("[1, 2]")


def test_selection_keys() -> None:
    one, method, cls, unknown, no_second = (s.keys() for s in SELECTIONS)
    assert one == (MapKey(0, "hirescam", "features", 5),)
    assert method == (MapKey(2, "hirescam", "features", 5), MapKey(2, "scorecam", "features", 5))
    assert cls == (MapKey(2, "hirescam", "features", 5), MapKey(2, "hirescam", "features", 9))
    assert unknown == (None, None) and no_second[1] is None


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
        }
        for s in SELECTIONS
    ]
    keys = [{name: getattr(k, name) for name in KEY_FIELDS} for k in KEYS]
    script = f"""
    import {{ KEY_FIELDS, encodeKey, decodeKey, slotKeys }} from "{ROOT / "js/src/map_key.js"}";
    const keys = {json.dumps(keys)};
    const sels = {json.dumps(traits)};
    console.log(JSON.stringify({{
      fields: KEY_FIELDS,
      encoded: keys.map(encodeKey),
      decoded: keys.map((k) => decodeKey(encodeKey(k))),
      slots: sels.map(slotKeys),
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
