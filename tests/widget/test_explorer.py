"""CamExplorer driven through its traits, as the front end drives it."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from traitlets import TraitError

from camwidget.widget.map_key import MapKey
from tests.widget.conftest import SIZE, TinyNet, random_images


def levels(w, slot: int = 0) -> np.ndarray:
    h, wd = w.image["shape"]
    return np.frombuffer(w.maps[slot]["levels"], dtype=np.uint8).reshape(h, wd)


def key(w, slot: int = 0) -> MapKey:
    return MapKey.decode(w.maps[slot]["key"])


def current(w) -> MapKey:
    return MapKey(w.image_index, w.method, w.layer, w.class_index)


def test_first_map_is_there_at_construction(make_explorer) -> None:
    w = make_explorer()
    assert w.status in ("ready", "running") and w.error == ""  # curves may be computing already
    assert w.method == "hirescam"
    assert key(w) == current(w)
    assert w.image["shape"] == [SIZE, SIZE]
    assert len(w.image["rgb"]) == SIZE * SIZE * 3
    assert levels(w).max() == 255  # min-max normalised map
    assert len(w.top_classes) == 5
    probs = [c["prob"] for c in w.top_classes]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert w.class_index == w.top_classes[0]["index"]
    assert {m["name"] for m in w.methods} == set(__import__("camwidget").METHODS)
    assert w.layer in [layer["name"] for layer in w.layers]
    assert all(len(layer["shape"]) == 3 for layer in w.layers)
    assert w.thumbnails["count"] == 3 and len(w.thumbnails["rgb"]) == 3 * 64 * 64 * 3
    assert w.class_names == [f"class {i}" for i in range(10)]
    assert w.wait(30) and w.status == "ready" and w.message.startswith("HiResCAM in ")
    assert w.message.endswith(" · fp32")  # the precision the map used


def test_method_layer_class_changes_recompute(make_explorer) -> None:
    w = make_explorer()
    first = levels(w).copy()
    w.method = "scorecam"
    assert w.wait(30)
    assert key(w) == current(w) and key(w).method == "scorecam"
    score = levels(w).copy()
    assert not np.array_equal(first, score)

    other_layer = next(
        layer["name"] for layer in w.layers if layer["name"] != w.layer and "2" in layer["name"]
    )
    w.layer = other_layer
    assert w.wait(30)
    assert key(w).layer == other_layer
    assert not np.array_equal(levels(w), score)

    other_class = w.top_classes[1]["index"]
    w.class_index = other_class
    assert w.wait(30)
    assert key(w).target == other_class
    assert w.maps[0]["class_name"] == f"class {other_class}"
    assert w.status == "ready" and w.error == ""


def test_going_back_is_served_from_the_cache(make_explorer) -> None:
    w = make_explorer()
    a = levels(w).copy()
    w.method = "gradcam++"
    assert w.wait(30)
    b_map = dict(w.maps[0])
    w.method = "hirescam"  # cached: published synchronously, no background work
    assert key(w) == current(w)
    assert np.array_equal(levels(w), a)
    w.method = "gradcam++"
    assert w.maps[0] == b_map


def test_image_change_updates_image_predictions_and_map(make_explorer) -> None:
    w = make_explorer()
    image0 = bytes(w.image["rgb"])
    w.image_index = 2
    assert w.wait(30)
    assert w.image["rgb"] != image0 and w.image["index"] == 2
    assert key(w) == current(w) == MapKey(2, "hirescam", w.layer, w.top_classes[0]["index"])


def test_compare_two_methods_and_two_classes(make_explorer) -> None:
    w = make_explorer()
    w.compare_method = "gradcam"
    w.compare = "method"
    assert w.wait(30)
    assert len(w.maps) == len(w.curves) == 2
    assert key(w, 1) == current(w).replace(method="gradcam")
    assert len(w.maps[1]["levels"]) == SIZE * SIZE
    w.compare = "class"
    assert w.wait(30)
    assert w.compare_class != w.class_index
    assert key(w, 1) == MapKey(0, "hirescam", w.layer, w.compare_class)
    assert MapKey.decode(w.curves[1]["key"]).target == w.compare_class
    w.compare = "off"
    assert len(w.maps) == len(w.curves) == 1


def test_curves_and_frames_match_the_metric(make_explorer) -> None:
    from camwidget.metrics import perturbed_image

    w = make_explorer(curve_steps=8)
    assert w.wait(30)
    c = w.curves[0]
    n = c["n_steps"]
    assert n == 8 and len(c["fractions"]) == len(c["insertion"]) == len(c["deletion"]) == n + 1
    assert 0 <= c["insertion_auc"] <= 1 and 0 <= c["deletion_auc"] <= 1
    assert MapKey.decode(c["key"]) == current(w) and c["precision"] == "fp32"
    assert w.curves_status == ""
    order = np.frombuffer(c["order"], dtype="<u2").reshape(SIZE, SIZE)
    assert order.min() == 1 and order.max() == n
    assert len(w.image["base"]) == SIZE * SIZE * 3
    # the browser's frame at step s perturbs exactly the pixels the metric perturbs
    cam = torch.from_numpy(w.heatmap_array())[None]
    step = SIZE * SIZE // n
    x = w.inputs[:1]
    for s in (1, 3, 7):
        deleted = perturbed_image(x, cam, 0, s, "deletion", step=step)
        changed = (deleted != x[0]).any(0).numpy()
        assert np.array_equal(changed, order <= s)


def test_cancel_and_retry(make_explorer) -> None:
    slow = TinyNet(delay=0.01).eval()
    w = make_explorer(net=slow, curves=False)
    w.method = "opticam"
    deadline = time.monotonic() + 10
    while not (w.status == "running" and 0 < w.progress < 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.status == "running" and "Opti-CAM" in w.message
    w.cancel()
    assert w.wait(10)
    assert w.status == "cancelled" and "Compute" in w.message
    assert key(w).method == "hirescam"  # the preview stays, no error
    assert w.error == ""
    # switching away from a running slow method cancels it: the fast map comes at once
    w.retry()
    time.sleep(0.2)
    assert w.status == "running"
    t0 = time.perf_counter()
    w.method = "gradcam"
    assert w.wait(10)
    assert time.perf_counter() - t0 < 1.0
    assert key(w).method == "gradcam" and w.status == "ready"


def front_end(w, data: dict) -> None:
    """Deliver a comm message exactly as ipywidgets receives it from the browser."""
    w._handle_msg({"content": {"data": data}, "buffers": []})


def test_comm_messages_from_the_front_end(make_explorer) -> None:
    w = make_explorer(net=TinyNet(delay=0.01).eval(), curves=False)
    front_end(w, {"method": "update", "state": {"method": "gradcam"}, "buffer_paths": []})
    assert w.wait(10) and key(w).method == "gradcam"
    front_end(w, {"method": "update", "state": {"method": "opticam"}, "buffer_paths": []})
    time.sleep(0.3)
    front_end(w, {"method": "custom", "content": {"action": "cancel"}})
    assert w.wait(10) and w.status == "cancelled"
    front_end(w, {"method": "custom", "content": {"action": "retry"}})
    time.sleep(0.1)
    assert w.status == "running"


def test_traits_are_validated_where_declared(make_explorer) -> None:
    w = make_explorer()
    with pytest.raises(TraitError, match="unknown method 'nope'"):
        w.method = "nope"
    with pytest.raises(TraitError, match=r"class_index 99 out of range: the model has 10 classes"):
        w.class_index = 99
    with pytest.raises(TraitError, match=r"image_index 3 out of range: 3 images"):
        w.image_index = 3
    with pytest.raises(TraitError, match=r"layer 'features.9' is not a spatial layer of TinyNet"):
        w.layer = "features.9"
    with pytest.raises(TraitError):
        w.opacity = 1.5
    with pytest.raises(TraitError):
        w.colormap = "rainbow"
    with pytest.raises(TraitError):
        w.compare = "both"
    assert (w.method, w.class_index, w.opacity, w.colormap) == (
        "hirescam",
        w.top_classes[0]["index"],
        0.5,
        "viridis",
    )
    w.method = "Grad-CAM"  # any spelling the registry knows, stored under the method's name
    assert w.method == "gradcam"


def test_invalid_front_end_values_show_an_error_and_resync(make_explorer) -> None:
    w = make_explorer()
    sent = []
    w.send_state = lambda key=None: sent.append(key)  # what the front end would be sent back
    front_end(w, {"method": "update", "state": {"method": "nope"}, "buffer_paths": []})
    assert w.method == "hirescam"
    assert w.status == "error" and "Invalid selection: unknown method 'nope'" in w.error
    assert sent[-1] == ["method"]  # the kernel's value goes back to the front end
    w.method = "gradcam"
    assert w.wait(30)
    assert w.status == "ready" and w.error == ""


def test_layer_aliases_are_canonical_in_the_constructor_and_the_trait(make_explorer) -> None:
    # features.5 (the last ReLU) returns the very tensor of the Sequential "features": one layer, two names
    w = make_explorer(layer="features.5")
    assert w.layer == "features"
    w.layer = "features.5"  # the bug this fixes: the same name was refused here
    assert w.layer == "features" and w.error == ""
    assert {"name": "features", "shape": [16, 16, 16], "aliases": ["features.5"]} in w.layers
    w.layer = "features.3"
    assert w.layer == "features.3"


class BackwardFails(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward exploded")


class NoGradNet(TinyNet):
    def forward(self, x):
        return self.fc(self.pool(BackwardFails.apply(self.features(x))).flatten(1))


def test_method_failure_is_shown_in_the_widget(make_explorer) -> None:
    torch.manual_seed(0)
    w = make_explorer(net=NoGradNet().eval(), curves=False)
    assert w.status == "error"
    assert "HiResCAM" in w.error and "backward exploded" in w.error
    w.method = "eigencam"  # needs no gradient: works
    assert w.wait(30)
    assert w.status == "ready" and key(w).method == "eigencam"
    w.method = "hirescam"  # the error is remembered, not retried in a loop
    assert w.wait(30)
    assert w.status == "error" and "backward exploded" in w.error


def test_model_that_raises_fails_at_construction(make_explorer) -> None:
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            raise RuntimeError("no forward for you")

    with pytest.raises(ValueError, match=r"the model failed on the first image.*no forward for you"):
        make_explorer(net=Broken())


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ({"not": "an image"}, TypeError, "images must be"),
        ("/does/not/exist.png", FileNotFoundError, "no such image file"),
        (torch.zeros(2, 5, 5), ValueError, r"must be preprocessed \(3, H, W\)"),
        (torch.zeros(1, 4, SIZE, SIZE), ValueError, r"\(3, H, W\)"),
        (np.zeros((3, 40, 40), dtype=np.uint8), ValueError, "channels-first"),
        (np.full((8, 8, 3), np.nan), ValueError, "NaN"),
        ([], ValueError, "images is empty"),
    ],
)
def test_bad_images_raise_clear_errors(make_explorer, images, error, match) -> None:
    with pytest.raises(error, match=match):
        make_explorer(images=images)


def test_not_an_image_file(make_explorer, tmp_path) -> None:
    bogus = tmp_path / "notes.png"
    bogus.write_text("hello")
    with pytest.raises(ValueError, match=r"not an image"):
        make_explorer(images=[bogus])


class FixedSizeNet(nn.Module):
    """Only takes 32x32 inputs (flatten + linear)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * SIZE * SIZE, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_wrong_size_tensor_for_the_model(make_explorer) -> None:
    with pytest.raises(
        ValueError, match=r"the model failed on the first image \(input shape \(1, 3, 20, 20\)\)"
    ):
        make_explorer(net=FixedSizeNet(), images=torch.zeros(1, 3, 20, 20), preprocess=None)
    with pytest.raises(ValueError, match=r"too small"):
        make_explorer(images=torch.zeros(1, 3, 1, 1), preprocess=None)


