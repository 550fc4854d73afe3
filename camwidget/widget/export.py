"""Static output: what a CamExplorer (or a :func:`camwidget.show` figure) looks like without a kernel.

- :func:`export_html` writes one self-contained HTML file: the widget's front end, its stylesheet, its
  state and every map and curve the explorer has computed, inlined; it renders with no network (a
  teacher's offline handout, an attachment). Choosing a map that was computed before the export redraws
  it; anything else says it is not in the export. A matplotlib figure is written as an inline PNG.
- :func:`fallback_bundle` is the PNG output shown beside the live widget in a notebook (see
  :meth:`CamExplorer._ipython_display_`): hidden wherever the widget's stylesheet is loaded, shown by
  hosts that cannot run the widget (nbconvert's HTML, a notebook reopened without its kernel).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camwidget.widget.codecs import blend, colorize, png_bytes

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from camwidget.widget.explorer import CamExplorer

__all__ = ["explorer_png", "export_html", "fallback_bundle"]

MAX_SAVED_MAPS = 64  # the most recently computed maps an export carries (each ~50 KB at 224x224)


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _jsonable(value: Any) -> Any:
    """Trait values with bytes turned into base64 strings (what the front end's toBytes reads)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _b64(bytes(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _script_json(payload: Any) -> str:
    """JSON safe inside a <script> element (no "</" can close it)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def saved_state(explorer: CamExplorer) -> dict[str, Any]:
    """Everything an exported page needs: the synced traits (without the front-end code), each image
    with its predictions, and the computed maps and curves keyed by their encoded :class:`MapKey`."""
    session = explorer.session
    state = explorer.get_state(key=explorer.published_traits())
    images = []
    k = len(explorer.top_classes) or 5
    for index in range(len(session.inputs)):
        h, w = session.inputs.shape[-2:]
        images.append(
            {
                "image": {
                    "index": index,
                    "shape": [int(h), int(w)],
                    "frames": session.frames,
                    "rgb": session.display[index].tobytes(),
                    "base": session.insertion_base(index),
                    "substrate": [round(m * 255) for m in session.mean],
                },
                "top_classes": session.top(index, k),
                "annotations": session.annotations(index, k),
            }
        )
    maps, curves = {}, {}
    for key in session.cached()[-MAX_SAVED_MAPS:]:
        payload = session.map_payload(key)
        if payload is not None:
            maps[payload["key"]] = payload
        entry = session.entry(key)
        if entry is not None and entry.curves is not None:
            curves[key.encode()] = {"key": key.encode(), "order": entry.order, **entry.curves}
    for shown in explorer.maps:  # what is on screen stays, even if the cache dropped it
        if shown.get("key") and shown["key"] not in maps:
            maps[shown["key"]] = shown
    return _jsonable({"state": state, "images": images, "maps": maps, "curves": curves})


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="camwidget {version}">
<title>{title}</title>
<style>
body {{ margin: 16px; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
@media (prefers-color-scheme: dark) {{ body {{ background: #111214; color: #e8e8e8; }} }}
{css}
</style>
</head>
<body>
{body}
</body>
</html>
"""

_LOADER = """<div id="camwidget-explorer"></div>
<noscript><img src="data:image/png;base64,{png}" alt="{alt}"></noscript>
<script type="application/json" id="camwidget-esm">{esm}</script>
<script type="application/json" id="camwidget-saved">{saved}</script>
<script type="module">
const read = (id) => JSON.parse(document.getElementById(id).textContent);
const url = URL.createObjectURL(new Blob([read("camwidget-esm")], {{ type: "text/javascript" }}));
const mod = await import(url);
URL.revokeObjectURL(url);
const el = document.getElementById("camwidget-explorer");
window.camwidgetView = mod.renderStatic(el, read("camwidget-saved"));
</script>"""


def export_html(obj: CamExplorer | Figure, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Write ``obj`` to ``path`` as one self-contained HTML file that renders with no network.

    Args:
        obj: a :class:`~camwidget.CamExplorer` (saved with its front end, state, and every map and curve it
            has computed: up to the 64 most recent, so explore what you want to hand out first), or a
            matplotlib ``Figure`` such as :func:`camwidget.show` returns (saved as an inline PNG).
        path: the file to write (``.html``); its folder must exist.
        title: the page title; default "CamExplorer: <model>" or "camwidget figure".

    Returns:
        The path written.

    Raises:
        TypeError: ``obj`` is neither a CamExplorer nor a matplotlib Figure.
    """
    import camwidget
    from camwidget.widget.explorer import CamExplorer, front_end

    path = Path(path)
    if isinstance(obj, CamExplorer):
        esm, css = front_end()
        body = _LOADER.format(
            png=_b64(obj.to_png()),
            alt=html.escape(obj.summary()),
            esm=_script_json(esm),
            saved=_script_json(saved_state(obj)),
        )
        default_title = f"CamExplorer: {obj.about.get('model', '')}"
    elif _is_figure(obj):
        buf = io.BytesIO()
        obj.savefig(buf, format="png", dpi=110)
        body = f'<img src="data:image/png;base64,{_b64(buf.getvalue())}" alt="camwidget figure">'
        css, default_title = "", "camwidget figure"
    else:
        raise TypeError(
            "export_html takes a CamExplorer or a matplotlib Figure (camwidget.show), "
            f"got {type(obj).__name__}"
        )
    page = _PAGE.format(
        version=camwidget.__version__, title=html.escape(title or default_title), css=css, body=body
    )
    path.write_text(page, encoding="utf-8")
    return path


def _is_figure(obj: object) -> bool:
    from matplotlib.figure import Figure

    return isinstance(obj, Figure)


def explorer_png(explorer: CamExplorer, colormap: str, opacity: float) -> bytes:
    """PNG bytes of what ``explorer`` shows: the image, then (once a map is shown) its overlay at
    ``opacity`` and the heatmap in ``colormap``, side by side with 6 px white gaps (a clip: its frame
    ``explorer.frame``)."""
    rgb = explorer.session.display[explorer.image_index]
    cam = explorer.heatmap_array(0)
    if explorer.session.frames > 1:
        rgb = rgb[explorer.frame]
        cam = None if cam is None else cam[explorer.frame]
    tiles = [rgb]
    if cam is not None:
        levels = np.clip(np.rint(np.nan_to_num(cam) * 255), 0, 255).astype(np.uint8)
        tiles += [blend(rgb, levels, colormap, opacity), colorize(levels, colormap)]
    gap = np.full((rgb.shape[0], 6, 3), 255, dtype=np.uint8)
    row = tiles[0]
    for tile in tiles[1:]:
        row = np.concatenate([row, gap, tile], axis=1)
    return png_bytes(row)


def fallback_bundle(explorer: CamExplorer) -> dict[str, str]:
    """The static output shown where the widget cannot run: an HTML ``<img>`` (hidden by the widget's
    stylesheet wherever the live widget is), the PNG itself (what a notebook without trusted HTML shows)
    and a one-line summary."""
    png = _b64(explorer.to_png())
    alt = html.escape(explorer.summary())
    return {
        "text/html": (
            f'<div class="cw-static-fallback"><img src="data:image/png;base64,{png}" alt="{alt}" '
            f'title="{alt}"></div>'
        ),
        "image/png": png,
        "text/plain": explorer.summary(),
    }
