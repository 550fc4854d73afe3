"""One shareable report of an audit, for a reviewer who does not run Python: a self-contained HTML page
and the same findings as JSON.

:meth:`AuditReport.export_html` writes ONE file: every image (class mean maps over a typical image, the
examples of each finding, confusion pair and slice, with their maps laid over them) is embedded as a
``data:`` URI, the stylesheet is inline, and nothing is fetched from the network (no script, font or
stylesheet from elsewhere), so it opens offline, from an e-mail attachment or a ticket.
:meth:`AuditReport.export_json` writes the figures themselves: the class mean maps (arrays), the shortcut
findings with their examples and flip rates (when the counterfactual ran), the confusion matrix and
pairs, the slices, and the error-understanding table.

Both are built from one :func:`collect` of the report, so the HTML and the JSON always say the same.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camwidget.defaults import DEFAULT_COLORMAP

if TYPE_CHECKING:
    from torch import nn

    from camwidget.audit.report import AuditReport
    from camwidget.audit.shortcuts import Shortcuts

__all__ = ["collect", "write_html", "write_json"]

MAX_MATRIX = 40
"""The confusion matrix is drawn in full up to this many classes; beyond, only the most confused pairs."""


def _number(v: Any) -> Any:
    """JSON-safe scalars: NaN/inf -> None, numpy -> Python."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else round(float(v), 6)
    return v


def _grid(m: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in np.asarray(m, dtype=np.float64)]


def collect(
    report: AuditReport,
    *,
    shortcuts: Shortcuts | None = None,
    model: nn.Module | None = None,
    examples: int = 6,
    slices: int = 8,
) -> dict[str, Any]:
    """Everything the exported report says, as JSON-ready data (see the module doc).

    Args:
        report: the audit.
        shortcuts: the findings to report (e.g. tested ones); default ``report.shortcuts(model=model)``
            (tested by the counterfactual when ``model`` is given and the report knows the dataset).
        model: the audited model, to test findings and to compute error understanding when the audit
            did not record it. Default None.
        examples: example images per finding, pair and slice. Default 6.
        slices: how many slices to report (worst first). Default 8.
    """
    t = report.table()
    ok = ~t["error_flag"]
    labelled = ok & np.isfinite(t["label"])
    accuracy = float(np.nanmean(t["correct"][labelled])) if labelled.any() else None
    found = shortcuts if shortcuts is not None else report.shortcuts(model=model, examples=examples)
    data: dict[str, Any] = {
        "format": "camwidget audit report 1",
        "audit": {
            "store": str(report.path),
            "images": len(t["idx"]),
            "errors": int(t["error_flag"].sum()),
            "accuracy": _number(accuracy),
            "method": report.method,
            "layer": report.layer,
            "class_names": list(report.class_names),
            "image_size": list(report.image_size) if report.image_size else None,
            "maps_shape": list(report.maps_shape()),
            "regions": report.regions,
            "model": report.settings.get("model"),
            "embedding": report.embedding_source,
            "target": report.target,
            "which_map": "every map explains "
            + ("the predicted class" if report.target is None else f"the target {report.target!r}")
            + " unless marked 'true' (the label's class)",
        },
    }
    mean_maps = report.class_mean_maps()
    data["class_mean_maps"] = {
        name: {"shape": list(m.shape), "map": _grid(m), "note": "energy share per cell, sums to 1"}
        for name, m in mean_maps.items()
    }
    data["shortcuts"] = []
    for s in found:
        item: dict[str, Any] = {
            "class": s.class_name,
            "kind": s.kind,
            "where": s.where,
            "box": [_number(v) for v in s.box],
            "score": _number(s.score),
            "users": s.users,
            "images": s.images,
            "users_fraction": _number(s.users_fraction),
            "others_fraction": _number(s.others_fraction),
            "user_share": _number(s.user_share),
            "lift": _number(s.lift),
            "examples": [int(i) for i in s.examples[:examples]],
            "text": str(s),
            "counterfactual": None,
        }
        cf = s.counterfactual
        if cf is not None:
            item["counterfactual"] = {
                "fill": cf.fill,
                "source": cf.source,
                "pasted": cf.pasted,
                "pasted_flipped": cf.pasted_flipped,
                "paste_flip_rate": _number(cf.paste_flip_rate),
                "removed": cf.removed,
                "removed_flipped": cf.removed_flipped,
                "remove_flip_rate": _number(cf.remove_flip_rate),
                "paste_examples": [int(i) for i in cf.paste_examples[:examples]],
                "remove_examples": [int(i) for i in cf.remove_examples[:examples]],
            }
        data["shortcuts"].append(item)
    confusion = report.confusion()
    data["confusion"] = {
        "labels": [str(c) for c in confusion.index],
        "predicted": [str(c) for c in confusion.columns],
        "matrix": confusion.to_numpy().astype(int).tolist(),
        "note": "rows: true class; columns: predicted class",
    }
    pairs = report.confusion_pairs(examples=examples)
    data["confusion_pairs"] = [
        {
            "label": row.label_name,
            "predicted": row.predicted_name,
            "count": int(row.count),
            "share": _number(row.share),
            "examples": [int(i) for i in row.examples],
        }
        for row in pairs.itertuples()
    ]
    data["slices"] = []
    try:
        found_slices = report.slices()[:slices]
    except ValueError as exc:  # no embeddings
        found_slices = []
        data["slices_note"] = str(exc)
    for s in found_slices:
        data["slices"].append(
            {
                "label": s.label_name,
                "size": s.size,
                "accuracy": _number(s.accuracy),
                "baseline_accuracy": _number(s.baseline_accuracy),
                "predictions": {str(report._name(k)): int(v) for k, v in s.predictions.items()},
                "location": s.location,
                "region": s.region,
                "description": s.description,
                "indices": [int(i) for i in s.indices],
                "examples": [int(i) for i in _wrong_first(report, s.indices)[:examples]],
                "mean_map": _grid(s.mean_map),
            }
        )
    try:
        table = report.error_understanding(model=None)
        data["error_understanding_source"] = "recorded by the audit"
    except ValueError as exc:
        table = None
        if model is not None:
            try:
                table = report.error_understanding(model=model)
                data["error_understanding_source"] = "computed at export from the stored maps"
            except ValueError as inner:
                data["error_understanding_note"] = str(inner)
        else:
            data["error_understanding_note"] = str(exc)
    data["error_understanding"] = (
        [
            {"class": c, "map": which, **{k: _number(v) for k, v in row.items()}}
            for (c, which), row in table.to_dict("index").items()
        ]
        if table is not None
        else None
    )
    return data


