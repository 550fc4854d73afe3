"""The explorer's Session, driven directly: what it plans, what it computes and caches, what it shows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camwidget
from camwidget.widget.map_key import MapKey, Selection
from camwidget.widget.session import MAP_CACHE, Session
from tests.widget.conftest import SIZE, TinyNet, random_images, small_preprocess


@pytest.fixture
def session(model) -> Session:
    return Session.open(model, random_images(), preprocess=small_preprocess(), curve_steps=8)


def run_all(session: Session, selection: Selection) -> list[tuple[str, MapKey | None]]:
    """Run the plan to the end; the (kind, key) of each unit of work in order."""
    done = []
    while (work := session.plan(selection)) is not None:
        session.run(work)
        done.append((work.kind, work.key))
        assert len(done) < 20, done
    return done


def test_open_surveys_the_model_once_and_predicts_the_first_image(model) -> None:
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    session = Session.open(model, random_images(), preprocess=small_preprocess())
    assert calls == [1, 1]  # the layer catalog's survey, the first image's prediction
    assert session.catalog.default == "features" and session.catalog.canonical("features.5") == "features"
    probs = session.probabilities(0)
    assert probs.shape == (10,) and abs(float(probs.sum()) - 1) < 1e-5
    assert session.probabilities(1) is None
    assert list(session.class_names)[:2] == ["class 0", "class 1"]


def test_plan_order_prediction_preview_map_then_curves(session: Session) -> None:
    target = int(np.argmax(session.probabilities(0)))
    sel = Selection(1, "scorecam", "features", -1)
    work = session.plan(sel)
    assert (work.kind, work.image) == ("predict", 1)  # image 1 is not predicted yet
    session.run(work)
    target = int(np.argmax(session.probabilities(1)))
    sel = Selection(1, "scorecam", "features", target)
    assert run_all(session, sel) == [
        ("map", MapKey(1, "hirescam", "features", target)),  # the fast preview first
        ("map", MapKey(1, "scorecam", "features", target)),
        ("curves", MapKey(1, "scorecam", "features", target)),
    ]
    assert session.plan(sel) is None


def test_results_are_cached_and_match_the_engine(session: Session, model) -> None:
    key = MapKey(0, "gradcam", "features.3", 2)
    sel = Selection(0, "gradcam", "features.3", 2)
    run_all(session, sel)
    cam = session.map(key)
    x = session.inputs[:1]
    expected = camwidget.explain(model, x, method="gradcam", layer="features.3", target=2)[0]
    assert torch.allclose(cam, expected, atol=1e-6)
    entry = session.entry(key)
    assert entry.precision == "fp32" and entry.seconds > 0 and entry.curves is not None
    assert entry.curves["n_steps"] == 8 and len(entry.order) == SIZE * SIZE * 2
    assert run_all(session, sel) == []  # nothing left to do: all cached


def test_view_shows_slots_previews_and_status(session: Session) -> None:
    target = int(np.argmax(session.probabilities(0)))
    sel = Selection(0, "scorecam", "features", target, "class", "", 5)
    view = session.view(sel)
    assert view.maps == (None, None) and view.status == "ready" and view.message == ""
    preview = session.plan(sel)
    session.run(preview)
    view = session.view(sel)
    assert view.maps[0]["key"] == MapKey(0, "hirescam", "features", target).encode()  # the preview
    assert view.maps[1] is None
    assert view.curves_status == "Curves follow once the map is ready…"
    running = session.plan(sel)
    assert session.view(sel, running=running).status == "running"
    assert (
        session.view(sel, paused=True).message == "Cancelled. Press Compute to run Score-CAM and Score-CAM."
    )
    run_all(session, sel)
    view = session.view(sel)
    assert [m["key"] for m in view.maps] == [k.encode() for k in sel.keys()]
    assert (
        view.status == "ready" and view.message.startswith("Score-CAM in ") and view.message.endswith("fp32")
    )
    assert view.maps[1]["class_name"] == "class 5" and view.curves[1]["key"] == sel.keys()[1].encode()
    levels = np.frombuffer(view.maps[0]["levels"], dtype=np.uint8)
    assert levels.shape == (SIZE * SIZE,) and levels.max() == 255


def test_cancelled_work_caches_nothing(session: Session) -> None:
    sel = Selection(0, "scorecam", "features", 3)
    run_all(session, Selection(0, "hirescam", "features", 3))  # the preview is there
    work = session.plan(sel)
    assert work.key.method == "scorecam"
    work.cancel()
    session.run(work, progress=lambda done, total: None)
    assert session.map(work.key) is None and session.entry(work.key) is None


def test_errors_are_kept_then_forgotten_on_retry(session: Session) -> None:
    sel = Selection(0, "cam", "features.1", 0)  # CAM needs a GAP + linear head right after the layer
    run_all(session, sel)
    view = session.view(sel)
    assert view.status == "error" and view.error.startswith("CAM at features.1 failed:")
    assert session.plan(sel) is None  # not retried in a loop
    session.forget_errors(sel)
    assert session.plan(sel).key == sel.keys()[0]


def test_the_cache_is_bounded_and_release_drops_everything(session: Session) -> None:
    for target in range(10):
        run_all(session, Selection(0, "gradcam", "features", target))
    assert len(session.cached()) == 10 <= MAP_CACHE
    assert session.insertion_base(0)
    session.release()
    assert session.cache_size == 0 and session.cached() == []
    assert session.insertion_base(0) == b"" and session._explainers == {}


def test_a_model_failing_on_a_later_image_is_an_error_of_that_image() -> None:
    class FailsOnBright(TinyNet):
        def forward(self, x):
            if float(x.mean()) > 1.0:
                raise RuntimeError("too bright")
            return super().forward(x)

    torch.manual_seed(0)
    images = random_images(2)
    images[1][:] = 255
    session = Session.open(FailsOnBright().eval(), images, preprocess=small_preprocess())
    session.run(session.plan(Selection(1, "hirescam", "features", -1)))
    assert np.isnan(session.probabilities(1)).all()
    view = session.view(Selection(1, "hirescam", "features", -1))
    assert view.status == "error" and "The model failed on image 1: RuntimeError: too bright" in view.error


def test_a_model_without_spatial_layers_is_refused_by_name() -> None:
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 4))
    with pytest.raises(ValueError, match=r"Sequential has no layer with a spatial \(N, C, h, w\) output"):
        Session.open(mlp, random_images(1), preprocess=small_preprocess())
