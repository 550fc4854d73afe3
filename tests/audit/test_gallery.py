"""AuditExplorer (kernel side): the front end travels with the first state, cards carry bytes, captions say
label -> prediction, regions are outlined, findings filter, a click opens the audited input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

import camwidget
from camwidget.audit.report import AuditReport
from camwidget.audit.synthetic import corner_regions

CORNERS = corner_regions(32, 8)


def run(model, data, store, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 32)
    return camwidget.audit(model, data, store=store, **kw)


class Flaky(Dataset):
    """Every 10th item (3, 13, 23, ...) fails to load."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i % 10 == 3:
            raise OSError(f"read error on item {i}")
        return self.base[i]


class PilImages(Dataset):
    """The synthetic images as 32x32 PIL images: the audit needs its transform to read them."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, label, _ = self.base[i]
        rgb = ((image * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(np.ascontiguousarray(rgb)), label


@pytest.fixture
def gallery_report(small, tmp_path):
    model, data = small
    report = run(model, Flaky(data), tmp_path / "g.sqlite", regions=CORNERS, class_names=data.class_names)
    return report, model, data


def test_the_front_end_travels_in_the_state_the_comm_opens_with(gallery_report, monkeypatch):
    """JupyterLab builds the view from the comm's first state: an empty _esm there is a broken widget."""
    import ipywidgets.comm

    opened = []
    real = ipywidgets.comm.create_comm

    def spy(*args, **kwargs):
        opened.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ipywidgets.comm, "create_comm", spy)
    report, _, _ = gallery_report
    g = camwidget.AuditExplorer(report)
    first = next(o for o in opened if o["data"]["state"].get("_model_name") == "AnyModel")
    state = first["data"]["state"]
    assert "export" in state["_esm"] and "cw-audit" in state["_esm"]  # the bundled module, not ""
    assert "cw-audit" in state["_css"]
    assert "render" in state["_esm"]
    g.close()


def test_cards_carry_bytes_captions_and_region_outlines(gallery_report):
    report, _, _ = gallery_report
    g = camwidget.AuditExplorer(report, page_size=20)
    assert g.n_rows == g.total == 96 and len(g.items) == 20 and "10 unreadable" in g.title
    card = g.items[0]
    assert isinstance(card["thumb"], bytes) and card["thumb"][:2] == b"\xff\xd8"  # JPEG bytes
    assert isinstance(card["map"], bytes) and len(card["map"]) == card["map_h"] * card["map_w"] == 64
    label, pred = card["label_name"], card["predicted_name"]
    assert card["caption"] == f"#0 {label} → {pred}"
    assert g.items[3]["error"] == "OSError: read error on item 3" and g.items[3]["map"] == b""
    assert sorted(r["name"] for r in g.regions) == sorted(CORNERS)
    boxes = {r["name"]: r["box"] for r in g.regions}
    assert boxes["top_left"] == [0.0, 0.0, 0.25, 0.25] and boxes["bottom_right"] == [0.75, 0.75, 1.0, 1.0]
    g.sort_by, g.descending = "region_top_left", True
    values = [i["value"] for i in g.items]
    assert values == sorted(values, reverse=True)
    assert g.items[0]["value_text"] == f"region_top_left {values[0]:.2f}"
    g.close()


def test_class_mean_maps_over_a_representative_image(gallery_report):
    report, _, _ = gallery_report
    g = camwidget.AuditExplorer(report)
    assert [c["name"] for c in g.class_maps] == ["h_stripes", "v_stripes", "checks"]
    for c in g.class_maps:
        assert c["thumb"][:2] == b"\xff\xd8" and len(c["map"]) == c["h"] * c["w"]
        row = report.to_dataframe().loc[c["index"]]
        assert row["predicted_name"] == c["name"]  # the representative is one of the class's images
    g.class_by = "label"
    assert sum(c["count"] for c in g.class_maps) == 86  # the 10 unreadable images have no map
    g.close()


def test_findings_carry_the_filter_a_click_applies(gallery_report):
    report, _, _ = gallery_report
    g = camwidget.AuditExplorer(report)
    first = g.findings[0]
    assert first["class_name"] == "h_stripes" and first["region"] == "top_left"
    assert first["filters"] == [{"column": "predicted_name", "op": "==", "value": "h_stripes"}]
    assert first["sort_by"] == "region_top_left"
    g.filters, g.sort_by, g.descending = first["filters"], first["sort_by"], True
    rows = g.rows()
    assert (rows["predicted_name"] == "h_stripes").all()
    assert rows["region_top_left"].is_monotonic_decreasing
    assert "%" in first["text"] and "top_left" in first["text"]
    g.close()


def test_the_gallery_answers_comm_messages_on_another_thread(small):
    """ipykernel may deliver a widget's comm messages on another thread than the cell that made it: an
    in-memory store (one SQLite connection) must still answer there."""
    model, data = small
    report = run(model, data, ":memory:")
    g = camwidget.AuditExplorer(report)
    worker = threading.Thread(
        target=lambda: setattr(g, "filters", [{"column": "correct", "op": "==", "value": "no"}])
    )
    worker.start()
    worker.join(30)
    assert g.message == "" and g.total == int((~report.to_dataframe()["correct"]).sum())
    assert all(item["correct"] is False for item in g.items)
    g.close()


