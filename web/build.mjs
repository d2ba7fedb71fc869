// Builds the front-end into the gateway's embedded directory
// (services/gateway/internal/web/dist):
//   - the widget: widget.js, the launcher a host page's one tag names;
//   - the pages (console, privacy, dashboard; the widget's chat frame,
//     widget-frame) and the demo page: each an HTML file whose script and
//     stylesheet are content-hashed bundles in assets/;
// and a gzip copy of each file (the gateway serves it to clients that accept
// gzip).
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync, constants } from "node:zlib";

const out = new URL("../services/gateway/internal/web/dist/", import.meta.url).pathname;
const common = {
  bundle: true,
  minify: true,
  target: ["es2020"],
  legalComments: "none",
  write: false,
  jsx: "automatic",
  jsxImportSource: "preact",
};

// The pages: src/<name>.html names its bundles with the placeholders
// {{script}} and {{style}}; src/<name>.tsx is its entry. The widget's page
// is served as /widget-frame, beside the launcher /widget.js.
const pages = ["console", "privacy", "dashboard", "widget"];
const served = { widget: "widget-frame" };

// Keep the committed README; everything else is rebuilt.
for (const name of await readdir(out)) {
  if (name !== "README.md") await rm(join(out, name), { recursive: true, force: true });
}
await mkdir(join(out, "assets"), { recursive: true });

const files = {};
const hashed = (name, ext, body) => {
  const hash = createHash("sha256").update(body).digest("hex").slice(0, 12);
  const file = `assets/${name}-${hash}.${ext}`;
  files[file] = body;
  return file;
};

// The launcher's stylesheet is text it puts into its own shadow root.
const loader = await esbuild.build({ ...common, format: "iife", loader: { ".css": "text" }, entryPoints: ["src/loader.ts"] });
files["widget.js"] = loader.outputFiles[0].contents;
// The pages' icon, named in each page's head ({{icon}}): without one the
// browser asks for /favicon.ico, which the gateway does not serve.
const icon = "/" + hashed("icon", "svg", await readFile("src/icon.svg"));
files["demo.html"] = Buffer.from((await readFile("src/demo.html", "utf8")).replace("{{icon}}", icon));

for (const page of pages) {
  const built = await esbuild.build({ ...common, format: "esm", entryPoints: [`src/${page}.tsx`], outdir: "out" });
  const js = built.outputFiles.find((f) => f.path.endsWith(".js"));
  const css = built.outputFiles.find((f) => f.path.endsWith(".css"));
  const html = (await readFile(`src/${page}.html`, "utf8"))
    .replace("{{script}}", "/" + hashed(page, "js", js.contents))
    .replace("{{style}}", css ? "/" + hashed(page, "css", css.contents) : "")
    .replace("{{icon}}", icon);
  files[`${served[page] ?? page}.html`] = Buffer.from(html);
}

for (const [name, body] of Object.entries(files)) {
  const gz = gzipSync(body, { level: constants.Z_BEST_COMPRESSION });
  await writeFile(join(out, name), body);
  await writeFile(join(out, name + ".gz"), gz);
  console.log(`${name}: ${body.length} bytes, ${gz.length} gzipped`);
}
