// What the browser tests share: a real `parley all` (bin/parley, built by
// `make build`) on loopback with a data directory of its own, Debian's
// chromium driven by playwright-core, calls to the API, polling, the
// accessibility and Content Security Policy checks, a raw WebSocket on the
// live stream, the load average, the screenshots directory (test-results/),
// and what a failed test's browser showed.
import assert from "node:assert/strict";
import { afterEach } from "node:test";
import { spawn, execFileSync } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { AxeBuilder } from "@axe-core/playwright";

const root = new URL("../../", import.meta.url).pathname;
export const parley = process.env.PARLEY_BIN ?? join(root, "bin/parley");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const results = new URL("../test-results/", import.meta.url).pathname;

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

// startShop serves a shop's page on loopback carrying the widget of
// gateway gw, with the tag and the CSP lines docs/widget.md gives a host
// page; it resolves to the page's address and a close function.
export async function startShop(gw) {
  const port = await freePort();
  const server = createServer((req, res) => {
    if (req.url !== "/") return void res.writeHead(404).end();
    res.writeHead(200, {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Security-Policy": `default-src 'self'; script-src 'self' ${gw}; frame-src ${gw}`,
    });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<meta name="viewport" content="width=device-width"></head>
<body><main><h1>A shop</h1><p>Its page.</p></main>
<script src="${gw}/widget.js" data-tenant="demo" async></script></body></html>`);
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return { url: `http://localhost:${port}`, close: () => server.close() };
}

// poll calls fn until it returns a truthy value, for a generous deadline.
export async function poll(what, fn, deadlineMs = 30000) {
  const end = Date.now() + deadlineMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/**
 * startParley runs `parley all` on a free loopback port with a data
 * directory of its own; args are added to its command line (such as
 * ["--clickhouse", "auto"]; ClickHouse is off unless given). stop() ends it
 * and removes its data.
 */
export async function startParley(args = []) {
  await mkdir(results, { recursive: true });
  const dataDir = await mkdtemp(join(tmpdir(), "parley-web-"));
  const port = await freePort();
  const gw = `http://127.0.0.1:${port}`;
  const all = ["all", "--http-addr", `127.0.0.1:${port}`, "--data-dir", dataDir, "--log-level", "warn"];
  if (!args.includes("--clickhouse")) all.push("--clickhouse", "off");
  const server = spawn(parley, [...all, ...args], { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise((r) => server.once("exit", r));
  await poll("parley to answer /readyz", async () => (await fetch(`${gw}/readyz`)).ok, 120000);
  return {
    gw,
    dataDir,
    /** A try-out token of `parley token`. */
    token(role, id, tenant = "demo") {
      return execFileSync(parley, ["token", "--data-dir", dataDir, "--tenant", tenant, "--role", role, "--id", id]).toString().trim();
    },
    /** api calls the API with a token, answering the JSON (null for 204); a failure throws. */
    async api(tok, method, path, body) {
      const r = await fetch(gw + path, {
        method,
        headers: { ...(tok ? { Authorization: `Bearer ${tok}` } : {}), ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
    async stop() {
      server.kill("SIGTERM");
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// playwright-core disables Chromium's third-party storage partitioning,
// under which a browser as shipped gives the widget's frame its storage (per
// top-level site); without it, a frame's storage is refused. The last
// --disable-features wins: Playwright's list, less that feature.
const disabledFeatures = [
  "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades", "HttpsFirstBalancedModeAutoEnable",
  "LensOverlay", "MediaRouter", "PaintHolding", "AvoidCorsURLLoaderRestartOnRedirect", "OptimizationHints",
  "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch",
];

const launchOptions = {
  executablePath: chromiumPath,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--disable-features=${disabledFeatures.join(",")}`,
  ],
};

export function launchBrowser() {
  return chromium.launch(launchOptions);
}

/**
 * launchProfile opens a browser on the profile directory dir (made when
 * missing) as one persistent context under cspWatch: closed and opened again
 * on the same directory, it is a visitor's browser coming back, with what
 * the profile stored.
 */
export async function launchProfile(dir, options = {}) {
  return cspWatch(await chromium.launchPersistentContext(dir, { ...launchOptions, ...options }));
}

const cspSeen = new WeakMap();

/**
 * cspWatch collects the Content Security Policy violations of every page
 * and frame of a browser context (a frame of another origin too): the
 * securitypolicyviolation events an init script hears in each document, and
 * Chromium's console reports (which also name what an event may not, such
 * as a refused eval). Call it before the context opens a page; noCSPViolations
 * then fails the test on any. It answers ctx.
 */
export async function cspWatch(ctx) {
  const seen = [];
  cspSeen.set(ctx, seen);
  watch(ctx);
  await ctx.exposeBinding("parleyTestCSPViolation", (_source, v) => seen.push(v));
  await ctx.addInitScript(() =>
    addEventListener(
      "securitypolicyviolation",
      (e) => globalThis.parleyTestCSPViolation?.(`${e.effectiveDirective} refused ${e.blockedURI || "inline"} in ${e.documentURI} (${e.sourceFile}:${e.lineNumber})`),
      true,
    ),
  );
  const onPage = (page) => page.on("console", (m) => m.text().includes("Content Security Policy") && seen.push(m.text()));
  ctx.pages().forEach(onPage);
  ctx.on("page", onPage);
  return ctx;
}

// The contexts under cspWatch still open, and what each saw go wrong: a
// failed test's report (failureReport) shows them as they were when it
// failed, which its timeout's message alone does not.
const openContexts = new Set();
const troubles = new WeakMap();
const troublesKept = 50;

// urlPath is what a report shows of an address: its query may carry a token.
const urlPath = (url) => new URL(url).pathname;

function watch(ctx) {
  openContexts.add(ctx);
  ctx.on("close", () => openContexts.delete(ctx));
  const seen = [];
  troubles.set(ctx, seen);
  const note = (what) => {
    seen.push(`${new Date().toISOString()} ${what}`);
    if (seen.length > troublesKept) seen.shift();
  };
  ctx.on("response", (r) => r.status() >= 400 && note(`${r.request().method()} ${urlPath(r.url())}: ${r.status()}`));
  ctx.on("requestfailed", (r) => note(`${r.method()} ${urlPath(r.url())} failed: ${r.failure()?.errorText}`));
  const onPage = (page) => {
    page.on("console", (m) => m.type() === "error" && note(`console: ${m.text()}`));
    page.on("pageerror", (e) => note(`uncaught: ${e.message}`));
  };
  ctx.pages().forEach(onPage);
  ctx.on("page", onPage);
}

// within answers what p resolves to, or why it did not within a few
// seconds: a failed test's browser may be stuck.
const within = (p) => Promise.race([p, new Promise((r) => setTimeout(() => r("(no answer in 5 s)"), 5000))]).catch((e) => `(${e.message})`);

// failureReport prints, for a test that failed, each open context's
// troubles and the text of each of its pages and frames, and saves a
// screenshot of each page (test-results/failed-*.png).
async function failureReport(name) {
  const slug = name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60);
  let n = 0;
  for (const ctx of openContexts) {
    console.log(`failed "${name}": a context open at the failure; what went wrong in it:\n  ${troubles.get(ctx).join("\n  ") || "nothing seen"}`);
    for (const page of ctx.pages()) {
      const file = join(results, `failed-${slug}-${++n}.png`);
      console.log(`  page ${urlPath(page.url())}, screenshot ${await within(page.screenshot({ path: file }).then(() => file))}`);
      for (const frame of page.frames()) {
        const text = await within(frame.evaluate(() => document.body?.innerText ?? ""));
        console.log(`  frame ${urlPath(frame.url())} shows:\n    ${String(text).slice(0, 2000).replaceAll("\n", "\n    ")}`);
      }
    }
  }
}

afterEach(async (t) => {
  if (!t.passed) await failureReport(t.name);
});

/** noCSPViolations fails if a page or frame of ctx (under cspWatch) broke its policy. */
export function noCSPViolations(ctx, what) {
  const seen = cspSeen.get(ctx);
  assert.ok(seen, `${what}: the context is not under cspWatch`);
  assert.deepEqual(seen, [], `${what}: Content Security Policy violations`);
}

/** newContext opens a browser context under cspWatch. */
export async function newContext(browser, options = {}) {
  return cspWatch(await browser.newContext(options));
}

/**
 * openShadowRoots makes every shadow root of ctx's pages open, as a host
 * script that runs first can: axe-core finds frames through open shadow
 * roots only (the widget's launcher holds nothing of the visitor's; the frame
 * stays out of the host's reach).
 */
export function openShadowRoots(ctx) {
  return ctx.addInitScript(() => {
    const attach = Element.prototype.attachShadow;
    Element.prototype.attachShadow = function (init) {
      return attach.call(this, { ...init, mode: "open" });
    };
  });
}

/**
 * rawStream opens GET /v1/stream with token in a page of the gateway's
 * origin, in a context of its own, as a client other than the pages would:
 * saw() answers the events received, closed() the close's code and reason
 * (null while open), send(v) sends a frame.
 */
export async function rawStream(browser, gw, token) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${gw}/healthz`);
  await page.evaluate(
    (tok) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.origin.replace("http", "ws")}/v1/stream?access_token=${tok}`);
        globalThis.saw = [];
        globalThis.wsClosed = null;
        ws.onmessage = (m) => globalThis.saw.push(JSON.parse(m.data));
        ws.onclose = (c) => (globalThis.wsClosed = { code: c.code, reason: c.reason });
        ws.onopen = () => resolve();
        ws.onerror = reject;
        globalThis.ws = ws;
      }),
    token,
  );
  return {
    saw: () => page.evaluate(() => globalThis.saw),
    closed: () => page.evaluate(() => globalThis.wsClosed),
    send: (v) => page.evaluate((v) => globalThis.ws.send(JSON.stringify(v)), v),
    close: () => ctx.close(),
  };
}

// holdAnswers routes ctx's calls of method to addresses matching re: each
// is made, and answered by the server, at once; its answer waits in parked
// (a function that hands it to the page) until the test lets it go.
// release() hands over every answer parked and lets later calls through.
export async function holdAnswers(ctx, re, method = "GET") {
  const parked = [];
  let holding = true;
  await ctx.route(re, async (route) => {
    if (!holding || route.request().method() !== method) return route.fallback();
    const response = await route.fetch();
    parked.push(() => route.fulfill({ response }));
  });
  return {
    parked,
    async release() {
      holding = false;
      for (const answer of parked) await answer();
    },
  };
}

// holdBack routes ctx's live stream to the real one, except the frames
// hold(event) picks, kept in held (as the gateway's full pipeline drops an
// event); send(frame) sends the page a frame, such as the resync the
// gateway then sends.
export async function holdBack(ctx, hold) {
  const held = [];
  let toPage = null;
  await ctx.routeWebSocket(/\/v1\/stream\?/, (ws) => {
    const server = ws.connectToServer();
    toPage = ws;
    server.onMessage((m) => {
      if (hold(JSON.parse(m))) held.push(m);
      else ws.send(m);
    });
  });
  return { held, send: (m) => toPage.send(m) };
}

export const resyncFrame = JSON.stringify({ type: "resync" });

// gateStream holds each handshake of ctx's live stream with the gateway
// until release(): Playwright awaits an async route handler before it opens
// a page's socket that the handler did not connect, and a connected one
// opens when the gateway's does, so the page's stream stays connecting
// meanwhile. asked counts the handshakes begun; the first refused of them
// are closed at once, as a gateway out of reach would.
export async function gateStream(ctx, refused = 0) {
  let release;
  const gate = new Promise((r) => (release = r));
  const stream = { asked: 0, release };
  await ctx.routeWebSocket(/\/v1\/stream\?/, async (ws) => {
    if (++stream.asked <= refused) return ws.close({ code: 1011, reason: "refused by the test" });
    await gate;
    ws.connectToServer();
  });
  return stream;
}

// noteFetches makes every frame of ctx note the address of each fetch it
// makes, as it makes it, in parleyTestFetched.
export const noteFetches = (ctx) =>
  ctx.addInitScript(() => {
    const native = fetch;
    globalThis.fetch = (...a) => {
      (globalThis.parleyTestFetched ??= []).push(String(a[0]));
      return native(...a);
    };
  });

/** loadAverage answers the machine's 1, 5 and 15 minute load averages, for the figures printed. */
export async function loadAverage() {
  return (await readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ");
}

/**
 * staffPage opens a staff page on the gateway's origin signed in with a
 * try-out token, through the page's own sign-in form; its context is under
 * cspWatch.
 */
export async function staffPage(browser, gw, path, token, viewport = { width: 1280, height: 800 }) {
  const ctx = await newContext(browser, { viewport });
  const page = await ctx.newPage();
  await page.goto(gw + path);
  await signIn(page, token);
  return page;
}

/** signIn signs the staff page in with a try-out token, through its own sign-in form. */
export async function signIn(page, token) {
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

/**
 * accessible fails on any serious or critical violation axe-core finds on
 * the page; it answers axe-core's results.
 */
export async function accessible(page, what) {
  const results = await new AxeBuilder({ page }).analyze();
  const { violations } = results;
  const bad = violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  assert.deepEqual(bad, [], `${what}: serious or critical accessibility violations`);
  return results;
}

export function screenshot(page, name) {
  return page.screenshot({ path: join(results, `${name}.png`) });
}

/**
 * accessibleWithFrame runs accessible() until axe-core has checked nodes in
 * a frame of the page (a target of more than one selector: the frame's, then
 * the node's in it): @axe-core/playwright leaves out a frame it failed to
 * analyse without a word, as a loaded machine makes it do at times. The
 * widget's launcher must be in an open shadow root (openShadowRoots).
 */
export const accessibleWithFrame = (page, what) =>
  poll(`axe-core to check ${what} in the chat frame`, async () => {
    const r = await accessible(page, what);
    return [...r.passes, ...r.violations, ...r.incomplete].some((rule) => rule.nodes.some((n) => n.target.length > 1));
  }, 120000);
