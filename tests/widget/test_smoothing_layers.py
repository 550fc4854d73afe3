"""The explorer's smoothing select and further fused layers: each map is the engine's
(:func:`camwidget.explain` with the same options), switching back is a cache hit, ``aug_smooth`` is
background work with a preview, and a method only gets the options it can take."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traitlets import TraitError

import camwidget
from camwidget.methods.registry import METHODS, get_method
from camwidget.widget.map_key import MapKey, Selection


def key(w, slot: int = 0) -> MapKey:
    return MapKey.decode(w.maps[slot]["key"])


def levels(w, slot: int = 0) -> np.ndarray:
    h, wd = w.image["shape"]
    return np.frombuffer(w.maps[slot]["levels"], dtype=np.uint8).reshape(h, wd)


def reference(w, model, *, method: str, layers: list[str], smoothing: str) -> np.ndarray:
    """The engine's map for the explorer's image and class with the same options."""
    x = w.inputs[w.image_index : w.image_index + 1]
    maps = camwidget.explain(
        model,
        x,
        method=method,
        layer=layers if len(layers) > 1 else layers[0],
        target=w.class_index,
        aug_smooth=smoothing == "aug",
        eigen_smooth=smoothing == "eigen",
    )
    return maps[0].numpy()


@pytest.mark.parametrize(
    ("method", "smoothing", "extra"),
    [
        ("gradcam", "aug", []),
        ("gradcam", "eigen", []),
        ("hirescam", "none", ["features.1"]),
        ("gradcam++", "aug", ["features.2"]),
        ("scorecam", "eigen", ["features.1"]),  # a slow method, smoothed and fused
    ],
)
def test_the_map_is_the_engines_with_the_same_options(make_explorer, model, method, smoothing, extra) -> None:
    w = make_explorer(curves=False)
    w.image_index = 1
    assert w.wait(60)
    plain = reference(w, model, method=method, layers=[w.layer], smoothing="none")
    w.method = method
    w.extra_layers = extra
    w.smoothing = smoothing
    assert w.wait(120) and w.error == ""
    assert key(w) == MapKey(1, method, w.layer, w.class_index, "", smoothing, tuple(extra))
    want = reference(w, model, method=method, layers=[w.layer, *extra], smoothing=smoothing)
    shown = w.heatmap_array()
    np.testing.assert_allclose(shown, want, atol=1e-6)  # the cached float32 map: the engine's, exactly
    # what the browser draws: the same map as 8-bit levels
    assert np.abs(levels(w).astype(int) - np.round(want * 255).astype(int)).max() <= 1
    # and the option did something: the map is not the plain single-layer one
    assert np.abs(shown - plain).max() > 0.05
    # the status line says what was computed
    said = get_method(method).label + "".join(f" + {name}" for name in extra)
    said += f" · {smoothing}-smoothed" if smoothing != "none" else ""
    assert w.message.startswith(f"{said} in "), w.message


def test_switching_back_is_a_cache_hit(make_explorer) -> None:
    w = make_explorer(curves=False)
    assert w.wait(60)
    plain = key(w)
    w.smoothing = "aug"
    assert w.wait(60)
    smoothed = key(w)
    assert smoothed == plain.replace(smoothing="aug")
    w.extra_layers = ["features.2"]
    assert w.wait(60)
    fused = key(w)
    assert fused == smoothed.replace(extra_layers=("features.2",))
    computed = w.session.cache_size
    # each earlier choice is shown at once, from the cache, without the worker
    for traits, want in (
        ({"extra_layers": []}, smoothed),
        ({"smoothing": "none"}, plain),
        ({"smoothing": "aug", "extra_layers": ["features.2"]}, fused),
    ):
        with w.hold_trait_notifications():
            for name, value in traits.items():
                setattr(w, name, value)
        assert key(w) == want and w.session.plan(w._selection()) is None
    assert w.session.cache_size == computed


def test_aug_smooth_is_background_work_previewed_by_the_plain_map(make_explorer) -> None:
    w = make_explorer(curves=False)
    assert w.wait(60)
    session, target = w.session, w.class_index
    sel = Selection(2, "gradcam", w.layer, target, smoothing="aug", extra_layers=("features.2",))
    session.run(session.plan(Selection(2, "gradcam", w.layer, target)))  # the image's prediction
    first = session.plan(sel)
    assert first.kind == "map" and first.key == sel.keys()[0].replace(smoothing="none")  # the preview
    assert "aug smooth" not in first.label
    session.run(first)
    second = session.plan(sel)
    assert second.key == sel.keys()[0] and second.slow and "aug smooth" in second.label
    assert "features + features.2" in second.label
    # a slow method's preview is HiResCAM's, unsmoothed under aug, eigen-smoothed under eigen
    assert session.preview_key(sel.keys()[0].replace(method="scorecam")) == sel.keys()[0].replace(
        method="hirescam", smoothing="none"
    )
    eigen = sel.keys()[0].replace(method="scorecam", smoothing="eigen")
    assert session.preview_key(eigen) == eigen.replace(method="hirescam")
    assert session.preview_key(eigen.replace(method="gradcam")) is None  # fast and unaugmented: no preview


def test_a_method_is_offered_only_the_options_it_takes(make_explorer) -> None:
    w = make_explorer(curves=False)
    flags = {m["name"]: (m["eigen"], m["layers"]) for m in w.methods}
    assert flags == {m: (get_method(m).eigen_smoothable(), get_method(m).uses_layer) for m in METHODS}
    assert not flags["fullgrad"][0] and not flags["fullgrad"][1]  # no per-channel terms, its own layers
    assert not flags["eigencam"][0] and flags["gradcam"] == (True, True)
    w.method = "fullgrad"
    with pytest.raises(TraitError, match="eigen smoothing does not apply to FullGrad"):
        w.smoothing = "eigen"
    with pytest.raises(TraitError, match="FullGrad reads every layer it needs itself"):
        w.extra_layers = ["features.2"]
    # choosing a method that cannot take them turns them off
    w.method = "gradcam"
    w.smoothing, w.extra_layers = "eigen", ["features.2"]
    w.method = "eigencam"
    assert w.smoothing == "none" and w.extra_layers == ["features.2"]
    w.method = "fullgrad"
    assert w.extra_layers == []
    # comparing methods: both must take eigen smoothing
    w.method, w.compare_method, w.smoothing = "gradcam", "hirescam", "eigen"
    w.compare = "method"
    assert w.wait(60) and [key(w, i).smoothing for i in (0, 1)] == ["eigen", "eigen"]
    w.compare_method = "eigencam"
    assert w.smoothing == "none"
    with pytest.raises(TraitError, match="Eigen-CAM"):
        w.smoothing = "eigen"


def test_layers_are_the_catalogs_names(make_explorer) -> None:
    w = make_explorer(curves=False)
    w.extra_layers = ["features.5", "features.2", "features.2"]  # an alias, a repeat
    assert w.extra_layers == ["features", "features.2"]
    assert w.wait(60) and key(w).extra_layers == ("features.2",)  # the chosen layer is not fused with itself
    with pytest.raises(TraitError, match=r"'layer9'.*features\.2"):  # says which layers there are
        w.extra_layers = ["layer9"]
    with pytest.raises(TraitError, match="smoothing"):
        w.smoothing = "gaussian"


def test_constructor_arguments(make_explorer) -> None:
    w = make_explorer(method="gradcam", smoothing="eigen", extra_layers=["features.2"], curves=False)
    assert key(w) == MapKey(0, "gradcam", w.layer, w.class_index, "", "eigen", ("features.2",))
    assert w.wait(60) and w.error == ""
    with pytest.raises(ValueError, match="smoothing must be one of none, aug, eigen"):
        make_explorer(smoothing="blur")
    with pytest.raises(ValueError, match="eigen smoothing does not apply to FullGrad"):
        make_explorer(method="fullgrad", smoothing="eigen")
    with pytest.raises(ValueError, match="takes no extra_layers"):
        make_explorer(method="fullgrad", extra_layers=["features.2"])
    with pytest.raises(TypeError, match="list of layer names"):
        make_explorer(extra_layers="features.2")


def test_the_model_is_left_as_it_came(make_explorer, model) -> None:
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w = make_explorer(method="gradcam", smoothing="aug", extra_layers=["features.1"], curves=False)
    assert w.wait(60) and w.error == ""
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_aug_smoothing_is_refused_where_the_choices_are_tied_to_pixels(make_explorer) -> None:
    torch.manual_seed(0)
    segmenter = torch.nn.Sequential(  # (N, 4, H, W): four classes per pixel
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)
    ).eval()
    w = make_explorer(net=segmenter, curves=False)
    assert w.choices["kind"] == "segmentation"
    with pytest.raises(TraitError, match="aug smoothing flips the image, but a segmentation class"):
        w.smoothing = "aug"
    w.smoothing = "eigen"  # no flips: fine
    assert w.wait(60) and w.error == "" and key(w).smoothing == "eigen"
    with pytest.raises(ValueError, match="tied to pixel positions"):
        make_explorer(net=segmenter, smoothing="aug")
