// What the browser tests share: a real `parley all` (bin/parley, built by
// `make build`) on loopback with a data directory of its own, Debian's
// chromium driven by playwright-core, calls to the API, polling, the
// accessibility check and the screenshots directory (test-results/).
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
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

export function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      `--disable-features=${disabledFeatures.join(",")}`,
    ],
  });
}

/**
 * staffPage opens a staff page on the gateway's origin signed in with a
 * try-out token, through the page's own sign-in form.
 */
export async function staffPage(browser, gw, path, token, viewport = { width: 1280, height: 800 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  await page.goto(gw + path);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  return page;
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
