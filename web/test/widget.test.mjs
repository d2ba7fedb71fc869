// The widget in a real browser: Debian's chromium, driven by playwright-core,
// against a real `parley all` (bin/parley, built by `make build`) on
// loopback, embedded by a host page of another site (localhost, not
// 127.0.0.1) that also runs a spying script before the widget. Screenshots
// go to test-results/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { accessible, accessibleWithFrame, freePort, launchBrowser, newContext, noCSPViolations, openShadowRoots, poll, rawStream, screenshot, startParley } from "./lib.mjs";

const budgetGzipBytes = 35 * 1024;
const defaultWording = "Nothing is stored about you until you start a chat.";

let stack, hostServer, browser, gw, host, token, api;

// The host page's own script, run before the widget: it wraps fetch,
// XMLHttpRequest and WebSocket, keeps every shadow root made (closed ones
// too), listens to every message the page receives, and notes what it could
// reach. The conversation must reach none of it.
const spy = `
globalThis.spied = { fetch: [], xhr: [], ws: [], messages: [] };
const roots = [];
globalThis.spiedRoots = roots;
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { const r = attach.call(this, init); roots.push(r); return r; };
const f = fetch;
globalThis.fetch = (...a) => { spied.fetch.push(String(a[0])); return f(...a); };
const open = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (...a) { spied.xhr.push(String(a[1])); return open.apply(this, a); };
const W = WebSocket;
globalThis.WebSocket = function (u, p) { spied.ws.push(String(u)); return new W(u, p); };
addEventListener("message", (e) => spied.messages.push({ origin: e.origin, data: JSON.stringify(e.data) }), true);
`;

// launcherText is the host page's accessibility tree as text: it reaches
// into the closed shadow root, which page scripts (and Playwright's
// selectors) cannot. The frame, a process of its own, is not in it.
async function launcherText(page) {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send("Accessibility.getFullAXTree");
  await cdp.detach();
  return nodes.map((n) => n.name?.value ?? "").filter(Boolean).join("\n");
}

const launcherSays = (page, text) => poll(`the launcher to say ${JSON.stringify(text)}`, async () => (await launcherText(page)).includes(text));

// chatFrame is the widget's frame, once the launcher made it.
const chatFrame = (page) => poll("the chat frame", () => page.frames().find((f) => f.url().startsWith(`${gw}/widget-frame`)));

const shows = (frame, text) => frame.getByText(text).first().waitFor({ timeout: 30000 });

// focusIn reports whether the keyboard's focus is in the frame.
const focusIn = (frame) => frame.evaluate(() => document.hasFocus() && document.activeElement !== document.body);

// stored counts what every frame of the page keeps in its storage (the
// frame's is partitioned under the host's site, which storageState misses).
async function stored(page) {
  let n = 0;
  for (const f of page.frames()) n += await f.evaluate(() => localStorage.length + sessionStorage.length);
  return n;
}

async function nothingStored(ctx, page, when) {
  assert.deepEqual(await ctx.cookies(), [], `cookies ${when}`);
  const state = await ctx.storageState();
  assert.deepEqual(state.origins.filter((o) => o.localStorage.length > 0), [], `an origin with local storage ${when}`);
  assert.equal(await stored(page), 0, `storage in a frame ${when}`);
}

const openHost = async (ctx) => {
  const page = await ctx.newPage();
  await page.goto(`${host}/`);
  await launcherSays(page, "Chat with us");
  return page;
};

