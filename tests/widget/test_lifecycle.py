"""When the front end or the host lets go of an explorer, its thread stops and its caches go.

Three ways a notebook lets go: the front end closes the widget's comm (Jupyter sends comm_close), the host
closes it from the kernel side (marimo closes a cell's comms when the cell reruns), or the last view of the
widget is disposed (the cell's output cleared or the cell rerun in JupyterLab / Notebook / Voilà). The
browser tests rerun real cells in JupyterLab and marimo; here the same messages are delivered directly.
"""

from __future__ import annotations

import gc
import threading
import weakref

import ipywidgets.widgets.widget as ipw

from camwidget.widget.explorer import CamExplorer
from tests.widget.conftest import random_images, small_preprocess


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "camwidget-worker" and t.is_alive()]


def explorer(model) -> CamExplorer:
    w = CamExplorer(model, random_images(2), preprocess=small_preprocess(), curve_steps=4)
    assert w.wait(30) and w.session.cache_size > 0
    return w


def front_end(w: CamExplorer, action: str) -> None:
    w._handle_msg({"content": {"data": {"method": "custom", "content": {"action": action}}}, "buffers": []})


def assert_released(w: CamExplorer, before: int) -> None:
    assert len(workers()) == before, "the worker thread is still running"
    assert w.session.cache_size == 0 and w.session.cached() == []
    assert w.session._explainers == {}


def test_front_end_closing_the_comm_stops_and_releases(model) -> None:
    before = len(workers())
    w = explorer(model)
    assert len(workers()) == before + 1
    model_id = w.model_id
    w.comm.handle_close({"content": {"data": {}}})  # what ipykernel does on a comm_close message
    assert_released(w, before)
    assert w.comm is None and model_id not in ipw._instances


def test_host_closing_the_comm_stops_and_releases_and_frees_the_widget(model) -> None:
    before = len(workers())
    w = explorer(model)
    ref = weakref.ref(w)
    w.comm.close()  # what marimo does to a rerun cell's widgets
    assert_released(w, before)
    del w
    gc.collect()
    assert ref() is None, "the closed explorer is still referenced (ipywidgets' registry?)"


def test_the_last_view_going_away_releases_and_a_new_view_recomputes(model) -> None:
    before = len(workers())
    w = explorer(model)
    shown = w.maps[0]["key"]
    front_end(w, "view-open")
    front_end(w, "view-open")  # two views of one widget (displayed twice)
    front_end(w, "view-closed")
    assert len(workers()) == before + 1  # one view left: keep working
    front_end(w, "view-closed")
    assert_released(w, before)
    assert w.maps[0]["key"] == shown  # what the front end shows stays in the traits
    front_end(w, "view-open")  # displayed again
    assert len(workers()) == before + 1
    assert w.wait(30) and w.session.map_payload(w.session.cached()[0]) is not None
    w.close()
    assert len(workers()) == before


def test_rebuilding_an_explorer_in_a_loop_leaves_one_thread(model) -> None:
    before = len(workers())
    for _ in range(3):  # a cell rerun three times, its old widget closed by the host each time
        w = explorer(model)
        w.comm.close()
    assert len(workers()) == before
    w = explorer(model)
    assert len(workers()) == before + 1
    w.close()