def test_bad_arguments(make_explorer) -> None:
    with pytest.raises(ValueError, match=r"no class is called 'zebra'"):
        make_explorer(target="zebra")
    with pytest.raises(ValueError, match=r"Did you mean: 'class 1'"):
        make_explorer(target="class 1x", class_names=[f"class {i}" for i in range(10)])
    with pytest.raises(ValueError, match=r"class_names has 3 entries but the model outputs 10"):
        make_explorer(class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"unknown method 'gradcum'; choose one of: cam, gradcam, "):
        make_explorer(method="gradcum")
    with pytest.raises(ValueError, match=r"layer 'features.9' is not a spatial layer of TinyNet"):
        make_explorer(layers=["features.9"])
    with pytest.raises(ValueError, match=r"layer 'features.9' is not a spatial layer of TinyNet"):
        make_explorer(layer="features.9")
    with pytest.raises(ValueError, match=r"colormap must be one of"):
        make_explorer(colormap="rainbow")
    with pytest.raises(TypeError, match=r"torch.nn.Module"):
        make_explorer(net="resnet")


def test_options_target_by_name_layers_methods(make_explorer) -> None:
    names = [f"thing {i}" for i in range(10)]
    w = make_explorer(
        class_names=names, target="thing 7", methods=["gradcam", "scorecam"], layers=["features.2"]
    )
    assert w.class_index == 7 and w.maps[0]["class_name"] == "thing 7"
    assert w.method == "gradcam" and [m["name"] for m in w.methods] == ["gradcam", "scorecam"]
    assert [layer["name"] for layer in w.layers] == ["features.2"] and w.layer == "features.2"
    w.image_index = 1  # a pinned target stays pinned across images
    assert w.wait(30)
    assert w.class_index == 7
    w.class_index = 3  # and so does the class the user picks instead
    w.image_index = 2
    assert w.wait(30)
    assert w.class_index == 3 and key(w) == MapKey(2, "gradcam", "features.2", 3)