before(async () => {
  stack = await startParley();
  ({ gw } = stack);
  token = (role, id) => stack.token(role, id);
  api = (...args) => stack.api(...args);

  // The host page, with the CSP docs/widget.md gives a host page (and
  // 'self' for its own scripts).
  const hostPort = await freePort();
  host = `http://localhost:${hostPort}`;
  hostServer = createServer((req, res) => {
    if (req.url === "/host.css") {
      // A host stylesheet that would hide or restyle the widget were it not
      // in a shadow root and a frame.
      res.writeHead(200, { "Content-Type": "text/css" });
      res.end("div, button, iframe, p, h2, label, input, textarea { display: none !important; } * { color: red !important; font-size: 40px !important; }");
      return;
    }
    if (req.url === "/spy.js") {
      res.writeHead(200, { "Content-Type": "text/javascript" });
      res.end(spy);
      return;
    }
    if (req.url !== "/") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Security-Policy": `default-src 'self'; script-src 'self' ${gw}; frame-src ${gw}`,
    });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="stylesheet" href="/host.css"><meta name="viewport" content="width=device-width"></head>
<body><main><h1>A shop</h1><p>Its page.</p></main>
<script src="/spy.js"></script>
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

test("a visitor chats with an agent through the widget, keyboard only, on a 320 px screen, out of the host's reach", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const page = await ctx.newPage();
  const requests = [];
  page.on("request", (r) => requests.push(r));

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
  // The launcher, in a closed shadow root.
  await launcherSays(page, "Chat with us");
  const [shownAt, loadedAt] = await page.evaluate(() => [globalThis.parleyShownAt, performance.getEntriesByType("navigation")[0].loadEventStart]);
  console.log(`widget's launcher shown ${Math.round(shownAt)} ms after navigation start, ${Math.round(shownAt - loadedAt)} ms after the host page's load event (at ${Math.round(loadedAt)} ms)`);
  assert.equal(await page.evaluate(() => document.querySelector("parley-widget")?.shadowRoot), null, "page scripts reach no shadow root");
  const cdp = await ctx.newCDPSession(page);
  const { root } = await cdp.send("DOM.getDocument", { depth: -1, pierce: true });
  const find = (n) => (n.nodeName === "PARLEY-WIDGET" ? n : [...(n.children ?? []), ...(n.shadowRoots ?? [])].map(find).find(Boolean));
  const hostNode = find(root);
  assert.ok(hostNode, "the widget's host element");
  assert.equal(hostNode.shadowRoots?.[0]?.shadowRootType, "closed");
  await cdp.detach();

  // Before the visitor opens the chat: the launcher alone, no frame, no
  // cookie, no storage, no API call, no request to a host but the gateway.
  assert.equal(page.frames().length, 1, "no frame before the chat opens");
  await nothingStored(ctx, page, "before the chat opens");
  const others = () => requests.filter((r) => !r.url().startsWith(`${gw}/`) && !r.url().startsWith(`${host}/`) && !r.url().startsWith(`${gw.replace("http", "ws")}/`)).map((r) => r.url());
  assert.deepEqual(others(), [], "requests to hosts other than the gateway");
  const apiCalls = () => requests.filter((r) => new URL(r.url()).pathname.startsWith("/v1/")).map((r) => `${r.method()} ${new URL(r.url()).pathname}`);
  assert.deepEqual(apiCalls(), [], "calls to the API before the chat opens");

  // The script's weight on the wire (gzip) before the chat opens.
  let wire = 0;
  const scripts = requests.filter((r) => r.resourceType() === "script" && r.url().startsWith(`${gw}/`));
  assert.deepEqual(scripts.map((r) => new URL(r.url()).pathname), ["/widget.js"], "the gateway's scripts before the chat opens");
  for (const r of scripts) {
    const res = await r.response();
    assert.equal(await res.headerValue("content-encoding"), "gzip", `${r.url()} is served gzipped`);
    wire += (await r.sizes()).responseBodySize;
  }
  console.log(`widget script on the wire before the chat opens: ${wire} bytes gzipped (budget ${budgetGzipBytes})`);
  assert.ok(wire > 0 && wire <= budgetGzipBytes, `widget script ${wire} bytes gzipped, budget ${budgetGzipBytes}`);

  // Keyboard only: Tab to the launcher, open it; the focus moves into the
  // frame, on the first choice; the notice and the choices, each off.
  const before = requests.length;
  const openedAt = Date.now();
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  const frame = await chatFrame(page);
  await shows(frame, "Start chat");
  await shows(frame, defaultWording);
  let frameWire = 0;
  for (const r of requests.slice(before).filter((r) => r.url().startsWith(`${gw}/`) && !r.url().includes("/v1/"))) frameWire += (await r.sizes()).responseBodySize;
  console.log(`the chat frame: consent step shown ${Date.now() - openedAt} ms after the launcher was pressed; ${frameWire} bytes on the wire (page, script, style sheet)`);
  await poll("the focus in the frame", () => focusIn(frame));
  assert.equal(await frame.evaluate(() => document.activeElement?.getAttribute("name")), "analytics");
  for (const name of ["analytics", "network_data", "ai"]) assert.equal(await frame.getByRole("checkbox").and(frame.locator(`[name=${name}]`)).isChecked(), false, `${name} defaults to no`);
  await launcherSays(page, "Close chat");
  await screenshot(page, "widget-consent");

  // Opened, before the chat starts: the notice read, nothing else; still
  // nothing stored anywhere, the frame's partition included.
  await nothingStored(ctx, page, "before the chat starts");
  assert.deepEqual(apiCalls(), ["GET /v1/tenants/demo/notice"], "calls to the API before the chat starts");

  // Escape closes, the focus back on the launcher; Enter opens again.
  await page.keyboard.press("Escape");
  await launcherSays(page, "Chat with us");
  await poll("the focus on the launcher", async () => (await page.evaluate(() => document.hasFocus() && document.activeElement?.localName)) === "parley-widget");
  await page.keyboard.press("Enter");
  await poll("the focus back in the frame", () => focusIn(frame));

  // Analytics yes, network data no, AI yes; then start.
  await page.keyboard.press("Space");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Space");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await shows(frame, "You are talking to a person");
  assert.equal(await frame.evaluate(() => localStorage.length), 1, "the session's refresh token, in the frame, once the chat started");
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, "nothing in the host page's storage");
  assert.deepEqual(await ctx.cookies(), [], "no cookie once the chat started");

  await poll("the focus on the message box", () => frame.evaluate(() => document.activeElement?.id === "parley-message"));
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
  const agentStream = await rawStream(browser, gw, agent);
  // Typing, as a client does while its user types: every second, until the
  // test has seen it (one signal shows for a few seconds only, which a
  // loaded machine may miss).
  const typing = () => agentStream.send({ type: "typing", conversation_id: conv.id });
  await typing();
  const typingTimer = setInterval(typing, 1000);
  await shows(frame, "Support is typing…");
  await screenshot(page, "widget-typing");
  clearInterval(typingTimer);
  await api(agent, "POST", `/v1/conversations/${conv.id}/messages`, { text: "Hi, Alice here: how can I help?" });
  await shows(frame, "Hi, Alice here: how can I help?");
  assert.equal(await frame.getByText("Hello from the widget", { exact: true }).count(), 1, "the visitor's message, shown once");
  await screenshot(page, "widget-chat");

  // And the other way: the visitor's typing and message reach the agent's
  // stream live.
  await page.keyboard.type("Thanks!");
  await page.keyboard.press("Enter");
  const saw = async (pred) => (await agentStream.saw()).some(pred);
  await poll("the visitor's typing on the agent's stream", () => saw((e) => e.type === "typing" && e.author.role === "visitor"));
  await poll("the visitor's message on the agent's stream", () => saw((e) => e.type === "message" && e.message.text === "Thanks!"));

  // Closed, the launcher counts the agent's new messages.
  await page.keyboard.press("Escape");
  await launcherSays(page, "Chat with us");
  await api(agent, "POST", `/v1/conversations/${conv.id}/messages`, { text: "Anything else?" });
  await launcherSays(page, "1 unread");
  await page.keyboard.press("Enter");
  await shows(frame, "Anything else?");
  await poll("the unread count cleared", async () => !(await launcherText(page)).includes("unread"));

  // What the host page's scripts got: no call, no socket, no storage, no
  // handle on the frame's document, and messages that say nothing personal.
  const spied = await page.evaluate(() => globalThis.spied);
  assert.deepEqual([spied.fetch, spied.xhr, spied.ws], [[], [], []], "the widget's calls seen by the host's wrappers");
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, "the host page's storage");
  assert.ok(spied.messages.length > 0, "the frame's messages to the launcher");
  for (const m of spied.messages) {
    assert.equal(m.origin, gw, "messages come from the gateway's frame only");
    const data = JSON.parse(m.data);
    assert.ok(["resize", "close", "unread"].includes(data.parley), `a message of a known kind: ${m.data}`);
    assert.ok(Object.keys(data).every((k) => ["parley", "height", "count"].includes(k)), `a message with nothing personal: ${m.data}`);
  }
  assert.equal(await page.evaluate(() => document.documentElement.innerText.includes("Hello from the widget")), false, "the conversation in the host's document");
  // The spy holds the launcher's closed shadow root, and so the frame's
  // element: the frame's document is still refused to it.
  const reach = await page.evaluate(() => {
    const frame = globalThis.spiedRoots[0]?.querySelector("iframe");
    if (!frame) return "no frame found";
    if (frame.contentDocument !== null) return "contentDocument";
    try {
      return frame.contentWindow.document.body.innerText;
    } catch (e) {
      return e.name;
    }
  });
  assert.equal(reach, "SecurityError", "the host page reads the frame's document");

  noCSPViolations(ctx, "the host page and the widget");
  assert.deepEqual(others(), [], "requests to hosts other than the gateway");

  // The visitor comes back (a new page on the same site): their
  // conversations, listed; they continue the open one.
  await page.close();
  const back = await openHost(ctx);
  await back.keyboard.press("Tab");
  await back.keyboard.press("Enter");
  const again = await chatFrame(back);
  await shows(again, "Your conversations");
  const item = again.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ });
  await item.waitFor();
  await poll("the focus on the open conversation", () => item.evaluate((b) => b === document.activeElement && document.hasFocus()));
  await screenshot(back, "widget-back");
  await back.keyboard.press("Enter");
  await shows(again, "Hi, Alice here: how can I help?");
  await shows(again, "Hello from the widget");
  await shows(again, "Thanks!");

  // The agent closes it: read only, and a new one may start.
  await api(agent, "POST", `/v1/conversations/${conv.id}/close`);
  await shows(again, "This conversation is closed.");
  assert.equal(await again.locator("#parley-message").count(), 0, "no message box in a closed conversation");
  await again.getByRole("button", { name: "New conversation" }).press("Enter");
  await poll("the focus on the message box", () => again.evaluate(() => document.activeElement?.id === "parley-message"));
  await back.keyboard.type("A second question");
  await back.keyboard.press("Enter");
  await poll("the second conversation", async () => (await api(agent, "GET", "/v1/conversations?status=open")).conversations.length === 1);
  await again.getByRole("button", { name: "Your conversations" }).press("Enter");
  await again.getByRole("button", { name: /^Read the conversation of .* \(closed\)$/ }).waitFor();
  await again.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ }).waitFor();
  await screenshot(back, "widget-history");
  await again.getByRole("button", { name: /\(closed\)$/ }).press("Enter");
  await shows(again, "Hi, Alice here: how can I help?");
  await shows(again, "This conversation is closed.");

  // Erase me, keyboard only: then its confirmation; the completion shows,
  // the storage is emptied, and the transcript staff read (an admin's)
  // turns to erased.
  await again.getByRole("button", { name: "Erase me" }).press("Enter");
  await shows(again, "Erase everything now");
  await back.keyboard.press("Enter");
  await shows(again, "Erased: your messages can no longer be read by anyone");
  await screenshot(back, "widget-erased");
  assert.equal(await stored(back), 0, "storage emptied by erasure");
  await poll("the transcript to read erased", async () => {
    const t = await api(admin, "GET", `/v1/conversations/${conv.id}/messages`);
    return t.messages.length > 0 && t.messages.every((m) => m.erased && m.text === null);
  });
  noCSPViolations(ctx, "the visitor's return, closing and erasure");
  await agentStream.close();
  await ctx.close();
});

