// Bundle js/src into camwidget/static/widget.js + widget.css (deterministic: no timestamps,
// no source maps, no absolute paths), which the Python widget loads as _esm / _css.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "..", "camwidget", "static");
const common = {
  bundle: true,
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  absWorkingDir: here,
  charset: "utf8",
};

await build({
  ...common,
  entryPoints: ["src/index.js"],
  outfile: path.join(outdir, "widget.js"),
  format: "esm",
  target: ["es2020"],
});
await build({
  ...common,
  entryPoints: ["src/widget.css"],
  outfile: path.join(outdir, "widget.css"),
  target: ["chrome100", "firefox100", "safari15"],
});
