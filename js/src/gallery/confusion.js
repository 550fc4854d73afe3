// The confusion view: counts per (true class, predicted class). A cell is a button: its images, the most
// confident first. Beyond a couple of dozen classes only the most confused pairs are listed.
import { h } from "../dom.js";
import { percent } from "./format.js";

/** The filters and order a click on cell (label, predicted) applies. */
export function cellQuery(label, predicted) {
  return {
    filters: [
      { column: "label_name", op: "==", value: label },
      { column: "predicted_name", op: "==", value: predicted },
    ],
    sort_by: "probability",
    descending: true,
    page: 0,
  };
}

/** Cell background: the diagonal in blue by its share of the row, mistakes in orange (twice as strong). */
export function cellColor(count, rowTotal, diagonal) {
  const share = rowTotal ? count / rowTotal : 0;
  return diagonal ? `rgba(25, 118, 210, ${share.toFixed(2)})` : `rgba(230, 81, 0, ${Math.min(1, 2 * share).toFixed(2)})`;
}

export const confusion = {
  traits: ["confusion"],
  render(model, ctx) {
    const data = model.get("confusion") || {};
    const box = h("section", { class: "cw-audit-confusion", "aria-label": "Confusion matrix" });
    const names = data.names || [];
    if (!names.length) return box;
    box.append(h("div", { class: "cw-audit-heading" }, "Confusion matrix: rows true class, columns prediction (click a cell for its images)"));
    const row = h("div", { class: "cw-audit-confusion-row" });
    if (data.counts) {
      const table = h("table", { class: "cw-audit-matrix" });
      const head = h("tr", {}, h("th", { class: "cw-audit-corner" }, "label \\ predicted"));
      for (const p of names) head.append(h("th", { class: "cw-audit-col", title: p }, h("span", {}, p)));
      table.append(head);
      data.counts.forEach((counts, i) => {
        const total = counts.reduce((a, b) => a + b, 0);
        const tr = h("tr", {}, h("th", { class: "cw-audit-rowhead", title: names[i] }, names[i]));
        counts.forEach((c, j) => {
          const cell = h(
            "button",
            {
              type: "button",
              class: `cw-audit-cell${i === j ? " cw-audit-diag" : ""}`,
              title: `${names[i]} predicted as ${names[j]}: ${c} (${percent(total ? c / total : NaN)} of ${names[i]})`,
              dataset: { label: names[i], predicted: names[j], count: String(c) },
              disabled: c === 0,
              onclick: () => ctx.setMany(cellQuery(names[i], names[j])),
            },
            c ? String(c) : "",
          );
          cell.style.background = cellColor(c, total, i === j);
          tr.append(h("td", {}, cell));
        });
        table.append(tr);
      });
      row.append(table);
    }
    const pairs = data.pairs || [];
    const list = h("div", { class: "cw-audit-pairs" }, h("div", { class: "cw-audit-muted" }, pairs.length ? "Most confused pairs" : "No misclassified image."));
    for (const p of pairs) {
      list.append(
        h(
          "button",
          {
            type: "button",
            class: "cw-audit-pair",
            dataset: { label: p.label, predicted: p.predicted },
            onclick: () => ctx.setMany(cellQuery(p.label, p.predicted)),
          },
          `${p.label} → ${p.predicted}: ${p.count} (${percent(p.share)})`,
        ),
      );
    }
    row.append(list);
    box.append(row);
    return box;
  },
};