def _wrong_first(report: AuditReport, indices: np.ndarray) -> list[int]:
    """A slice's members, misclassified ones first, most confident first within each."""
    t = report.table()
    pos = report._positions(indices)
    order = np.lexsort((-np.nan_to_num(t["probability"][pos]), np.nan_to_num(t["correct"][pos], nan=1)))
    return [int(i) for i in np.asarray(indices)[order]]


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`collect`'s data as UTF-8 JSON (NaN written as null); returns the path."""
    p = Path(path)
    p.write_text(json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False), encoding="utf-8")
    return p


# -- HTML -----------------------------------------------------------------------------------------------
_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2025;
  background: #fff; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.muted { color: #5f6670; } .note { color: #5f6670; font-style: italic; }
table { border-collapse: collapse; margin: 6px 0; } th, td { padding: 3px 8px; text-align: left; }
th { background: #f1f3f5; font-weight: 600; } tr + tr td { border-top: 1px solid #eee; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.maps { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; text-align: center; font-size: 12px; } figure img { display: block; border-radius: 4px; }
.examples { display: flex; gap: 6px; flex-wrap: wrap; } .examples figure { font-size: 11px; width: 76px; }
figcaption { overflow-wrap: anywhere; line-height: 1.2; }
.item { border: 1px solid #e1e4e8; border-radius: 8px; padding: 8px 12px; margin: 8px 0; }
.item .head { font-weight: 600; } .flips { color: #b34700; font-weight: 600; }
.bar { display: inline-block; height: 9px; background: #d0d5db; width: 120px; vertical-align: middle;
  position: relative; border-radius: 2px; } .bar span { position: absolute; left: 0; top: 0; bottom: 0;
  background: #1976d2; border-radius: 2px; } .bar.base span { background: #8a939d; }
table.confusion td { text-align: center; min-width: 26px; }
table.confusion td.diag { outline: 1px solid #1976d2; }
table.confusion th.rot { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: 500; }
.wrong { color: #b34700; }
"""


def _data_uri(image: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def _rgb(report: AuditReport, index: int, side: int) -> np.ndarray | None:
    """The stored thumbnail of ``index`` as (side', side, 3) uint8, or None."""
    from PIL import Image

    thumb = report.thumbnail(index)
    if not thumb:
        return None
    im = Image.open(io.BytesIO(thumb)).convert("RGB")
    height = max(1, round(side * im.height / im.width))
    return np.asarray(im.resize((side, height), Image.BILINEAR), dtype=np.uint8)


def _levels(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from camwidget.audit.report import _resize

    m = _resize(np.asarray(m, dtype=np.float32), shape)
    lo, hi = float(m.min()), float(m.max())
    scaled = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _overlay(report: AuditReport, index: int | None, m: np.ndarray, side: int = 96) -> str:
    """A data URI of ``m`` (a map) laid over image ``index`` (or alone when None), ``side`` pixels wide."""
    from camwidget.widget.codecs import blend, colorize

    rgb = _rgb(report, index, side) if index is not None else None
    if rgb is None:
        h, w = m.shape
        shape = (max(1, round(side * h / w)), side)
        return _data_uri(_jpeg(colorize(_levels(m, shape), DEFAULT_COLORMAP)))
    return _data_uri(_jpeg(blend(rgb, _levels(m, rgb.shape[:2]), DEFAULT_COLORMAP, 0.45)))


def _thumbs(report: AuditReport, indices: list[int], which: str = "predicted") -> str:
    if not indices:
        return ""
    t = report.table()
    maps = report.maps(indices, which=which)
    pos = report._positions(indices)
    cells = []
    for i, m, p in zip(indices, maps, pos, strict=True):
        label, pred = report._name(t["label"][p]), report._name(t["predicted"][p])
        wrong = label is not None and label != pred
        caption = f"#{i} {label or '?'} → {pred}"
        cells.append(
            f'<figure><img src="{_overlay(report, i, m, 72)}" width="72" alt="{html.escape(caption)}">'
            f'<figcaption class="{"wrong" if wrong else ""}">{html.escape(caption)}</figcaption></figure>'
        )
    return f'<div class="examples">{"".join(cells)}</div>'


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.0f}%"


def _bar(v: Any, base: bool = False) -> str:
    width = 0 if v is None else max(0.0, min(1.0, float(v))) * 100
    return f'<span class="bar{" base" if base else ""}"><span style="width:{width:.0f}%"></span></span>'


def write_html(report: AuditReport, data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`collect`'s data as one self-contained HTML page (see the module doc); returns the path."""
    a = data["audit"]
    esc = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">",
        f"<title>Audit report: {esc(Path(a['store']).name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Audit report</h1>",
        f'<p class="muted">{a["images"]} images ({a["errors"]} unreadable), accuracy {_pct(a["accuracy"])}; '
        f"maps by {esc(a['method'])} at layer <code>{esc(a['layer'])}</code> "
        f"({a['maps_shape'][0]}×{a['maps_shape'][1]}); store <code>{esc(a['store'])}</code>. Every map "
        + (
            "explains the <b>predicted</b> class"
            if a.get("target") is None
            else f"explains the target <b>{esc(a['target'])}</b>"
        )
        + " unless it is marked as the <b>true</b> class's.</p>",
    ]
    # class mean maps over a typical image
    parts.append("<h2>Where each class looks</h2>")
    parts.append(
        '<p class="muted">Mean map of the images predicted as each class, over one of them.</p>'
        '<div class="maps">'
    )
    t = report.table()
    groups = report._groups("predicted")
    energy = report._energy()
    means = report.class_mean_maps()
    for k, pos in groups.items():
        name = str(report._name(k))
        mean = means.get(name)
        if mean is None:
            continue
        flat = energy[pos].reshape(len(pos), -1)
        typical = int(t["idx"][pos[int(np.argmax(flat @ mean.ravel()))]])
        parts.append(
            f'<figure><img src="{_overlay(report, typical, mean)}" width="96" alt="mean map of {esc(name)}">'
            f"<figcaption>{esc(name)} ({len(pos)})</figcaption></figure>"
        )
    parts.append("</div>")
    # shortcuts
    parts.append("<h2>Possible shortcuts</h2>")
    if not data["shortcuts"]:
        parts.append('<p class="note">No class leans on a region or a spot more than the others.</p>')
    for s in data["shortcuts"]:
        cf = s["counterfactual"]
        flips = (
            f'<div class="flips">pasted onto {cf["pasted"]} other images: {cf["pasted_flipped"]} flip to '
            f"{esc(s['class'])} ({_pct(cf['paste_flip_rate'])}); removed from {cf['removed']}: "
            f"{cf['removed_flipped']} flip away ({_pct(cf['remove_flip_rate'])})</div>"
            if cf
            else '<div class="note">not tested by the counterfactual (export with model=)</div>'
        )
        parts.append(
            f'<div class="item"><div class="head">{esc(s["class"])} → {esc(s["where"])}: {s["users"]} of '
            f"{s['images']} images ({_pct(s['users_fraction'])}), score {s['score']:+.2f}</div>"
            f"<div>{esc(s['text'])}</div>{flips}{_thumbs(report, s['examples'])}</div>"
        )
    # confusion
    conf = data["confusion"]
    parts.append("<h2>Confusion matrix</h2>")
    if len(conf["labels"]) <= MAX_MATRIX:
        m = np.array(conf["matrix"], dtype=np.int64)
        rows = m.sum(axis=1, keepdims=True)
        head = "".join(f'<th class="rot">{esc(c)}</th>' for c in conf["predicted"])
        body = []
        for i, name in enumerate(conf["labels"]):
            cells = []
            for j in range(m.shape[1]):
                share = m[i, j] / rows[i, 0] if rows[i, 0] else 0.0
                color = (
                    f"rgba(25,118,210,{share:.2f})" if i == j else f"rgba(230,81,0,{min(1, 2 * share):.2f})"
                )
                cls = ' class="diag"' if i == j else ""
                cells.append(f'<td{cls} style="background:{color}">{m[i, j] or ""}</td>')
            body.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
        parts.append(
            '<p class="muted">Rows: true class; columns: predicted class.</p>'
            f'<table class="confusion"><tr><th>label \\ predicted</th>{head}</tr>{"".join(body)}</table>'
        )
    else:
        parts.append(
            f'<p class="note">{len(conf["labels"])} classes: only the most confused pairs are shown.</p>'
        )
    parts.append("<h2>Most confused pairs</h2>")
    if not data["confusion_pairs"]:
        parts.append('<p class="note">No misclassified image.</p>')
    for pair in data["confusion_pairs"][:12]:
        parts.append(
            f'<div class="item"><div class="head">{esc(pair["label"])} taken for {esc(pair["predicted"])}: '
            f"{pair['count']} images ({_pct(pair['share'])} of {esc(pair['label'])})</div>"
            f"{_thumbs(report, pair['examples'])}</div>"
        )
    # slices
    parts.append("<h2>Slices: where the model fails</h2>")
    parts.append(
        '<p class="muted">Coherent groups of a class\'s images (penultimate embeddings and where their maps '
        "sit), found without group labels, worst first.</p>"
    )
    if not data["slices"]:
        parts.append(
            f'<p class="note">{esc(data.get("slices_note", "No group does worse than its class."))}</p>'
        )
    for s in data["slices"]:
        mean_uri = _overlay(report, None, np.array(s["mean_map"]), 72)
        parts.append(
            f'<div class="item"><div class="head">{esc(s["label"])}: {s["size"]} images</div>'
            f"<div>accuracy {_bar(s['accuracy'])} {_pct(s['accuracy'])} against "
            f"{_bar(s['baseline_accuracy'], True)} {_pct(s['baseline_accuracy'])} for the rest of the "
            "class</div>"
            f"<div>{esc(s['description'])}</div>"
            f'<div class="examples"><figure><img src="{mean_uri}" width="72" alt="mean map">'
            "<figcaption>mean map"
            f"</figcaption></figure></div>{_thumbs(report, s['examples'])}</div>"
        )
    # error understanding
    parts.append("<h2>Error understanding</h2>")
    eu = data["error_understanding"]
    if eu is None:
        parts.append(f'<p class="note">{esc(data.get("error_understanding_note", ""))}</p>')
    else:
        keys = [k for k in eu[0] if k not in ("class", "map")] if eu else []
        parts.append(
            '<p class="muted">On the misclassified images: the highest probability of the <b>true</b> class '
            "when only the pixels a map ranks first are kept (black elsewhere), for the map of the true "
            "class "
            "and for the map of the predicted class ('Less is More', ICLR 2024). Higher: the map finds the "
            f"true class's evidence. Source: {esc(data.get('error_understanding_source', ''))}.</p>"
        )
        head = "".join(f'<th class="num">{esc(_short(k))}</th>' for k in keys)
        rows = []
        for r in eu:
            cells = "".join(f'<td class="num">{_cell(r[k])}</td>' for k in keys)
            rows.append(f"<tr><td>{esc(str(r['class']))}</td><td>{esc(r['map'])}</td>{cells}</tr>")
        parts.append(f"<table><tr><th>true class</th><th>map of</th>{head}</tr>{''.join(rows)}</table>")
        wrong = [i for pair in data["confusion_pairs"] for i in pair["examples"][:2]][:6]
        if wrong:
            parts.append(
                "<p class='muted'>Misclassified examples with the map of their <b>true</b> class:</p>"
            )
            parts.append(_thumbs(report, wrong, which="true"))
            parts.append("<p class='muted'>The same images with the map of the <b>predicted</b> class:</p>")
            parts.append(_thumbs(report, wrong, which="predicted"))
    parts.append(
        f'<p class="muted">Written by camwidget {esc(_version())} from <code>{esc(a["store"])}</code>. '
        "Self-contained: every image is embedded; nothing is loaded from the network.</p></body></html>"
    )
    p = Path(path)
    p.write_text("\n".join(parts), encoding="utf-8")
    return p


def _cell(v: Any) -> str:
    return "–" if v is None else str(v) if isinstance(v, int) else f"{v:.3f}"


def _short(key: str) -> str:
    """A narrow table header for an error-understanding column."""
    if key.startswith("average_highest_confidence@"):
        return f"highest p, ≤{key.split('@')[1]} kept"
    if key.startswith("area_at_highest@"):
        return f"area at it (≤{key.split('@')[1]})"
    return key.replace("_", " ")


def _version() -> str:
    import camwidget

    return str(camwidget.__version__)
