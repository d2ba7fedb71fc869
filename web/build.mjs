// Builds the widget into the gateway's embedded directory
// (services/gateway/internal/web/dist): the bundle under a content-hashed
// name in assets/, the loader widget.js that names it, the demo page, and a
// gzip copy of each (the gateway serves it to clients that accept gzip).
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync, constants } from "node:zlib";

const out = new URL("../services/gateway/internal/web/dist/", import.meta.url).pathname;
const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "none",
  write: false,
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".css": "text" },
};

// Keep the committed README; everything else is rebuilt.
for (const name of await readdir(out)) {
  if (name !== "README.md") await rm(join(out, name), { recursive: true, force: true });
}
await mkdir(join(out, "assets"), { recursive: true });

const widget = await esbuild.build({ ...common, entryPoints: ["src/widget.tsx"] });
const code = widget.outputFiles[0].contents;
const hash = createHash("sha256").update(code).digest("hex").slice(0, 12);
const bundle = `assets/widget-${hash}.js`;
const loader = await esbuild.build({
  ...common,
  entryPoints: ["src/loader.ts"],
  define: { __WIDGET_BUNDLE__: JSON.stringify(bundle) },
});

const files = {
  [bundle]: code,
  "widget.js": loader.outputFiles[0].contents,
  "demo.html": await readFile("src/demo.html"),
};
for (const [name, body] of Object.entries(files)) {
  await writeFile(join(out, name), body);
  await writeFile(join(out, name + ".gz"), gzipSync(body, { level: constants.Z_BEST_COMPRESSION }));
  console.log(`${name}: ${body.length} bytes, ${gzipSync(body, { level: 9 }).length} gzipped`);
}