test("the launcher, the consent step, the chat and the visitor's conversations pass axe-core", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await openShadowRoots(ctx);
  const page = await openHost(ctx);
  await accessible(page, "the launcher");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  const frame = await chatFrame(page);
  await shows(frame, "Start chat");
  await accessibleWithFrame(page, "the consent step");
  await frame.getByRole("button", { name: "Start chat" }).press("Enter");
  await shows(frame, "You are talking to a person");
  await frame.locator("#parley-message").fill("Checking the chat's accessibility");
  await frame.locator("#parley-message").press("Enter");
  await shows(frame, "Checking the chat's accessibility");
  await accessibleWithFrame(page, "the chat");
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  await frame.getByRole("button", { name: /^Continue the conversation/ }).waitFor();
  await accessibleWithFrame(page, "the visitor's conversations");
  noCSPViolations(ctx, "the widget's states under axe-core");
  await ctx.close();
});

test("the gateway's demo page frames the chat under its own policy, and passes axe-core", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await openShadowRoots(ctx);
  const page = await ctx.newPage();
  await page.goto(`${gw}/demo`);
  await launcherSays(page, "Chat with us");
  await accessible(page, "the demo page");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await shows(await chatFrame(page), "Start chat");
  await accessibleWithFrame(page, "the demo page with the chat open");
  await screenshot(page, "widget-demo");
  noCSPViolations(ctx, "the demo page");
  await ctx.close();
});

