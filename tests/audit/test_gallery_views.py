"""AuditExplorer's views of where the model fails (kernel side): the embedding scatter as compact bytes,
thumbnails on hover, a lasso that filters, the confusion matrix, the slices, and the opened image's two
maps with their confidence paths."""

from __future__ import annotations

import numpy as np
import pytest

import camwidget
from camwidget.audit.gallery import points_in_polygon
from camwidget.audit.synthetic import corner_regions

from .test_audit import run


@pytest.fixture(scope="module")
def explorer(minority, tmp_path_factory):
    model, data = minority
    path = tmp_path_factory.mktemp("views") / "v.sqlite"
    report = run(
        model, data, path, regions=corner_regions(32, 8), metrics=("energy", "error_understanding"),
        mean=(0.5,) * 3, std=(0.5,) * 3,
    )  # fmt: skip
    gallery = camwidget.AuditExplorer(report, page_size=12)
    yield gallery, report
    gallery.close()


def test_the_scatter_travels_as_a_few_bytes_per_image(explorer):
    gallery, report = explorer
    n = len(report)
    assert gallery.panels == [
        "findings", "classes", "embedding", "confusion", "slices", "controls", "grid", "pager", "focus",
    ]  # fmt: skip
    assert gallery.scatter_n == n
    assert len(gallery.scatter_xy) == 4 * n and len(gallery.scatter_class) == 2 * n
    assert len(gallery.scatter_flags) == n
    xy = np.frombuffer(gallery.scatter_xy, dtype="<f2").reshape(n, 2).astype(np.float64)
    plane = report.embedding()
    scaled = (plane - plane.min(axis=0)) / (plane.max(axis=0) - plane.min(axis=0))
    np.testing.assert_allclose(xy, scaled, atol=1e-3)  # float16 of the [0, 1] coordinates
    df = report.to_dataframe()
    codes = np.frombuffer(gallery.scatter_class, dtype="<u2")
    assert [gallery.scatter_classes[c] for c in codes] == df["label_name"].tolist()
    flags = np.frombuffer(gallery.scatter_flags, dtype=np.uint8)
    assert ((flags & 1) == 1).tolist() == (~df["correct"].astype(bool)).tolist()
    # no thumbnail is sent with the scatter: only the current page's cards carry images
    assert sum(len(c["thumb"]) for c in gallery.items) > 0 and len(gallery.items) == 12


def test_a_hover_is_answered_with_that_image_only(explorer, monkeypatch):
    gallery, report = explorer
    sent = []
    monkeypatch.setattr(gallery, "send", lambda content, buffers=None: sent.append((content, buffers)))
    gallery._on_message(gallery, {"event": "hover", "position": 7}, [])
    (content, buffers), index = sent[0], int(report.table()["idx"][7])
    assert content["event"] == "thumb" and content["position"] == 7 and content["index"] == index
    assert buffers == [report.thumbnail(index)] and content["caption"].startswith(f"#{index} ")
    gallery._on_message(gallery, {"event": "open", "position": 7}, [])  # a click on that point
    assert gallery.selected == index and gallery.focus["index"] == index


def test_a_lasso_selects_the_points_inside_and_filters_the_gallery(explorer):
    gallery, report = explorer
    polygon = [[-0.1, -0.1], [0.55, -0.1], [0.55, 1.1], [-0.1, 1.1]]
    xy = np.frombuffer(gallery.scatter_xy, dtype="<f2").reshape(-1, 2).astype(np.float32)
    inside = (xy[:, 0] < 0.55) & np.isfinite(xy[:, 0])
    gallery._on_message(gallery, {"event": "lasso", "polygon": polygon}, [])
    assert np.array_equal(gallery.selection, report.table()["idx"][inside])
    assert gallery.filters == [{"column": "lasso", "op": "==", "value": "true"}]
    assert gallery.total == inside.sum() == gallery.lasso["count"] and 0 < inside.sum() < len(report)
    df = report.to_dataframe()
    assert gallery.lasso["accuracy"] == pytest.approx(df["correct"].to_numpy()[inside].mean())
    shown = np.unpackbits(np.frombuffer(gallery.scatter_shown, dtype=np.uint8), bitorder="little")
    assert np.array_equal(shown[: len(report)].astype(bool), inside)  # the scatter fades the others
    gallery.filters = []
    with pytest.raises(ValueError, match="3 or more"):
        gallery.select_polygon([[0, 0], [1, 1]])


