// The shortcut findings: one button each; a click filters the gallery to the finding's class, sorted by
// the images' energy in its place. "Test" asks the kernel to run the paste/remove counterfactual.
import { h } from "../dom.js";
import { REGION_COLORS } from "./draw.js";

export const findings = {
  traits: ["findings", "regions", "can_test"],
  render(model, ctx) {
    const list = model.get("findings") || [];
    const box = h("section", { class: "cw-audit-findings", "aria-label": "Shortcut findings" });
    if (!list.length) {
      box.append(h("div", { class: "cw-audit-muted" }, "No shortcut found: no class leans on a region or a spot more than the others."));
      return box;
    }
    box.append(h("div", { class: "cw-audit-heading" }, "Possible shortcuts, strongest first (click one to see its images)"));
    const regions = (model.get("regions") || []).map((r) => r.name);
    for (const f of list) {
      const color = f.kind === "region" && regions.includes(f.region) ? REGION_COLORS[regions.indexOf(f.region) % REGION_COLORS.length] : "#ff9100";
      const swatch = h("span", { class: "cw-audit-swatch", style: { borderColor: color }, "aria-hidden": "true" });
      const button = h(
        "button",
        {
          type: "button",
          class: "cw-audit-finding",
          dataset: { finding: String(f.id) },
          title: "Show this class's images, the ones leaning most on the place first",
          onclick: () => ctx.setMany({ filters: f.filters, sort_by: f.sort_by, descending: true, page: 0 }),
        },
        swatch,
        h("span", { class: "cw-audit-finding-text" }, f.text),
      );
      const row = h("div", { class: "cw-audit-finding-row" }, button);
      if (f.flips) {
        row.append(h("span", { class: "cw-audit-flips", dataset: { finding: String(f.id) } }, f.flips));
      } else if (model.get("can_test")) {
        row.append(
          h(
            "button",
            {
              type: "button",
              class: "cw-audit-button cw-audit-test",
              title: "Paste the place onto other classes' images and remove it from this class's: count flipped predictions",
              onclick: (ev) => {
                ev.currentTarget.disabled = true;
                ev.currentTarget.textContent = "testing…";
                ctx.send({ event: "test", finding: f.id });
              },
            },
            "test it",
          ),
        );
      }
      box.append(row);
    }
    return box;
  },
};
