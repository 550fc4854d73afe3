// Bundle js/src into camwidget/static (deterministic: no timestamps, no source maps, no absolute
// paths), which the Python widgets load as _esm / _css:
//   src/index.js + src/widget.css                 -> widget.js + widget.css   (CamExplorer)
//   src/gallery/index.js + src/gallery/gallery.css -> gallery.js + gallery.css (AuditExplorer)
// Both bundles share src/buffers.js (decoding of bytes traits), src/colormaps.js, dom.js and theme.js.
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

const bundles = [
  ["src/index.js", "src/widget.css", "widget"],
  ["src/gallery/index.js", "src/gallery/gallery.css", "gallery"],
];
for (const [js, css, name] of bundles) {
  await build({
    ...common,
    entryPoints: [js],
    outfile: path.join(outdir, `${name}.js`),
    format: "esm",
    target: ["es2020"],
  });
  await build({
    ...common,
    entryPoints: [css],
    outfile: path.join(outdir, `${name}.css`),
    target: ["chrome105", "firefox110", "safari16"], // container queries (widget.css)
  });
}
