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

// float -> IEEE half (round to nearest), little-endian, as numpy's astype("<f2") writes it
function toHalf(v) {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (Number.isNaN(v)) return 0x7e00;
  if (exp <= 0) return sign;
  if (exp >= 31) return sign | 0x7c00;
  let h = sign | (exp << 10) | (mant >> 13);
  if (mant & 0x1000) h += 1;
  return h;
}

/** 200 points: class 0 (h_stripes) around (0.25, 0.3), class 1 around (0.75, 0.7); every 10th is wrong;
 *  point 199 has no embedding (NaN). Returns the traits and the decoded coordinates for the test. */
export function scatterState() {
  const n = 200;
  const xy = new DataView(new ArrayBuffer(4 * n));
  const cls = new DataView(new ArrayBuffer(2 * n));
  const flags = new Uint8Array(n);
  const points = [];
  let seed = 7;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < n; i++) {
    const c = i < 100 ? 0 : 1;
    let x = (c ? 0.75 : 0.25) + 0.12 * (rand() - 0.5);
    let y = (c ? 0.7 : 0.3) + 0.12 * (rand() - 0.5);
    if (i === 199) x = y = NaN;
    xy.setUint16(4 * i, toHalf(x), true);
    xy.setUint16(4 * i + 2, toHalf(y), true);
    cls.setUint16(2 * i, c, true);
    flags[i] = i % 10 === 0 ? 1 : 0;
    points.push([x, y]);
  }
  return {
    traits: {
      scatter_n: n,
      scatter_xy: xy,
      scatter_class: cls,
      scatter_flags: new DataView(flags.buffer),
      scatter_classes: ["h_stripes", "v_stripes"],
      scatter_shown: new DataView(new ArrayBuffer(0)),
      scatter_color: "class",
      lasso: {},
    },
    points,
  };
}

function path(n, peak) {
  const out = new DataView(new ArrayBuffer(4 * n));
  for (let i = 0; i < n; i++) out.setFloat32(4 * i, peak * Math.sin((Math.PI * (i + 1)) / (n + 1)), true);
  return out;
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
    ...(i === 4 ? { map_b: levels(8, 8, 0, 7), map_b_h: 8, map_b_w: 8 } : {}),
  }));
  return {
    panels: ["findings", "classes", "embedding", "confusion", "slices", "compare", "controls", "grid", "pager", "focus"],
    ...scatterState().traits,
    confusion: {
      names: ["h_stripes", "v_stripes"],
      counts: [
        [2, 0],
        [1, 2],
      ],
      pairs: [{ label: "v_stripes", predicted: "h_stripes", count: 1, share: 1 / 3 }],
    },
    slice_list: [
      {
        id: 1,
        label_name: "v_stripes",
        size: 4,
        accuracy: 0.25,
        baseline: 0.95,
        description: "4 images of 'v_stripes': 25% correct against 95% for the rest of the class; their maps favour the top-left.",
        map: levels(8, 8, 0, 0),
        h: 8,
        w: 8,
        thumb: stamp,
        index: 4,
      },
    ],
    compare_names: ["a", "b"],
    compare_classes: [
      { name: "v_stripes", images: 3, accuracy_a: 0.67, accuracy_b: 1, agreement: 0.67, map_disagreement: 0.4 },
      { name: "h_stripes", images: 2, accuracy_a: 1, accuracy_b: 1, agreement: 1, map_disagreement: 0.1 },
    ],
    compare_summary: "5 images audited by both",
    focus: {
      index: 4,
      label_name: "h_stripes",
      predicted_name: "v_stripes",
      probability: 0.61,
      thumb: stamp,
      h: 8,
      w: 8,
      predicted_map: levels(8, 8, 5, 5),
      true_map: levels(8, 8, 0, 0),
      predicted_path: path(24, 0.3),
      true_path: path(24, 0.8),
      kept: Array.from({ length: 24 }, (_, k) => (k + 1) / 25),
    },
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