test("the tenant's privacy notice, shown as text, is the version the visitor consents to", async (t) => {
  const probe = await fetch(`${gw}/v1/tenants/demo/notice`);
  if (probe.status === 404) {
    t.skip("GET /v1/tenants/{tenant}/notice is absent from this gateway: the widget's default wording is checked by the first test");
    return;
  }
  assert.equal(probe.status, 200, "the notice endpoint");
  const admin = token("admin", "root");
  const settings = await api(admin, "GET", "/v1/settings");
  const text = "Acme keeps chats 30 days.\n<b>Not bold</b>: shown as written.";
  await api(admin, "PUT", "/v1/settings", { ...settings, notice_text: text, notice_version: "acme-7" });
  await poll("the notice to be served", async () => (await (await fetch(`${gw}/v1/tenants/demo/notice`)).json()).version === "acme-7");

  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const page = await openHost(ctx);
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  const frame = await chatFrame(page);
  await shows(frame, "Acme keeps chats 30 days.");
  assert.equal(await frame.locator(".notice").innerText(), text, "the notice, as plain text");
  assert.equal(await frame.locator(".notice b").count(), 0, "no markup from the notice");
  assert.equal(await frame.getByText(defaultWording).count(), 0, "the default wording, replaced");
  await screenshot(page, "widget-notice");
  await frame.getByRole("button", { name: "Start chat" }).press("Enter");
  await shows(frame, "You are talking to a person");
  await frame.locator("#parley-message").fill("Under the tenant's notice");
  await frame.locator("#parley-message").press("Enter");
  const lead = token("supervisor", "sue");
  const conv = await poll("the conversation", async () => {
    for (const c of (await api(lead, "GET", "/v1/conversations?status=open")).conversations) {
      const t = await api(lead, "GET", `/v1/conversations/${c.id}/messages`);
      if (t.messages[0]?.text === "Under the tenant's notice") return c;
    }
  });
  const exp = await api(admin, "GET", `/v1/subjects/${conv.visitor}/export`);
  assert.equal(exp.consents.at(-1).notice_version, "acme-7", "the notice version consented to");
  await api(admin, "PUT", "/v1/settings", settings);
  noCSPViolations(ctx, "the tenant's notice");
  await ctx.close();
});
