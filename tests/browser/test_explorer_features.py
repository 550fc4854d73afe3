"""CamExplorer's what-if brush, true-class toggle and multi-label selector in a real browser (Voilà: the
notebook runs in a live kernel, the page shows its widgets).

- **What-if brush** on the bundled SqueezeNet and scikit-image's cat: a brush stroke over the cat's eyes
  (the Paint tool, dragged with the mouse) must make the tiger-cat probability drop in the widget
  (``p(tiger cat): 0.39 → 0.05``), the map must be recomputed for the painted image and the image panel
  must show what the model sees; Clear restores the unpainted map (from the cache); the keyboard's box
  (arrow keys, Enter, Escape) does the same without a mouse.
- **True class**: with ``labels=``, the misclassified cat (tabby, predicted tiger cat) shows the toggle and
  the error-understanding figures; the toggle switches the map and the curves to the true class; the
  correctly classified coffee shows no toggle.
- **Multi-label**: a torchvision resnet18 (random weights) with ``multilabel=True`` lists its labels with
  their sigmoids (they do not sum to 1), explains the label clicked and its curves score the sigmoid.
- **Detection**: torchvision's Faster R-CNN (random weights, BatchNorm fitted on the photos) draws its
  top 5 boxes over the image; clicking one explains that detection (its map, its curves).
- **Segmentation**: torchvision's DeepLabV3 (random weights, BatchNorm fitted) lists its classes by the share
  of pixels predicted as each, outlines the chosen class's predicted pixels (a checkbox turns it off) and
  explains each class over its pixels.

Screenshots go to artifacts/ (``whatif_brush.png``, ``true_class.png``, ``multilabel.png``,
``detection_boxes.png``, ``segmentation_outline.png``), the what-if
timings to ``artifacts/whatif_timings.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import explorer_page as ep
from tests.browser.servers import voila_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """\
import camwidget, torch, torchvision
from camwidget.data import sample_image
from camwidget.models import squeezenet1_1_imagenet
pre = squeezenet1_1_imagenet()
brush = camwidget.CamExplorer(pre.model, sample_image("chelsea"), class_names=pre.class_names,
                              preprocess=pre.transform, curve_steps=16)
brush
""",
    """\
truth = camwidget.CamExplorer(pre.model, [sample_image("chelsea"), sample_image("coffee")],
                              class_names=pre.class_names, preprocess=pre.transform,
                              labels=["tabby", "espresso"], curve_steps=16)
truth
""",
    """\
from camwidget.data import sample_images
from camwidget.defaults import imagenet_transform
torch.manual_seed(0)
net = torchvision.models.resnet18(num_classes=6)  # random weights; the six outputs are independent labels
# BatchNorm statistics fitted on the sample photos (weights stay random), as a trained model has them
for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.reset_running_stats()
        m.momentum = None
tf = imagenet_transform()
net.train()
with torch.no_grad():
    net(torch.stack([tf(im) for im in sample_images().values()]))
net.eval()
tags = camwidget.CamExplorer(net, [sample_image("astronaut"), sample_image("coffee")], multilabel=True,
                             class_names=[f"label {i}" for i in range(6)], curve_steps=8)
tags
""",
    """\
import torchvision.transforms.functional as TF
pics = torch.stack([TF.to_tensor(TF.center_crop(TF.resize(im.convert("RGB"), 160), 160))
                    for im in sample_images().values()])  # (7, 3, 160, 160) in [0, 1]
torch.manual_seed(0)
det = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
    weights=None, weights_backbone=None, box_score_thresh=0.0, num_classes=5)
batch = det.transform(list(pics))[0].tensors
for m in det.backbone.modules():  # BatchNorm statistics fitted on the photos, as for the resnet above
    if isinstance(m, torch.nn.BatchNorm2d):
        m.reset_running_stats()
        m.momentum = None
det.backbone.train()
with torch.no_grad():
    det.backbone(batch[:4]); det.backbone(batch[3:])
det.eval()
boxes = camwidget.CamExplorer(det, pics[:1], methods=["gradcam", "hirescam"], method="gradcam",
                              mean=(0, 0, 0), std=(1, 1, 1), layer="backbone:0", curve_steps=8)
boxes
""",
    """\
small = torch.stack([TF.to_tensor(TF.center_crop(TF.resize(im.convert("RGB"), 96), 96))
                     for im in sample_images().values()])
small = TF.normalize(small, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
torch.manual_seed(0)
seg = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
    weights=None, weights_backbone=None, num_classes=6)
for m in seg.modules():  # BatchNorm statistics fitted on the photos
    if isinstance(m, torch.nn.BatchNorm2d):
        m.reset_running_stats()
        m.momentum = None
seg.train()
with torch.no_grad():
    seg(small[:4]); seg(small[3:])
