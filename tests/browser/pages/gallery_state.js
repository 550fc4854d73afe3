// Synthetic AuditExplorer state: 6 cards (one unreadable, one misclassified), two class mean maps,
// two named regions and one finding. Thumbnails are real JPEG bytes made here, as the kernel sends.

async function jpeg(draw, size = 32) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  draw(canvas.getContext("2d"), size);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  return new DataView(await blob.arrayBuffer());
}

function levels(h, w, cx, cy) {
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = Math.round(255 * Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 4));
  return new DataView(out.buffer);
}

export async function galleryState() {
  const stamp = await jpeg((ctx, s) => {
    ctx.fillStyle = "#505a64";
    ctx.fillRect(0, 0, s, s);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, 5, 5);
  });
  const plain = await jpeg((ctx, s) => {
    ctx.fillStyle = "#3c6e46";
    ctx.fillRect(0, 0, s, s);
  });
  const items = [0, 1, 2, 3, 4, 5].map((i) => ({
    index: i,
    thumb: i === 3 ? new DataView(new ArrayBuffer(0)) : i % 2 ? plain : stamp,
    map: i === 3 ? new DataView(new ArrayBuffer(0)) : levels(8, 8, i % 2 ? 5 : 0, i % 2 ? 5 : 0),
    map_h: i === 3 ? 0 : 8,
    map_w: i === 3 ? 0 : 8,
    correct: i === 4 ? false : i === 3 ? null : true,
    error: i === 3 ? "OSError: read error on item 3" : null,
    label_name: i % 2 ? "v_stripes" : "h_stripes",
    predicted_name: i === 4 ? "v_stripes" : i % 2 ? "v_stripes" : "h_stripes",
    caption: i === 3 ? "#3 unreadable" : `#${i} ${i % 2 ? "v_stripes" : "h_stripes"} → ${i === 4 || i % 2 ? "v_stripes" : "h_stripes"}`,
    value: 0.1 * i,
    value_text: `region_top_left ${(0.1 * i).toFixed(2)}`,
    box: i === 3 ? null : [0.25, 0.25, 0.75, 0.75],
    title: `#${i}`,
  }));
  return {
    panels: ["findings", "classes", "controls", "grid", "pager"],
    title: "Audit: 6 images, method hirescam at layer 'features.6', 1 unreadable",
    columns: ["index", "label_name", "predicted_name", "probability", "correct", "error", "region_top_left"].map((name) => ({ name })),
    sort_by: "region_top_left",
    descending: true,
    filters: [],
    page: 0,
    page_size: 48,
    total: 6,
    n_rows: 6,
    items,
    class_by: "predicted",
    class_maps: [
      { name: "h_stripes", count: 3, h: 8, w: 8, map: levels(8, 8, 0, 0), thumb: stamp, index: 0 },
      { name: "v_stripes", count: 2, h: 8, w: 8, map: levels(8, 8, 5, 5), thumb: plain, index: 1 },
    ],
    regions: [
      { name: "top_left", box: [0, 0, 0.25, 0.25] },
      { name: "bottom_right", box: [0.75, 0.75, 1, 1] },
    ],
    findings: [
      {
        id: 0,
        class_name: "h_stripes",
        kind: "region",
        region: "top_left",
        box: [0, 0, 0.25, 0.25],
        text: "h_stripes → top_left (0, 0, 8, 8): 2 of 3 images (67%) put 26% of their map energy there",
        flips: "",
        filters: [{ column: "predicted_name", op: "==", value: "h_stripes" }],
        sort_by: "region_top_left",
      },
    ],
    can_test: true,
    colormap: "jet",
    opacity: 0.5,
    show_maps: true,
    show_boxes: true,
    show_regions: true,
    thumb_px: 96,
    selected: -1,
    message: "",
  };
}
