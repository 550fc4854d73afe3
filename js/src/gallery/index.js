// AuditExplorer front end: the gallery of an audit, as a column of panels. The kernel holds the table
// and does the sorting, filtering and paging; each panel draws its traits and sends the user's
// choices back as trait changes (or a message: "open" an image, "test" a finding).
//
// Adding a panel: write a module exporting { traits: [...], render(model, ctx) -> Node }, register it in
// PANELS under a name, and have the kernel list that name in the `panels` trait. Each panel is redrawn
// only when one of its traits changes. ctx.setMany(values) sets traits, ctx.send(msg) messages the
// kernel, ctx.listen(fn) hears the kernel's answers (fn(msg, buffers)) until the panel is redrawn.
import { h } from "../dom.js";
import { watchTheme } from "../theme.js";
import { classes } from "./classes.js";
import { compare } from "./compare.js";
import { confusion } from "./confusion.js";
import { controls } from "./controls.js";
import { findings } from "./findings.js";
import { focus } from "./focus.js";
import { grid, pager } from "./grid.js";
import { embedding } from "./scatter.js";
import { slices } from "./slices.js";

export const PANELS = { findings, classes, embedding, confusion, slices, compare, controls, grid, pager, focus };

const header = {
  traits: ["title", "message"],
  render(model) {
    return h(
      "header",
      { class: "cw-audit-header" },
      h("div", { class: "cw-audit-title" }, model.get("title")),
      model.get("message") ? h("div", { class: "cw-audit-message", role: "status" }, model.get("message")) : null,
    );
  },
};

function render({ model, el }) {
  const root = h("div", { class: "cw-audit" });
  el.append(root);
  const disposers = [watchTheme(root)];
  const ctx = {
    setMany(values) {
      for (const [k, v] of Object.entries(values)) model.set(k, v);
      model.save_changes();
    },
    send(msg) {
      model.send(msg);
    },
  };
  const listeners = new Set();
  const onCustom = (msg, buffers) => {
    for (const fn of listeners) fn(msg, buffers);
  };
  model.on("msg:custom", onCustom);
  disposers.push(() => model.off("msg:custom", onCustom));
  const mount = (panel, name) => {
    const box = h("div", { class: "cw-audit-panel", dataset: { panel: name } });
    root.append(box);
    const mine = [];
    const panelCtx = {
      ...ctx,
      listen(fn) {
        mine.push(fn);
        listeners.add(fn);
      },
    };
    const draw = () => {
      for (const fn of mine.splice(0)) listeners.delete(fn);
      box.replaceChildren(panel.render(model, panelCtx));
    };
    draw();
    for (const trait of panel.traits) {
      model.on(`change:${trait}`, draw);
      disposers.push(() => model.off(`change:${trait}`, draw));
    }
  };
  mount(header, "header");
  for (const name of model.get("panels") || Object.keys(PANELS)) {
    if (PANELS[name]) mount(PANELS[name], name);
  }
  root.dataset.ready = "1";
  return () => {
    for (const d of disposers) d();
    root.remove();
  };
}

export default { render };