def test_compare_mode_given_at_construction(make_explorer) -> None:
    """compare= / compare_class= are set before the background thread starts (a change sent later can
    race with its state updates), and the comparison is computed like one chosen in the browser."""
    names = [f"thing {i}" for i in range(10)]
    w = make_explorer(class_names=names, target=2, compare="class", compare_class="thing 5")
    assert (w.class_index, w.compare, w.compare_class) == (2, "class", 5)
    assert w.wait(30) and key(w, 1).target == 5 and key(w).target == 2
    assert w.status == "ready" and w.compare == "class" and w.compare_class == 5
    with pytest.raises(ValueError, match=r"compare must be one of off, method, class"):
        make_explorer(compare="classes")
    with pytest.raises(ValueError, match=r"no class is called 'zebra'"):
        make_explorer(compare="class", compare_class="zebra")


def test_every_image_kind(make_explorer, tmp_path) -> None:
    rgb = random_images(1)[0]
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    pil = Image.fromarray(rgb)
    w = make_explorer(images=[pil, path, rgb, rgb.astype(np.float32) / 255])
    assert w.thumbnails["count"] == 4
    first = w.session.display[0]
    for i in range(1, 4):
        assert np.abs(w.session.display[i].astype(int) - first.astype(int)).max() <= 1
    tensor_batch = w.inputs
    w2 = make_explorer(images=tensor_batch, preprocess=None)
    assert np.array_equal(w2.session.display, w.session.display)