seg.eval()
regions = camwidget.CamExplorer(seg, small[:1], methods=["gradcam", "hirescam"],
                                class_names=[f"region {i}" for i in range(6)], curve_steps=8)
regions
""",
]

# Resolves with the last 'maps' paint whose map key has a what-if mask (or "" for none) once the widget
# shows the map it wants (data-stale false) and, with a mask, the painted image's number.
WATCH = """(r) => {
  const log = (window.cwLog = { up: null, maps: [] });
  const frame = r.querySelector('.cw-panel-image .cw-frame');
  frame.addEventListener('pointerup', () => { log.up = performance.now(); }, true);
  r.addEventListener('camwidget:paint', (ev) => {
    const map = ev.detail.map;
    if (ev.detail.kind === 'maps' && map) log.maps.push([map.mask, map.target, ev.detail.t]);
  });
}"""

# Click `sel` and resolve with the ms until a map of class `target` is painted and the widget is settled.
CLICK_UNTIL = """async (r, { sel, target, timeout }) => {
  const t0 = performance.now();
  let painted = null;
  r.addEventListener('camwidget:paint', function f(ev) {
    if (ev.detail.kind === 'maps' && ev.detail.map && ev.detail.map.target === target) {
      painted = ev.detail.t;
      r.removeEventListener('camwidget:paint', f);
    }
  });
  r.querySelector(sel).click();
  while (painted === null || r.dataset.stale !== 'false' || r.dataset.status !== 'ready') {
    if (performance.now() - t0 > timeout) throw new Error('no map of ' + target + JSON.stringify(r.dataset));
    await new Promise((f) => setTimeout(f, 25));
  }
  return painted - t0;
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, browser_context) -> Iterator[object]:
    with voila_server(tmp_path_factory.mktemp("voila_features"), CELLS) as url:
        page, errors = ep.open_voila(browser_context, url, count=5)  # five cells, four models
        yield page
        page.close()
        assert not ep.widget_errors(errors), errors


def _root(page, index: int):
    root = page.locator(".cw-root").nth(index)
    ep.wait_ready(root, timeout=300_000)
    root.scroll_into_view_if_needed()
    return root


def _click_until(root, sel: str, target: int) -> float:
    return root.evaluate(CLICK_UNTIL, {"sel": sel, "target": target, "timeout": 120_000})


def test_the_brush_hides_the_cats_face_and_tiger_cat_drops(page, artifacts: Path) -> None:
    root = _root(page, 0)
    selected = root.locator(".cw-class[aria-selected=true]")
    assert selected.locator(".cw-class-name").inner_text() == "tiger cat"
    assert selected.locator(".cw-class-pct").inner_text() == "39%"
    h0 = ep.canvas_hash(root)
    image0 = ep.canvas_hash(root, ".cw-panel-image canvas")
    root.evaluate(WATCH)

    # the Paint tool, radius 35, one stroke across the eyes (blur fill, the default)
    root.locator(".cw-whatif label", has_text="Paint").click()
    root.locator(".cw-brush-size input").fill("35")
    root.locator(".cw-brush-size input").dispatch_event("input")
    page.mouse.move(*ep.to_screen(root, 20, 90))
    page.mouse.down()
    for x in range(20, 206, 15):
        page.mouse.move(*ep.to_screen(root, x, 90), steps=2)
    page.mouse.move(*ep.to_screen(root, 205, 90))
    page.mouse.up()
    shown = ep.settled(root, painted=True)
    before, after = float(shown["before"]), float(shown["after"])
    assert before == pytest.approx(0.3916, abs=1e-3)
    assert after < 0.1 and after < before / 3, shown  # hiding the eyes takes most of the evidence away
    assert shown["text"] == f"p(tiger cat): {before:.2f} → {after:.2f}"
    log = page.evaluate("window.cwLog")
    mask, target, painted_at = log["maps"][-1]
    assert mask.startswith("blur:") and target == 282  # the map of the painted image, for the same class
    assert ep.canvas_hash(root) != h0, "the heatmap did not follow the painted image"
    assert ep.canvas_hash(root, ".cw-panel-image canvas") != image0, "the image panel shows no paint"
    assert root.locator(".cw-panel-image figcaption").inner_text().endswith("· painted")
    # the class list shows the painted image's numbers, each with the unpainted one
    assert root.locator(".cw-class .cw-class-before").count() >= 3
    assert root.locator(".cw-class").first.locator(".cw-class-name").inner_text() != "tiger cat"
    # the explained class, now out of the top 5, keeps its row with its unpainted number
    assert root.locator(".cw-class[aria-selected=true] .cw-class-before").inner_text() == "was 39%"
    timings = {"paint_to_map_ms": round(painted_at - log["up"], 1), "tiger_cat": [before, after]}
    root.locator(".cw-whatif").scroll_into_view_if_needed()
    ep.screenshot(root, artifacts, "whatif_brush")

    # Clear: the unpainted map comes back from the cache
    root.locator("[data-control=brush_clear]").click()
    ep.settled(root, painted=False)
    assert ep.canvas_hash(root) == h0 and ep.canvas_hash(root, ".cw-panel-image canvas") == image0

    # the keyboard: Box tool, the image panel focused, arrows move the box, Enter hides it, Escape clears
    root.locator(".cw-whatif label", has_text="Box").click()
    frame = root.locator(".cw-panel-image .cw-frame")
    frame.focus()
    for key in ["ArrowUp"] * 4 + ["Shift+ArrowRight"] * 3:
        page.keyboard.press(key)
    t0 = time.perf_counter()
    page.keyboard.press("Enter")
    shown = ep.settled(root, painted=True)
    timings["box_key_to_settled_s"] = round(time.perf_counter() - t0, 3)
    assert float(shown["after"]) < float(shown["before"]), shown
    page.keyboard.press("Escape")
    ep.settled(root, painted=False)
    assert ep.canvas_hash(root) == h0
    print(f"\nwhat-if timings: {json.dumps(timings)}")
    (artifacts / "whatif_timings.json").write_text(json.dumps(timings, indent=2))