def test_sort_filter_and_paging(gallery_report):
    report, _, _ = gallery_report
    g = camwidget.AuditExplorer(report, page_size=20)
    g.filters = [{"column": "error", "op": "not missing", "value": ""}]
    assert g.total == 10 and g.page == 0
    g.filters = [
        {"column": "correct", "op": "==", "value": "yes"},
        {"column": "probability", "op": ">", "value": "0.9"},
    ]
    rows = g.rows()
    assert len(rows) == g.total and rows["correct"].all() and (rows["probability"] > 0.9).all()
    g.filters = [{"column": "predicted_name", "op": "contains", "value": "STRIPES"}]
    assert g.rows()["predicted_name"].str.contains("stripes").all()
    g.filters = [
        {"column": "probability", "op": "<", "value": "high"},
        {"column": "nope", "op": "==", "value": 1},
    ]
    assert g.total == 96 and "not a number" in g.message and "unknown column 'nope'" in g.message
    g.filters = []
    g.page = 99
    assert g.page == 4 and len(g.items) == 16
    g.close()


def test_a_click_opens_camexplorer_on_the_audited_input(small, tmp_path):
    """The audit explained 32x32 inputs made by its transform; the explorer gets exactly those."""
    model, data = small
    tf = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    raw = PilImages(data)
    report = run(model, raw, tmp_path / "p.sqlite", transform=tf, regions=CORNERS)
    g = camwidget.AuditExplorer(report, model)
    df = report.to_dataframe()
    wrong = df.index[(df["label"] != df["predicted"])].tolist()
    right = df.index[(df["label"] == df["predicted"])].tolist()
    assert wrong and right
    g._on_message(g, {"event": "open", "index": right[0]}, [])
    explorer = g.explorer
    assert isinstance(explorer, camwidget.CamExplorer) and g.selected == right[0]
    assert tuple(explorer.inputs.shape) == (1, 3, 32, 32)
    assert torch.equal(explorer.inputs[0], tf(raw[right[0]][0]))
    assert explorer.method == report.method and explorer.layer == report.layer
    assert explorer.class_index == int(df.loc[right[0], "predicted"]) and explorer.compare == "off"
    caption = g.detail.children[0].value
    assert f"#{right[0]}" in caption and df.loc[right[0], "label_name"] in caption
    assert g.detail.children[-1] is explorer
    # The displayed image is the audited input un-normalised with the audit's mean/std.
    shown = np.frombuffer(explorer.image["rgb"], dtype=np.uint8).reshape(32, 32, 3)
    expected = np.asarray(raw[right[0]][0])
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 1
    # A misclassified image opens with the label-vs-prediction comparison preselected.
    before = explorer
    opened = g.open_image(wrong[0])
    assert before.comm is None  # the previous explorer was closed
    assert opened.class_index == int(df.loc[wrong[0], "predicted"])
    assert opened.compare == "class" and opened.compare_class == int(df.loc[wrong[0], "label"])
    caption = g.detail.children[0].value
    assert df.loc[wrong[0], "label_name"] in caption and df.loc[wrong[0], "predicted_name"] in caption
    assert "→" in caption
    g.close()
    assert opened.comm is None


def test_open_image_without_what_it_needs_says_what_to_pass(gallery_report):
    report, model, _ = gallery_report
    g = camwidget.AuditExplorer(report)
    assert g.open_image(5) is None and "pass model=" in g.detail.children[-1].value
    assert g.open_image(3) is None and "read error" in g.detail.children[0].value  # an error row
    loaded = camwidget.AuditExplorer(AuditReport.load(report.path), model)
    assert loaded.open_image(5) is None and "dataset=" in loaded.detail.children[-1].value
    bundle = g._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data  # the gallery with its detail panel
    with pytest.raises(TypeError, match="AuditReport"):
        camwidget.AuditExplorer("audit.sqlite")
    with pytest.raises(KeyError, match="not in this audit"):
        g.open_image(1000)
    g.close()
    loaded.close()


def test_test_it_runs_the_counterfactual_and_hotspots_get_a_column(minority):
    """'test it' in the findings panel fills in the flip rates; a hotspot finding sorts by its own
    energy column (each image's share of map energy in the hotspot)."""
    model, test = minority
    report = run(model, test, ":memory:", batch_size=64)  # no named regions: the stamp is a hotspot
    g = camwidget.AuditExplorer(report, model)
    first = g.findings[0]
    assert first["kind"] == "hotspot" and first["class_name"] == "h_stripes" and first["flips"] == ""
    assert g.can_test and first["sort_by"] == "hotspot_1" and "hotspot_1" in g.rows().columns
    g.filters, g.sort_by, g.descending = first["filters"], first["sort_by"], True
    top = g.rows()["hotspot_1"].to_numpy()
    assert (top[:-1] >= top[1:]).all()
    assert int(g.rows()["index"].iloc[0]) in g.shortcut_list[0].user_indices
    g._on_message(g, {"event": "test", "finding": 0}, [])
    cf = g.shortcut_list[0].counterfactual
    assert cf is not None and cf.paste_flip_rate >= 0.8
    assert g.findings[0]["flips"].startswith(f"pasted: {cf.pasted_flipped}/{cf.pasted} flip to h_stripes")
    g.close()


def test_closing_leaves_no_widget_pointing_at_a_closed_one(small, tmp_path):
    """After close(), no live widget refers to a closed one (ipywidgets' static HTML export walks every
    live widget and fails on such a reference)."""
    from ipywidgets.embed import embed_minimal_html

    model, data = small
    report = run(model, data, ":memory:")
    g = camwidget.AuditExplorer(report, model)
    g._repr_mimebundle_()  # the gallery with its detail panel, as a notebook displays it
    g.open_image(1)
    g.open_image(2)  # the first explorer and its caption are closed and let go
    assert len(g.detail.children) == 2
    g.close()
    assert g.comm is None and g.detail.comm is None and g._container.comm is None
    import ipywidgets

    other = ipywidgets.HTML("another widget, exported after the gallery closed")
    embed_minimal_html(tmp_path / "export.html", views=[other], title="after the gallery")
    other.close()