def test_png_fallback_and_mimebundle(make_explorer) -> None:
    w = make_explorer()
    data, _ = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.size == (3 * SIZE + 12, SIZE)
    assert "HiResCAM" in data["text/plain"]
    assert w._repr_png_()[:4] == b"\x89PNG"


def test_ipython_display_adds_a_static_fallback_output(make_explorer) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    w = make_explorer()
    shell = InteractiveShell.instance()
    published: list[dict] = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: published.append(data)
    try:
        shell.display_formatter.format(w)  # what a cell ending in `w` does
    finally:
        InteractiveShell.clear_instance()
    assert len(published) == 2
    widget, fallback = published
    assert "application/vnd.jupyter.widget-view+json" in widget and "image/png" not in widget
    assert set(fallback) == {"text/html", "image/png", "text/plain"}
    assert fallback["text/html"].startswith(
        '<div class="cw-static-fallback"><img src="data:image/png;base64,'
    )
    assert fallback["image/png"] in fallback["text/html"]
    png = Image.open(io.BytesIO(base64.b64decode(fallback["image/png"])))
    assert png.size == (3 * SIZE + 12, SIZE)
    assert fallback["text/plain"] == w.summary() and "HiResCAM at features" in w.summary()


def test_static_html_export_keeps_the_state(make_explorer, tmp_path) -> None:
    from ipywidgets.embed import embed_minimal_html

    w = make_explorer()
    assert w.wait(30)
    out = tmp_path / "export.html"
    embed_minimal_html(out, views=[w], title="camwidget export")
    html = out.read_text()
    assert "application/vnd.jupyter.widget-state+json" in html
    assert "cw-root" in html  # the bundled front end travels in the _esm trait
    assert "cw-colorbar" in html  # and the stylesheet in _css
    for data in (w.image["rgb"], w.maps[0]["levels"], w.curves[0]["order"]):
        assert base64.b64encode(bytes(data)).decode()[:40] in html


def test_two_explorers_share_a_model_safely(make_explorer) -> None:
    first = make_explorer()
    for method in ("scorecam", "gradcam++", "layercam"):
        first.method = method  # keeps first's worker busy on the model ...
        second = make_explorer(curve_steps=4)  # ... while second runs it on the main thread
        assert key(second).method == "hirescam" and second.error == ""
        assert first.wait(30) and first.error == "" and key(first).method == method
        assert second.wait(30) and second.error == ""


def test_a_map_without_information_says_why(make_explorer) -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():
        net.fc.weight.zero_()  # a zero head: every gradient is zero, as an untrained ViT's
    w = make_explorer(net=net, curves=False)
    assert w.wait(30) and w.status == "ready"
    (warning,) = w.maps[0]["warnings"]
    assert "HiResCAM map of image 0 is all zero" in warning and "head" in warning
    w.method = "eigencam"  # class-agnostic: informative whatever the head
    assert w.wait(30) and w.maps[0]["warnings"] == []