def test_true_class_toggle_and_error_understanding(page, artifacts: Path) -> None:
    root = _root(page, 1)
    truth = root.locator(".cw-truth")
    assert truth.is_visible() and truth.get_attribute("data-misclassified") == "true"
    assert "tabby" in truth.inner_text() and "tiger cat" in truth.inner_text()
    root.locator(".cw-understanding-table").wait_for(timeout=120_000)
    rows = root.locator(".cw-understanding-table tr[data-range]")
    assert rows.count() == 3 and "tiger cat map" in root.locator(".cw-understanding-title").inner_text()
    h0 = ep.canvas_hash(root)
    curve0 = root.locator(".cw-line.cw-ins").first.get_attribute("d")

    ms = _click_until(root, ".cw-truth-toggle input[value=true] + label", 281)
    assert root.locator(".cw-truth-toggle input[value=true]").is_checked()
    assert root.locator(".cw-class[aria-selected=true] .cw-class-name").inner_text() == "tabby"
    assert ep.canvas_hash(root) != h0
    ep.wait_ready(root)
    assert root.locator(".cw-line.cw-ins").first.get_attribute("d") != curve0, "curves not redrawn"
    page.wait_for_function(
        "(r) => (r.querySelector('.cw-understanding-title') || {}).textContent?.includes('tabby map')",
        arg=root.element_handle(),
        timeout=120_000,
    )
    highest = [
        float(t) for t in root.locator(".cw-understanding-table td.cw-num:nth-child(2)").all_inner_texts()
    ]
    assert len(highest) == 3 and highest == sorted(highest) and all(0 <= v <= 1 for v in highest)
    auc = float(root.locator("[data-figure=insertion_auc]").inner_text())
    assert 0 <= auc <= 1
    ep.screenshot(root, artifacts, "true_class")

    # back to the prediction, then the correctly classified coffee: no toggle
    _click_until(root, ".cw-truth-toggle input[value=prediction] + label", 282)
    assert (
        ep.canvas_hash(root) == h0 and root.locator(".cw-truth-toggle input[value=prediction]").is_checked()
    )
    _click_until(root, ".cw-thumb[data-index='1']", 967)  # espresso
    assert truth.get_attribute("data-misclassified") == "false" and "predicted ✓" in truth.inner_text()
    assert root.locator(".cw-truth-toggle").is_hidden() and root.locator(".cw-understanding").is_hidden()
    print(f"\ntrue-class toggle to the repainted map: {ms:.0f} ms")


