// The true class of a misclassified image: a toggle beside the prediction that explains the true class
// instead (trait true_class), and camwidget.metrics.error_understanding's figures for the map shown
// (trait understanding): the highest true-class probability when keeping at most 25/50/100% of the
// pixels (ranked by the map, the rest black), and the true-class insertion AUC.
import { clear, h, uid } from "./dom.js";

function pct(x) {
  return `${Math.round(x * 100)}%`;
}

/** `onToggle(explainTrueClass)` sets the trait. */
export function trueClassBox(onToggle) {
  const name = uid("cw-truth");
  const inputs = [
    ["prediction", "Prediction"],
    ["true", "True class"],
  ].map(([value, label]) => {
    const id = uid("cw-truth-opt");
    const input = h("input", { type: "radio", name, id, value, onchange: () => onToggle(value === "true") });
    return [input, h("label", { for: id }, label)];
  });
  const verdict = h("p", { class: "cw-truth-verdict" });
  const toggle = h("div", { class: "cw-segmented cw-truth-toggle", role: "radiogroup", "aria-label": "Explain the prediction or the true class" }, inputs);
  const figures = h("div", { class: "cw-understanding", "aria-live": "polite" });
  const el = h("section", { class: "cw-truth", "aria-label": "True class", hidden: true }, h("div", { class: "cw-label" }, "True class"), verdict, toggle, figures);

  return {
    el,
    /**
     * @param {number} label the image's true class (-1: unknown); predicted: its top class; names: class
     * names; on: the toggle's state; understanding: the trait.
     */
    update(label, predicted, names, on, understanding) {
      el.hidden = !(label >= 0);
      if (el.hidden) return;
      const wrong = predicted >= 0 && predicted !== label;
      const name = (i) => names[i] ?? `class ${i}`;
      verdict.textContent = wrong ? `${name(label)} · the model says ${name(predicted)} ✗` : `${name(label)} · predicted ✓`;
      el.dataset.misclassified = String(wrong);
      toggle.hidden = !wrong;
      for (const [input] of inputs) input.checked = (input.value === "true") === Boolean(on);
      clear(figures);
      const u = understanding || {};
      if (!wrong || !Object.keys(u).length) {
        figures.hidden = true;
        return;
      }
      figures.hidden = false;
      if (!u.ranges) {
        figures.append(h("p", { class: "cw-hint" }, u.status || ""));
        return;
      }
      figures.append(
        h("p", { class: "cw-understanding-title" }, `Error understanding of the ${u.explained_name} map`),
        h(
          "table",
          { class: "cw-understanding-table" },
          h("tr", {}, h("th", {}, "pixels kept"), h("th", {}, `highest p(${u.label_name})`), h("th", {}, "at")),
          u.ranges.map((r, i) =>
            h("tr", { dataset: { range: String(r) } }, h("td", {}, `≤ ${pct(r)}`), h("td", { class: "cw-num" }, u.highest[i].toFixed(3)), h("td", { class: "cw-num" }, pct(u.area[i]))),
          ),
        ),
        h("p", { class: "cw-understanding-auc" }, `Insertion AUC for ${u.label_name}: `, h("b", { dataset: { figure: "insertion_auc" } }, u.insertion_auc.toFixed(3))),
      );
    },
  };
}
