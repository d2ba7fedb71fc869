// The widget in a real browser: Debian's chromium, driven by playwright-core,
// against a real `parley all` (bin/parley, built by `make build`) on
// loopback, embedded by a host page of another origin. Screenshots go to
// test-results/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { join } from "node:path";
import { freePort, launchBrowser, poll, results, startParley } from "./lib.mjs";

const budgetGzipBytes = 35 * 1024;

let stack, hostServer, browser, gw, host, token, api;

// widgetText is the text the page shows, read from the browser's
// accessibility tree: it reaches into the closed shadow root, which page
// scripts (and Playwright's selectors) cannot.
async function widgetText(page, role) {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send("Accessibility.getFullAXTree");
  await cdp.detach();
  return nodes
    .filter((n) => !role || n.role?.value === role)
    .map((n) => n.name?.value ?? "")
    .filter(Boolean)
    .join("\n");
}

async function shows(page, text) {
  await poll(`the widget to show ${JSON.stringify(text)}`, async () => (await widgetText(page)).includes(text));
}

before(async () => {
  stack = await startParley();
  ({ gw } = stack);
  token = (role, id) => stack.token(role, id);
  api = (...args) => stack.api(...args);

  // The host page: another origin (localhost, not 127.0.0.1), with the CSP
  // docs/widget.md gives a host page.
  const hostPort = await freePort();
  host = `http://localhost:${hostPort}`;
  hostServer = createServer((req, res) => {
    if (req.url === "/host.css") {
      // A host stylesheet that would hide or restyle the widget were it not
      // in a shadow root.
      res.writeHead(200, { "Content-Type": "text/css" });
      res.end("div, button, p, h2, label, input, textarea { display: none !important; } * { color: red !important; font-size: 40px !important; }");
      return;
    }
    if (req.url !== "/") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Security-Policy": `default-src 'self'; script-src ${gw}; connect-src ${gw} ${gw.replace("http", "ws")}`,
    });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="stylesheet" href="/host.css"><meta name="viewport" content="width=device-width"></head>
<body><h1>A shop</h1><p>Its page.</p>
<script src="${gw}/widget.js" data-tenant="demo" data-privacy-url="${host}/privacy" async></script></body></html>`);
  });
  await new Promise((r) => hostServer.listen(hostPort, "127.0.0.1", r));

  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  hostServer?.close();
  await stack?.stop();
});

test("a visitor chats with an agent through the widget, keyboard only, on a 320 px screen", async () => {
  const ctx = await browser.newContext({ viewport: { width: 320, height: 640 } });
  const page = await ctx.newPage();
  const requests = [];
  page.on("request", (r) => requests.push(r));
  const violations = [];
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) violations.push(m.text());
  });

  // When the widget's element enters the page, for the figure printed below
  // (a budget is a benchmark's to hold, not a test's assertion).
  await page.addInitScript(() => {
    new MutationObserver((_, obs) => {
      if (document.querySelector("parley-widget")) {
        globalThis.parleyShownAt = performance.now();
        obs.disconnect();
      }
    }).observe(document, { childList: true, subtree: true });
  });
  await page.goto(`${host}/`);
  // Rendered, in a closed shadow root.
  await poll("the widget's launcher", async () => (await widgetText(page)).includes("Chat with us"));
  const [shownAt, loadedAt] = await page.evaluate(() => [globalThis.parleyShownAt, performance.getEntriesByType("navigation")[0].loadEventStart]);
  console.log(`widget shown ${Math.round(shownAt)} ms after navigation start; the host page's load event at ${Math.round(loadedAt)} ms`);
  assert.equal(await page.evaluate(() => document.querySelector("parley-widget")?.shadowRoot), null, "page scripts reach no shadow root");
  const cdp = await ctx.newCDPSession(page);
  const { root } = await cdp.send("DOM.getDocument", { depth: -1, pierce: true });
  const find = (n) => (n.nodeName === "PARLEY-WIDGET" ? n : [...(n.children ?? []), ...(n.shadowRoots ?? [])].map(find).find(Boolean));
  const hostNode = find(root);
  assert.ok(hostNode, "the widget's host element");
  assert.equal(hostNode.shadowRoots?.[0]?.shadowRootType, "closed");
  await cdp.detach();

  // Keyboard only: Tab to the launcher, open it; the notice and the choices,
  // each off.
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await shows(page, "Start chat");
  await shows(page, "Privacy notice");
  await page.screenshot({ path: join(results, "widget-consent.png") });

  // Before the chat starts: no cookie, no storage, no request to any host but
  // the gateway, and none to its API.
  assert.deepEqual(await ctx.cookies(), []);
  const state = await ctx.storageState();
  assert.deepEqual(state.origins.filter((o) => o.localStorage.length > 0), [], "no origin has local storage");
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
  const others = requests.filter((r) => !r.url().startsWith(`${gw}/`) && !r.url().startsWith(`${host}/`)).map((r) => r.url());
  assert.deepEqual(others, [], "requests to hosts other than the gateway");
  const apiCalls = requests.filter((r) => new URL(r.url()).pathname.startsWith("/v1/")).map((r) => r.url());
  assert.deepEqual(apiCalls, [], "calls to the API before the chat starts");

  // The script's weight on the wire (gzip) before the chat opens.
  let wire = 0;
  for (const r of requests.filter((r) => r.resourceType() === "script")) {
    const res = await r.response();
    assert.equal(await res.headerValue("content-encoding"), "gzip", `${r.url()} is served gzipped`);
    wire += (await r.sizes()).responseBodySize;
  }
  console.log(`widget script on the wire before the chat: ${wire} bytes gzipped (budget ${budgetGzipBytes})`);
  assert.ok(wire > 0 && wire <= budgetGzipBytes, `widget script ${wire} bytes gzipped, budget ${budgetGzipBytes}`);

  // Analytics yes, network data no, AI yes; then start.
  await page.keyboard.press("Space");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Space");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await shows(page, "You are talking to a person");
  assert.equal(await page.evaluate(() => localStorage.length), 1, "the session's refresh token, once the chat started");

  await page.keyboard.type("Hello from the widget");
  await page.keyboard.press("Enter");

  const agent = token("agent", "alice");
  const admin = token("admin", "root");
  const conv = await poll("the conversation in the agent's inbox", async () => (await api(agent, "GET", "/v1/conversations")).conversations[0]);
  await api(agent, "POST", `/v1/conversations/${conv.id}/assign`, { agent_id: "alice" });
  const transcript = await api(agent, "GET", `/v1/conversations/${conv.id}/messages`);
  assert.deepEqual(transcript.messages.map((m) => m.text), ["Hello from the widget"]);

  // The choices reached the server as chosen.
  const exp = await api(admin, "GET", `/v1/subjects/${conv.visitor}/export`);
  const c = exp.consents.at(-1);
  assert.deepEqual({ analytics: c.analytics, network_data: c.network_data, ai: c.ai }, { analytics: true, network_data: false, ai: true });

  // The agent, in a browser context of their own on the gateway's origin:
  // typing, then a reply, shown live in the widget.
  const agentCtx = await browser.newContext();
  const agentPage = await agentCtx.newPage();
  await agentPage.goto(`${gw}/healthz`);
  await agentPage.evaluate(
    ([tok, id]) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.origin.replace("http", "ws")}/v1/stream?access_token=${tok}`);
        globalThis.agentSaw = [];
        ws.onmessage = (m) => globalThis.agentSaw.push(JSON.parse(m.data));
        ws.onopen = () => {
          ws.send(JSON.stringify({ type: "typing", conversation_id: id }));
          resolve();
        };
        ws.onerror = reject;
        globalThis.agentStream = ws;
      }),
    [agent, conv.id],
  );
  await shows(page, "Support is typing…");
  await page.screenshot({ path: join(results, "widget-typing.png") });
  await api(agent, "POST", `/v1/conversations/${conv.id}/messages`, { text: "Hi, Alice here: how can I help?" });
  await shows(page, "Hi, Alice here: how can I help?");
  const said = (await widgetText(page, "StaticText")).split("\n").filter((l) => l === "Hello from the widget");
  assert.equal(said.length, 1, "the visitor's message, shown once");
  await page.screenshot({ path: join(results, "widget-chat.png") });

  // And the other way: the visitor's typing and message reach the agent's
  // stream live.
  await page.keyboard.type("Thanks!");
  await page.keyboard.press("Enter");
  const saw = (pred) => agentPage.evaluate((src) => globalThis.agentSaw.some(new Function("e", `return ${src}`)), pred);
  await poll("the visitor's typing on the agent's stream", () => saw(`e.type === "typing" && e.author.role === "visitor"`));
  await poll("the visitor's message on the agent's stream", () => saw(`e.type === "message" && e.message.text === "Thanks!"`));

  assert.deepEqual(violations, [], "CSP violations");
  const foreign = requests.filter((r) => !r.url().startsWith(`${gw}/`) && !r.url().startsWith(gw.replace("http", "ws")) && !r.url().startsWith(`${host}/`));
  assert.deepEqual(foreign.map((r) => r.url()), [], "requests to hosts other than the gateway");

  // The visitor comes back (a new page of the same browser profile): their
  // conversation is there.
  await page.close();
  const back = await ctx.newPage();
  await back.goto(`${host}/`);
  await poll("the widget's launcher", async () => (await widgetText(back)).includes("Chat with us"));
  await back.keyboard.press("Tab");
  await back.keyboard.press("Enter");
  await shows(back, "Hi, Alice here: how can I help?");
  await shows(back, "Hello from the widget");
  await shows(back, "Thanks!");
  await back.screenshot({ path: join(results, "widget-back.png") });

  // Erase me, keyboard only: from the message box to "Erase me", then its
  // confirmation; the completion shows, the storage is emptied, and the
  // transcript staff read (an admin's) turns to erased.
  for (let i = 0; i < 3; i++) await back.keyboard.press("Tab");
  await back.keyboard.press("Enter");
  await shows(back, "Erase everything now");
  await back.keyboard.press("Enter");
  await shows(back, "Erased: your messages can no longer be read by anyone");
  await back.screenshot({ path: join(results, "widget-erased.png") });
  assert.equal(await back.evaluate(() => localStorage.length), 0, "storage emptied by erasure");
  await poll("the transcript to read erased", async () => {
    const t = await api(admin, "GET", `/v1/conversations/${conv.id}/messages`);
    return t.messages.length > 0 && t.messages.every((m) => m.erased && m.text === null);
  });
  await agentCtx.close();
  await ctx.close();
});