def test_a_multilabel_model_is_explained_per_label(page, artifacts: Path) -> None:
    root = _root(page, 2)
    assert root.locator(".cw-classes .cw-side-head").inner_text().lower() == "label"
    names = root.locator(".cw-class .cw-class-name").all_inner_texts()
    assert len(names) == 5 and all(n.startswith("label ") for n in names)

    def sigmoids() -> dict[str, float]:
        rows = root.locator(".cw-class")
        return {
            rows.nth(i).locator(".cw-class-name").inner_text(): float(
                rows.nth(i).locator(".cw-class-pct").inner_text().rstrip("%")
            )
            / 100
            for i in range(rows.count())
        }

    first = sigmoids()
    # independent sigmoids, not one softmax, and none saturated (a degenerate head reads 0% or 100%)
    assert sum(first.values()) > 1.2 and all(0.05 < v < 0.95 for v in first.values()), first
    assert "label sigmoid" in root.locator(".cw-curves-svg").inner_html()
    root.evaluate(ep.SNAP, "cwLabelA")
    second = int(root.locator(".cw-class").nth(1).get_attribute("data-index"))
    ep.timed(root, ".cw-class:nth-child(2)", None, {"target": second})
    # the second label's map is its own: most of the heatmap changes, not a rounding difference
    changed = root.evaluate(ep.SNAP_DIFF, "cwLabelA")
    assert changed > 0.2, f"only {changed:.1%} of the heatmap changed between two labels"
    caption = root.locator(".cw-panel-overlay figcaption").inner_text()
    assert caption.endswith(f"label {second}"), caption
    ep.wait_ready(root)
    ins = root.locator("[data-curve=a-insertion]").inner_text()
    assert 0 < float(ins) < 1  # the area under a sigmoid curve
    ep.screenshot(root, artifacts, "multilabel")
    # another image: its own sigmoids (the head reads the image, not only its bias)
    root.locator(".cw-thumb[data-index='1']").click()
    page.wait_for_function(
        "(r) => r.querySelector('.cw-panel-image figcaption').textContent.startsWith('Image 2')",
        arg=root.element_handle(),
        timeout=120_000,
    )
    ep.wait_ready(root)
    other = sigmoids()
    common = set(first) & set(other)
    assert max(abs(first[n] - other[n]) for n in common) >= 0.01, (first, other)


def test_a_detector_draws_its_boxes_and_clicking_one_explains_it(page, artifacts: Path) -> None:
    root = _root(page, 3)
    assert root.locator(".cw-classes").get_attribute("data-kind") == "detections"
    drawn = root.locator(".cw-boxes .cw-box")
    assert drawn.count() == 5  # the top 5 detections, drawn over the image
    listed = root.locator(".cw-class .cw-class-name").all_inner_texts()
    assert len(listed) == 5 and all(" · box " in n for n in listed), listed
    first = int(root.locator(".cw-class[aria-selected=true]").get_attribute("data-index"))
    assert root.locator(f".cw-boxes .cw-box[data-index='{first}']").get_attribute("aria-pressed") == "true"
    root.evaluate(ep.SNAP, "cwBoxA")
    third = drawn.nth(2)
    i = int(third.get_attribute("data-index"))
    assert i != first
    _click_until(root, f".cw-boxes .cw-box[data-index='{i}']", i)  # a click on the box explains it
    assert third.get_attribute("aria-pressed") == "true"
    assert int(root.locator(".cw-class[aria-selected=true]").get_attribute("data-index")) == i
    caption = root.locator(".cw-panel-overlay figcaption").inner_text()
    assert caption.endswith(f"box {i}"), caption
    changed = root.evaluate(ep.SNAP_DIFF, "cwBoxA")
    assert changed > 0.1, f"only {changed:.1%} of the heatmap changed between two detections"
    ep.wait_ready(root)
    assert "detection score" in root.locator(".cw-curves-svg").inner_html()
    ep.screenshot(root, artifacts, "detection_boxes")


def test_a_segmentation_model_lists_its_classes_and_outlines_the_predicted_pixels(
    page, artifacts: Path
) -> None:
    root = _root(page, 4)
    assert root.locator(".cw-classes").get_attribute("data-kind") == "segmentation"
    names = root.locator(".cw-class .cw-class-name").all_inner_texts()
    assert names and all(n.startswith("region ") for n in names)
    shares = [float(t.rstrip("%")) / 100 for t in root.locator(".cw-class .cw-class-pct").all_inner_texts()]
    assert len([v for v in shares if v > 0]) >= 2 and sum(shares) == pytest.approx(1, abs=0.05), shares
    outline = root.locator("[data-control=outline]")
    assert outline.is_visible() and outline.is_checked()
    with_outline = ep.canvas_hash(root, ".cw-panel-image canvas")
    outline.uncheck()
    assert ep.canvas_hash(root, ".cw-panel-image canvas") != with_outline, "the outline drew nothing"
    outline.check()
    assert ep.canvas_hash(root, ".cw-panel-image canvas") == with_outline
    # another class: its own outline and its own map
    root.evaluate(ep.SNAP, "cwSegA")
    second = int(root.locator(".cw-class").nth(1).get_attribute("data-index"))
    ep.timed(root, ".cw-class:nth-child(2)", None, {"target": second})
    assert ep.canvas_hash(root, ".cw-panel-image canvas") != with_outline
    assert root.evaluate(ep.SNAP_DIFF, "cwSegA") > 0.1
    ep.wait_ready(root)
    assert "class score over its pixels" in root.locator(".cw-curves-svg").inner_html()
    ep.screenshot(root, artifacts, "segmentation_outline")