def test_points_in_polygon_even_odd():
    points = np.array([[0.5, 0.5], [2.0, 0.5], [0.1, 0.9], [np.nan, 0.5], [0.75, 0.75]])
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert points_in_polygon(points, square).tolist() == [True, False, True, False, True]
    notch = np.array([[0, 0], [1, 0], [1, 1], [0.5, 0.5], [0, 1]], dtype=float)  # a V cut from the top
    probes = np.array([[0.5, 0.3], [0.5, 0.8], [0.1, 0.5], [0.9, 0.95], [0.9, 0.5]])
    assert points_in_polygon(probes, notch).tolist() == [True, False, True, False, True]


def test_the_confusion_view_and_a_cell_click(explorer):
    gallery, report = explorer
    matrix = report.confusion()
    assert gallery.confusion["names"] == list(matrix.index)
    assert gallery.confusion["counts"] == matrix.to_numpy().tolist()
    top = gallery.confusion["pairs"][0]
    pairs = report.confusion_pairs()
    assert (top["label"], top["predicted"], top["count"]) == tuple(
        pairs.iloc[0][["label_name", "predicted_name", "count"]]
    )
    # what a click on that cell sets (js/src/gallery/confusion.js, cellQuery)
    with gallery.hold_trait_notifications():
        gallery.filters = [
            {"column": "label_name", "op": "==", "value": top["label"]},
            {"column": "predicted_name", "op": "==", "value": top["predicted"]},
        ]
        gallery.sort_by, gallery.descending = "probability", True
    assert gallery.total == top["count"]
    assert [c["index"] for c in gallery.items][:6] == pairs.iloc[0]["examples"]  # most confident first
    gallery.filters = []


def test_the_slices_panel_and_its_filter(explorer):
    gallery, report = explorer
    slices = report.slices()
    assert [s["id"] for s in gallery.slice_list] == list(range(1, min(8, len(slices)) + 1))
    first = gallery.slice_list[0]
    assert first["size"] == slices[0].size and first["description"] == slices[0].description
    assert len(first["map"]) == first["h"] * first["w"] and first["thumb"][:2] == b"\xff\xd8"  # a JPEG
    gallery.filters = [{"column": "slice", "op": "==", "value": "1"}]
    assert sorted(gallery.rows()["index"]) == sorted(slices[0].indices.tolist())
    gallery.filters = []


def test_slices_off_hides_the_slices_panel(explorer):
    _, report = explorer
    gallery = camwidget.AuditExplorer(report, page_size=12, slices=False)
    try:
        assert "slices" not in gallery.panels and "embedding" in gallery.panels
        assert gallery.slice_list == [] and "slice" not in [c["name"] for c in gallery.columns]
    finally:
        gallery.close()


def test_an_opened_mistake_shows_both_maps_and_their_paths(explorer):
    gallery, report = explorer
    df = report.to_dataframe()
    wrong = int(df.index[df["correct"] == False][0])  # noqa: E712
    gallery.open_image(wrong)  # no model: the recorded values only, and the focus panel
    focus = gallery.focus
    assert focus["index"] == wrong and focus["label_name"] != focus["predicted_name"]
    assert focus["true_map"] and focus["predicted_map"] and focus["true_map"] != focus["predicted_map"]
    paths = report.confidence_paths(wrong)
    assert np.array_equal(np.frombuffer(focus["true_path"], dtype="<f4"), paths["true"])
    assert np.array_equal(np.frombuffer(focus["predicted_path"], dtype="<f4"), paths["predicted"])
    assert len(focus["kept"]) == 24
    right = int(df.index[df["correct"] == True][0])  # noqa: E712
    gallery.open_image(right)
    assert gallery.focus["true_map"] == b"" and gallery.focus["true_path"] == b""
