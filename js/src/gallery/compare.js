// Two models on one dataset: per true class, both accuracies, how often they agree and how different
// their maps are. A click shows the class's images where the maps differ most; the cards show both maps.
import { h } from "../dom.js";
import { formatValue, percent } from "./format.js";

export const compare = {
  traits: ["compare_names", "compare_classes", "compare_summary"],
  render(model, ctx) {
    const [a, b] = model.get("compare_names") || [];
    const box = h("section", { class: "cw-audit-compare", "aria-label": "Two models compared" });
    if (!a) return box;
    box.append(
      h("div", { class: "cw-audit-heading" }, `Models ${a} and ${b} side by side: ${model.get("compare_summary")}`),
      h(
        "button",
        {
          type: "button",
          class: "cw-audit-button",
          dataset: { control: "disagree" },
          onclick: () => ctx.setMany({ filters: [{ column: "agree", op: "==", value: "false" }], sort_by: "map_disagreement", descending: true, page: 0 }),
        },
        "images they predict differently",
      ),
    );
    const table = h(
      "table",
      { class: "cw-audit-table" },
      h("tr", {}, ...["class", "images", `accuracy ${a}`, `accuracy ${b}`, "same prediction", "map disagreement"].map((t) => h("th", {}, t))),
    );
    for (const c of model.get("compare_classes") || []) {
      const open = () => ctx.setMany({ filters: [{ column: "label_name", op: "==", value: c.name }], sort_by: "map_disagreement", descending: true, page: 0 });
      table.append(
        h(
          "tr",
          { class: "cw-audit-compare-row", tabindex: "0", dataset: { cls: c.name }, onclick: open, onkeydown: (e) => e.key === "Enter" && open() },
          h("td", {}, c.name),
          h("td", { class: "cw-audit-num" }, String(c.images)),
          h("td", { class: "cw-audit-num" }, percent(c.accuracy_a)),
          h("td", { class: "cw-audit-num" }, percent(c.accuracy_b)),
          h("td", { class: "cw-audit-num" }, percent(c.agreement)),
          h("td", { class: "cw-audit-num" }, formatValue(c.map_disagreement)),
        ),
      );
    }
    box.append(table);
    return box;
  },
};
