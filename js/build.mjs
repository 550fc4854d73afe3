// Bundle js/src into camwidget/static (deterministic: no timestamps, no source maps, no absolute paths).
// Each entry of BUNDLES is one ES module + stylesheet pair that a Python widget loads as _esm / _css;
// another widget's front end is one more entry (its modules may share buffers.js, colormaps.js, theme.js).
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "..", "camwidget", "static");
const BUNDLES = [{ js: "src/index.js", css: "src/widget.css", name: "widget" }];

const common = {
  bundle: true,
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  absWorkingDir: here,
  charset: "utf8",
};

for (const bundle of BUNDLES) {
  await build({
    ...common,
    entryPoints: [bundle.js],
    outfile: path.join(outdir, `${bundle.name}.js`),
    format: "esm",
    target: ["es2020"],
  });
  await build({
    ...common,
    entryPoints: [bundle.css],
    outfile: path.join(outdir, `${bundle.name}.css`),
    target: ["chrome105", "firefox110", "safari16"],
  });
}
