// The widget in a real browser: Debian's chromium, driven by playwright-core,
// against a real `parley all` (bin/parley, built by `make build`) on
// loopback, embedded by a host page of another site (localhost, not
// 127.0.0.1) that also runs a spying script before the widget. Screenshots
// go to test-results/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { accessible, accessibleWithFrame, freePort, gateStream, holdAnswers, holdBack, launchBrowser, newContext, noCSPViolations, noteFetches, openShadowRoots, poll, rawStream, resyncFrame, screenshot, startParley } from "./lib.mjs";

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
const chatFrame = (page, from = gw) => poll("the chat frame", () => page.frames().find((f) => f.url().startsWith(`${from}/widget-frame`)));

const shows = (frame, text) => frame.getByText(text).first().waitFor({ timeout: 30000 });

// focusIn reports whether the keyboard's focus is in the frame.
const focusIn = (frame) => frame.evaluate(() => document.hasFocus() && document.activeElement !== document.body);

// stored counts what every frame of the page keeps in its storage (the
// frame's is partitioned under the host's site, which storageState misses):
// web storage, IndexedDB databases and Cache Storage caches.
async function stored(page) {
  let n = 0;
  for (const f of page.frames()) {
    n += await f.evaluate(async () => {
      const dbs = (await indexedDB.databases()).length;
      const cached = typeof caches === "undefined" ? 0 : (await caches.keys()).length;
      return localStorage.length + sessionStorage.length + dbs + cached;
    });
  }
  return n;
}

async function nothingStored(ctx, page, when) {
  assert.deepEqual(await ctx.cookies(), [], `cookies ${when}`);
  const state = await ctx.storageState();
  assert.deepEqual(state.origins.filter((o) => o.localStorage.length > 0), [], `an origin with local storage ${when}`);
  assert.equal(await stored(page), 0, `storage in a frame ${when}`);
}

const openHost = async (ctx, query = "") => {
  const page = await ctx.newPage();
  await page.goto(`${host}/${query}`);
  await launcherSays(page, "Chat with us");
  return page;
};

// openChat opens the host page (query as openHost's) on a new page of ctx
// and its chat, keyboard only; it answers the page and the chat frame, of
// the gateway from.
const openChat = async (ctx, query = "", from = gw) => {
  const page = await openHost(ctx, query);
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  return { page, frame: await chatFrame(page, from) };
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
    const url = new URL(req.url, host);
    if (url.pathname !== "/") {
      res.writeHead(404).end();
      return;
    }
    // ?gw= another gateway (a test's own), ?nv= the host's notice version.
    const from = url.searchParams.get("gw") ?? gw;
    const nv = url.searchParams.get("nv");
    res.writeHead(200, {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Security-Policy": `default-src 'self'; script-src 'self' ${from}; frame-src ${from}`,
    });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="stylesheet" href="/host.css"><meta name="viewport" content="width=device-width"></head>
<body><main><h1>A shop</h1><p>Its page.</p></main>
<script src="/spy.js"></script>
<script src="${from}/widget.js" data-tenant="demo" data-privacy-url="${host}/privacy"${nv ? ` data-notice-version="${nv}"` : ""} async></script></body></html>`);
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
  const { page: back, frame: again } = await openChat(ctx);
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
  // The completion report, as the privacy page shows it: the erasure the
  // admin reads, completed, its keys destroyed.
  const report = again.getByRole("table", { name: "Completion report" });
  await report.waitFor();
  const erasureID = await report.locator("code").innerText();
  const erasure = await api(admin, "GET", `/v1/erasures/${erasureID}`);
  assert.equal(erasure.status, "completed");
  assert.equal(erasure.subject, conv.visitor, "the visitor's own erasure");
  assert.equal(await report.getByRole("row", { name: /Keys destroyed/ }).locator("td").innerText(), erasure.report.keys_destroyed ? "yes" : "none were left (they had expired)");
  await again.getByText(/^Completed at .*, in \d+ ms\.$/).waitFor();
  await screenshot(back, "widget-erased");
  await poll("storage emptied once the erasure completed", async () => (await stored(back)) === 0);
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
  await writeFirst(frame, "Checking the chat's accessibility");
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

// conversationOpenedWith answers the open conversation (as a supervisor
// reads it) whose first message is text.
const conversationOpenedWith = (text) =>
  poll("the conversation", async () => {
    const lead = token("supervisor", "sue");
    for (const c of (await api(lead, "GET", "/v1/conversations?status=open")).conversations) {
      const t = await api(lead, "GET", `/v1/conversations/${c.id}/messages`);
      if (t.messages[0]?.text === text) return c;
    }
  });

// consented starts the chat in frame, on its consent step, keyboard only,
// and answers its message box.
async function consented(frame) {
  await frame.getByRole("button", { name: "Start chat" }).press("Enter");
  await shows(frame, "You are talking to a person");
  return frame.locator("#parley-message");
}

// writeFirst starts the chat in frame, on its consent step, and writes text
// in it, keyboard only.
async function writeFirst(frame, text) {
  const box = await consented(frame);
  await box.fill(text);
  await box.press("Enter");
  await shows(frame, text);
}

// startIn is writeFirst on this stack; it answers the conversation.
async function startIn(frame, text) {
  await writeFirst(frame, text);
  return conversationOpenedWith(text);
}

// consentedUnder starts a chat in the frame and answers the notice version
// its visitor's consent records.
async function consentedUnder(frame, text) {
  const conv = await startIn(frame, text);
  return (await api(token("admin", "root"), "GET", `/v1/subjects/${conv.visitor}/export`)).consents.at(-1).notice_version;
}

test("without the tenant's notice the host's version is consented to; without an answer the chat cannot start", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  // The gateway answers 503 until it has read the tenant's settings: no
  // notice to consent under, Start chat withheld, a retry offered.
  await ctx.route("**/v1/tenants/demo/notice", (route) =>
    route.fulfill({ status: 503, contentType: "application/problem+json", body: JSON.stringify({ status: 503, detail: "the service is not ready" }) }),
  );
  const { page, frame } = await openChat(ctx, "?nv=shop-3");
  await frame.getByRole("alert").filter({ hasText: "The privacy notice could not be read" }).waitFor();
  assert.equal(await frame.getByRole("button", { name: "Start chat" }).count(), 0, "Start chat without a notice");
  await screenshot(page, "widget-notice-unavailable");
  await ctx.unroute("**/v1/tenants/demo/notice");
  await frame.getByRole("button", { name: "Try again" }).press("Enter");
  await shows(frame, defaultWording);
  assert.equal(await consentedUnder(frame, "Under the host's notice"), "shop-3", "the host's notice version, the tenant having none");
  await ctx.close();
});

test("the tenant's privacy notice, shown as text, is the version the visitor consents to", async () => {
  const admin = token("admin", "root");
  const settings = await api(admin, "GET", "/v1/settings");
  const text = "Acme keeps chats 30 days.\n<b>Not bold</b>: shown as written.";
  await api(admin, "PUT", "/v1/settings", { ...settings, notice_text: text, notice_version: "acme-7" });
  await poll("the notice to be served", async () => (await (await fetch(`${gw}/v1/tenants/demo/notice`)).json()).version === "acme-7");

  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const { page, frame } = await openChat(ctx);
  await shows(frame, "Acme keeps chats 30 days.");
  assert.equal(await frame.locator(".notice").innerText(), text, "the notice, as plain text");
  assert.equal(await frame.locator(".notice b").count(), 0, "no markup from the notice");
  assert.equal(await frame.getByText(defaultWording).count(), 0, "the default wording, replaced");
  await screenshot(page, "widget-notice");
  assert.equal(await consentedUnder(frame, "Under the tenant's notice"), "acme-7", "the notice version consented to");
  await api(admin, "PUT", "/v1/settings", settings);
  noCSPViolations(ctx, "the tenant's notice");
  await ctx.close();
});

test("a visitor's session survives renewals at once, in one tab and across two", async () => {
  // Access tokens of 5 s (the gateway's leeway adds 5 more): renewals come
  // quickly. A refresh token used twice ends its session and is audited as
  // "session.refresh_reuse": neither may happen.
  const short = await startParley(["--access-token-ttl", "5s"]);
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  try {
    const admin = short.token("admin", "root");
    // expired waits until a token issued now has expired: so has every
    // token the widget held before.
    const expired = async () => {
      const probe = (await short.api(null, "POST", "/v1/tenants/demo/visitors", { consent: { analytics: false, network_data: false, ai: false }, notice_version: "1" })).access_token;
      await poll("a token of now to expire", async () => (await fetch(`${short.gw}/v1/conversations`, { headers: { Authorization: `Bearer ${probe}` } })).status === 401);
    };
    const reused = async () => (await short.api(admin, "GET", "/v1/audit")).entries.filter((e) => e.action === "session.refresh_reuse");

    const { page: first, frame: one } = await openChat(ctx, `?gw=${encodeURIComponent(short.gw)}`, short.gw);
    await writeFirst(one, "Before the renewals");

    // A second tab of the same visitor comes back: it renews, spending the
    // refresh token the first tab holds.
    await expired();
    const { frame: two } = await openChat(ctx, `?gw=${encodeURIComponent(short.gw)}`, short.gw);
    await two.getByRole("button", { name: /^Continue the conversation/ }).waitFor();

    // The first tab, its token expired, makes two calls at once.
    await expired();
    await Promise.all([
      first.waitForResponse((r) => r.url() === `${short.gw}/v1/me/export` && r.status() === 200),
      one.evaluate(() => {
        for (const b of document.querySelectorAll(".mydata button")) {
          if (b.textContent === "Your conversations" || b.textContent === "Download my data") b.click();
        }
      }),
    ]);
    await one.getByRole("button", { name: /^Continue the conversation/ }).press("Enter");
    await shows(one, "Before the renewals");
    assert.equal(await one.getByRole("alert").count(), 0, "an error in the first tab");

    // And the second tab, expired again, carries on with the token the
    // first tab stored.
    await expired();
    await two.getByRole("button", { name: /^Continue the conversation/ }).press("Enter");
    await two.locator("#parley-message").fill("After the renewals");
    await two.locator("#parley-message").press("Enter");
    await shows(two, "After the renewals");
    await shows(one, "After the renewals");
    assert.equal(await two.getByRole("alert").count(), 0, "an error in the second tab");
    assert.deepEqual(await reused(), [], "refresh tokens reused");
  } finally {
    await ctx.close();
    await short.stop();
  }
});

// startChat opens the chat on a new page of ctx and writes text in it; it
// answers the page, the chat frame and the conversation.
async function startChat(ctx, text) {
  const { page, frame } = await openChat(ctx);
  return { page, frame, conv: await startIn(frame, text) };
}

test("after a resync the widget reloads the conversation: a reply the stream lost shows once, in order, and counts unread", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const lost = "The reply the stream lost";
  const stream = await holdBack(ctx, (e) => e.message?.text === lost);
  const { page, frame, conv } = await startChat(ctx, "A question before the resync");
  const lead = token("supervisor", "sue");
  await api(lead, "POST", `/v1/conversations/${conv.id}/assign`, { agent_id: "bob" });
  const bob = token("agent", "bob");
  // The log shows want, in order, each once (polled: the frame renders
  // after it tells the launcher).
  const logShows = (want, what) =>
    poll(what, async () => {
      assert.deepEqual(await frame.evaluate(() => [...document.querySelectorAll(".log .text")].map((e) => e.textContent)), want);
      return true;
    });

  // Closed: the lost reply, then one the stream delivers; the launcher
  // counts the one it heard.
  await page.keyboard.press("Escape");
  await launcherSays(page, "Chat with us");
  await api(bob, "POST", `/v1/conversations/${conv.id}/messages`, { text: lost });
  await poll("the reply held back", () => stream.held.length === 1);
  await api(bob, "POST", `/v1/conversations/${conv.id}/messages`, { text: "Still there?" });
  await launcherSays(page, "1 unread");
  await logShows(["A question before the resync", "Still there?"], "the log before the resync");

  // The resync: the reload brings the lost reply, before the later one,
  // counted unread as a live one is.
  stream.send(resyncFrame);
  await launcherSays(page, "2 unread");
  await page.keyboard.press("Enter");
  await logShows(["A question before the resync", lost, "Still there?"], "the log after the resync");

  // The held frame arrives late, as a live event stored before the resync
  // may: it shows once; what follows shows after it.
  stream.send(stream.held[0]);
  await api(bob, "POST", `/v1/conversations/${conv.id}/messages`, { text: "After the resync" });
  await shows(frame, "After the resync");
  await logShows(["A question before the resync", lost, "Still there?", "After the resync"], "the log once the late frame came");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await screenshot(page, "widget-resync");
  noCSPViolations(ctx, "the widget's resync");
  await ctx.close();
});

test("after a resync the visitor's list of conversations is read again: a close the stream lost shows, on the list still", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const stream = await holdBack(ctx, (e) => e.type === "closed");
  const { page, frame, conv } = await startChat(ctx, "A question closed while the list shows");
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  await frame.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ }).waitFor();

  // A supervisor closes it; the stream loses its closed frame.
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/close`);
  await poll("the close held back", () => stream.held.length === 1);
  assert.equal(await frame.getByRole("button", { name: /\(closed\)$/ }).count(), 0, "the close shown before the resync");

  // The resync: the list reads it closed, and the visitor stays on it.
  stream.send(resyncFrame);
  await frame.getByRole("button", { name: /^Read the conversation of .* \(closed\)$/ }).waitFor();
  await frame.getByRole("button", { name: "New conversation" }).waitFor();
  assert.equal(await frame.getByRole("button", { name: /\(open\)$/ }).count(), 0, "a conversation listed open after the resync");
  assert.equal(await frame.getByRole("heading", { name: "Your conversations" }).count(), 1, "the list left after the resync");
  assert.equal(await frame.locator("#parley-message").count(), 0, "a conversation opened by the resync");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await screenshot(page, "widget-resync-list");
  noCSPViolations(ctx, "the widget's list after a resync");
  await ctx.close();
});

// assignBot registers the bot id, delivered on a NATS subject no one
// answers (these tests need no bot's answers), has a supervisor assign conv
// to it, and answers the bot's access token.
async function assignBot(conv, id) {
  const reg = await api(token("admin", "ada"), "PUT", `/v1/bots/${id}`, { name: "FAQ assistant", nats_subject: `parley.bots.demo.${id}` });
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/assign`, { bot_id: id });
  return reg.session.access_token;
}

const handedOffBanner = "A person will answer you.";

test("after a resync the widget shows a hand-off the stream lost: a person will answer", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const stream = await holdBack(ctx, (e) => e.type === "handed_off");
  const { page, frame, conv } = await startChat(ctx, "A question the bot hands off unheard");
  const bot = await assignBot(conv, "faq-resync");
  await shows(frame, "You are talking to a bot");

  // The bot hands it off; the stream loses the handed_off frame.
  await api(bot, "POST", `/v1/conversations/${conv.id}/handoff`);
  await poll("the hand-off held back", () => stream.held.length === 1);
  assert.equal(await frame.getByText(handedOffBanner).count(), 0, "the hand-off shown before the resync");

  stream.send(resyncFrame);
  await shows(frame, handedOffBanner);
  await shows(frame, "You are talking to a person");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await screenshot(page, "widget-resync-handoff");
  noCSPViolations(ctx, "the widget's hand-off after a resync");
  await ctx.close();
});

// readsOf matches the addresses of the widget's reads of conv: the
// conversation, and its transcript.
const readsOf = (conv) => new RegExp(`/v1/conversations/${conv.id}(/messages)?([?]|$)`);

test("a hand-off heard while a resync reads the conversation shows, though the read, older than it, answers after it", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await noteStreamFrames(ctx);
  const lost = "The bot's answer the stream lost";
  const stream = await holdBack(ctx, (e) => e.message?.text === lost);
  const { frame, conv } = await startChat(ctx, "A question handed off while the widget reads it again");
  const bot = await assignBot(conv, "faq-crossed");
  await shows(frame, "You are talking to a bot");
  await api(bot, "POST", `/v1/conversations/${conv.id}/messages`, { text: lost });
  await poll("the bot's answer held back", () => stream.held.length === 1);

  // The widget's reads of the conversation and its transcript are made
  // when asked, and answered when the test lets them.
  const { parked } = await holdAnswers(ctx, readsOf(conv));

  // The resync's read is made before the hand-off, which is heard live
  // before the read answers, still assigned to the bot (the answer it
  // brings shows).
  stream.send(resyncFrame);
  await poll("the resync's reads", () => parked.length === 2);
  await api(bot, "POST", `/v1/conversations/${conv.id}/handoff`);
  await heardIn(frame, "the hand-off", (e) => e.type === "handed_off" && e.conversation_id === conv.id);
  parked[0]();
  parked[1]();
  await shows(frame, lost);
  await shows(frame, "You are talking to a person");
  await shows(frame, handedOffBanner);
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's hand-off during a resync");
  await ctx.close();
});

test("a visitor who comes back to a conversation handed off and not taken yet reads that a person will answer, until someone takes it", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const first = "A question handed off before leaving";
  const { page, frame, conv } = await startChat(ctx, first);
  const bot = await assignBot(conv, "faq-back");
  await shows(frame, "You are talking to a bot");
  await api(bot, "POST", `/v1/conversations/${conv.id}/handoff`);
  await shows(frame, handedOffBanner);

  // The visitor comes back (a new page on the same site) and continues it.
  await page.close();
  const { frame: again } = await openChat(ctx);
  await again.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ }).press("Enter");
  await shows(again, first);
  await shows(again, handedOffBanner);

  // An agent takes it: the banner goes, also when it is opened again.
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/assign`, { agent_id: "bob" });
  await poll("the banner gone once taken", async () => (await again.getByText(handedOffBanner).count()) === 0);
  await again.getByRole("button", { name: "Your conversations" }).press("Enter");
  await again.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ }).press("Enter");
  await shows(again, first);
  assert.equal(await again.getByText(handedOffBanner).count(), 0, "the banner on a conversation taken");
  assert.equal(await again.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's return to a handed-off conversation");
  await ctx.close();
});

// noteStreamFrames makes every frame of ctx note each live stream frame it
// receives, in parleyTestHeard, by a listener added as the socket is made:
// it runs first, and the page's own handler in the same task, so an event
// heardIn a frame has been handled by the widget too.
const noteStreamFrames = (ctx) =>
  ctx.addInitScript(() => {
    const Native = WebSocket;
    globalThis.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener("message", (m) => (globalThis.parleyTestHeard ??= []).push(JSON.parse(m.data)));
      }
    };
  });

const heardIn = (frame, what, pred) => poll(`${what} in the chat frame`, async () => (await frame.evaluate(() => globalThis.parleyTestHeard ?? [])).some(pred));

// openHeld goes from the conversation on screen to the list and opens conv
// again, its reads held (holdAnswers) until the test releases them.
async function openHeld(ctx, frame, conv) {
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  const item = frame.getByRole("button", { name: /^Continue the conversation/ });
  await item.waitFor();
  const reads = await holdAnswers(ctx, readsOf(conv));
  await item.press("Enter");
  await poll("the opening's reads", () => reads.parked.length === 2);
  return reads;
}

test("what the stream tells while the visitor opens a conversation shows, though the reads, older than it, answer after it", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await noteStreamFrames(ctx);
  const { page, frame, conv } = await startChat(ctx, "A question handed off while the visitor opens it");
  const bot = await assignBot(conv, "faq-opening");
  await shows(frame, "You are talking to a bot");

  // The bot answers and hands off after the opening's reads were answered,
  // and the widget hears both before it has those answers.
  let reads = await openHeld(ctx, frame, conv);
  const answer = "The bot's answer while the visitor opens the conversation";
  await api(bot, "POST", `/v1/conversations/${conv.id}/messages`, { text: answer });
  await api(bot, "POST", `/v1/conversations/${conv.id}/handoff`);
  await heardIn(frame, "the hand-off", (e) => e.type === "handed_off" && e.conversation_id === conv.id);
  await reads.release();
  await shows(frame, answer);
  await shows(frame, handedOffBanner);
  await shows(frame, "You are talking to a person");
  assert.equal(await frame.getByText(answer, { exact: true }).count(), 1, "the answer, shown once");

  // And a close, likewise.
  reads = await openHeld(ctx, frame, conv);
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/close`);
  await heardIn(frame, "the close", (e) => e.type === "closed" && e.conversation_id === conv.id);
  await reads.release();
  await shows(frame, "This conversation is closed.");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await screenshot(page, "widget-opening-heard");
  noCSPViolations(ctx, "the widget's events heard while it opens a conversation");
  await ctx.close();
});

test("an assignment heard while the visitor's first message opens the conversation shows, though the opening answers after it", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await noteStreamFrames(ctx);
  const { frame } = await openChat(ctx);
  const box = await consented(frame);
  const first = "A question a bot takes before its opening answers";
  await box.fill(first);
  const opening = await holdAnswers(ctx, /\/v1\/conversations$/, "POST");
  await box.press("Enter");
  await poll("the opening", () => opening.parked.length === 1);

  const conv = await conversationOpenedWith(first);
  await assignBot(conv, "faq-first");
  await heardIn(frame, "the assignment", (e) => e.type === "assigned" && e.conversation_id === conv.id);
  await opening.release();
  await shows(frame, "You are talking to a bot");
  await shows(frame, first);
  assert.equal(await frame.getByText(first, { exact: true }).count(), 1, "the first message, shown once");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's assignment heard while it opens a conversation");
  await ctx.close();
});

test("the keyboard's focus stays where the visitor moved it while their first message opens the conversation", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const { frame } = await openChat(ctx);
  const box = await consented(frame);
  await box.fill("A question sent before the visitor moves on");
  const opening = await holdAnswers(ctx, /\/v1\/conversations$/, "POST");
  await box.press("Enter");
  await poll("the opening", () => opening.parked.length === 1);
  const mine = frame.getByRole("button", { name: "Your conversations" });
  await mine.focus();
  await opening.release();
  // The message box empties once the opening is done, the conversation
  // on screen.
  await poll("the message sent", async () => (await box.inputValue()) === "");
  assert.equal(await mine.evaluate((b) => b === document.activeElement), true, "the focus on the button the visitor moved it to");
  noCSPViolations(ctx, "the widget's first message sent while the visitor moved on");
  await ctx.close();
});

test("a close heard while a resync reads the conversation stays, though the read, older than it, answers after it", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await noteStreamFrames(ctx);
  const lost = "The reply the stream lost before the close";
  const stream = await holdBack(ctx, (e) => e.message?.text === lost);
  const { frame, conv } = await startChat(ctx, "A question closed while the widget reads it again");
  const lead = token("supervisor", "sue");
  await api(lead, "POST", `/v1/conversations/${conv.id}/assign`, { agent_id: "bob" });
  await api(token("agent", "bob"), "POST", `/v1/conversations/${conv.id}/messages`, { text: lost });
  await poll("the reply held back", () => stream.held.length === 1);

  // The resync's reads are answered before the close, which the widget
  // hears before it has those answers; the reply they bring shows that
  // the widget applied them.
  const reads = await holdAnswers(ctx, readsOf(conv));
  stream.send(resyncFrame);
  await poll("the resync's reads", () => reads.parked.length === 2);
  await api(lead, "POST", `/v1/conversations/${conv.id}/close`);
  await heardIn(frame, "the close", (e) => e.type === "closed" && e.conversation_id === conv.id);
  await reads.release();
  await shows(frame, lost);
  assert.equal(await frame.getByText("This conversation is closed.").count(), 1, "the close, once the resync's reads answered");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's close heard during a resync");
  await ctx.close();
});

test("a close heard while the widget reads the visitor's list shows there, though the list, older than it, answers after it", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await noteStreamFrames(ctx);
  const { frame, conv } = await startChat(ctx, "A question closed while the visitor's list is read");
  const list = await holdAnswers(ctx, /\/v1\/conversations([?]|$)/);
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  await poll("the list's read", () => list.parked.length === 1);
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/close`);
  await heardIn(frame, "the close", (e) => e.type === "closed" && e.conversation_id === conv.id);
  await list.release();
  const item = frame.locator(".history button");
  await item.waitFor();
  assert.match(await item.innerText(), /^Read the conversation of .* \(closed\)$/, "the conversation, listed closed");
  await frame.getByRole("button", { name: "New conversation" }).waitFor();
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's close heard while it reads the list");
  await ctx.close();
});

test("a close stored while a visitor's stream connects, as they come back, shows on their list", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await noteFetches(ctx);
  const { page, conv } = await startChat(ctx, "A question closed while the visitor comes back");
  await page.close();

  // The visitor comes back: their first stream, with no since to ask for,
  // hears only what is stored after its handshake, held here.
  const stream = await gateStream(ctx);
  const list = await holdAnswers(ctx, /\/v1\/conversations([?]|$)/);
  const consent = ctx.waitForEvent("request", (r) => r.url().includes("/v1/me/consent"));
  const { frame } = await openChat(ctx);
  await consent;
  await poll("the stream's handshake, held", () => stream.asked === 1);
  // A widget that reads its list as the stream begins to connect (it asks
  // in the same task as the consent) has it answered before the close.
  const listed = await frame.evaluate(() => (globalThis.parleyTestFetched ?? []).some((u) => u.includes("/v1/conversations?")));
  if (listed) await poll("the list's read, answered", () => list.parked.length === 1);
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/close`);
  await list.release();
  stream.release();

  const item = frame.locator(".history button");
  await item.waitFor();
  assert.match(await item.innerText(), /^Read the conversation of .* \(closed\)$/, "the conversation, listed closed");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's list read once its stream is open");
  await ctx.close();
});

test("a visitor whose stream's handshake hangs still has their list, read without it", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const { page } = await startChat(ctx, "A question before the stream hangs");
  await page.close();
  // Held for good: the widget reads without it once it has waited long
  // enough (client.ts, firstOpenWaitMs).
  const stream = await gateStream(ctx);
  const { frame } = await openChat(ctx);
  await poll("the stream's handshake, held", () => stream.asked === 1);
  await frame.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ }).waitFor();
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("a first message sent twice while the stream connects opens one conversation", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const mine = visitorToken(ctx);
  let posts = 0;
  await ctx.route(/\/v1\/conversations$/, (route) => {
    if (route.request().method() === "POST") posts++;
    return route.fallback();
  });
  const stream = await gateStream(ctx);
  const { frame } = await openChat(ctx);
  const box = await consented(frame);
  await poll("the stream's handshake, held", () => stream.asked === 1);
  await box.fill("Hello");
  await box.press("Enter");
  await box.fill("Hello again");
  await box.press("Enter");
  stream.release();
  await shows(frame, "Hello");
  await poll("the first message's conversation", async () => (await api(mine(), "GET", "/v1/conversations")).conversations.length === 1);
  assert.equal(posts, 1, "conversations asked for");
  assert.equal(await box.inputValue(), "Hello again", "the draft typed after the first press, kept");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("a visitor's stream that opens only at its second try has their list read again: a close stored in between shows", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const { page, conv } = await startChat(ctx, "A question closed while the visitor's stream tries again");
  await page.close();

  // The first try fails: the list is read all the same, and the close,
  // stored before the second try opens, is sent on no stream.
  const stream = await gateStream(ctx, 1);
  const { frame } = await openChat(ctx);
  const item = frame.locator(".history button");
  await item.waitFor();
  assert.match(await item.innerText(), /\(open\)$/, "the conversation, listed open");
  await poll("the second try, held", () => stream.asked === 2);
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/close`);
  stream.release();

  await poll("the conversation listed closed", async () => /^Read the conversation of .* \(closed\)$/.test(await item.innerText()));
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's list read again once its stream opened late");
  await ctx.close();
});

// holdCalls holds ctx's calls of method to addresses matching re before
// they reach the server: each waits, unsent, in parked until release()
// sends it and lets later calls through.
async function holdCalls(ctx, re, method) {
  const parked = [];
  let holding = true;
  await ctx.route(re, (route) => (holding && route.request().method() === method ? parked.push(route) : route.fallback()));
  return {
    parked,
    async release() {
      holding = false;
      for (const route of parked) await route.continue();
    },
  };
}

// visitorToken notes the access token of ctx's widget as its calls carry
// it: the test calls the API as the visitor with visitorToken's answer.
function visitorToken(ctx) {
  let tok = null;
  ctx.on("request", (r) => {
    const a = r.headers().authorization;
    if (a?.startsWith("Bearer ")) tok = a.slice("Bearer ".length);
  });
  return () => tok;
}

// logOf answers the texts the frame's log shows, in order.
const logOf = (frame) => frame.evaluate(() => [...document.querySelectorAll(".log .text")].map((e) => e.textContent));

const textsOf = async (tok, id) => (await api(tok, "GET", `/v1/conversations/${id}/messages`)).messages.map((m) => m.text);

test("a first message whose answer comes after the visitor moved on leaves them where they are, and lists its conversation", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const mine = visitorToken(ctx);
  const { frame, conv } = await startChat(ctx, "A first conversation, closed");
  const lead = token("supervisor", "sue");
  await api(lead, "POST", `/v1/conversations/${conv.id}/close`);
  await shows(frame, "This conversation is closed.");
  const box = frame.locator("#parley-message");

  // Sent, and held before it reaches the server: the visitor's list, read
  // meanwhile, lacks its conversation, until the widget reads it again.
  await frame.getByRole("button", { name: "New conversation" }).press("Enter");
  const onList = "Opened while the visitor reads their list";
  let opening = await holdCalls(ctx, /\/v1\/conversations$/, "POST");
  await box.fill(onList);
  await box.press("Enter");
  await poll("the opening", () => opening.parked.length === 1);
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  await frame.getByRole("button", { name: /^Read the conversation of .* \(closed\)$/ }).waitFor();
  assert.equal(await frame.getByRole("button", { name: /\(open\)$/ }).count(), 0, "a conversation listed open before the opening reached the server");
  await opening.release();
  await frame.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ }).waitFor();
  assert.equal(await frame.getByRole("heading", { name: "Your conversations" }).count(), 1, "the list left once the opening answered");

  // Stored, its answer held: the visitor opens another conversation of
  // theirs (the newest) meanwhile, and stays in it once the answer comes.
  await api(lead, "POST", `/v1/conversations/${(await conversationOpenedWith(onList)).id}/close`);
  await frame.getByRole("button", { name: "New conversation" }).press("Enter");
  opening = await holdAnswers(ctx, /\/v1\/conversations$/, "POST");
  await box.fill("Opened while the visitor reads another");
  await box.press("Enter");
  await poll("the opening", () => opening.parked.length === 1);
  const other = await api(mine(), "POST", "/v1/conversations", { text: "Another conversation of the visitor's" });
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  await frame.locator(".history button").first().press("Enter");
  await shows(frame, "Another conversation of the visitor's");
  await opening.release();
  await poll("the message box emptied once the opening answered", async () => (await box.inputValue()) === "");
  assert.deepEqual(await logOf(frame), ["Another conversation of the visitor's"], "the log of the conversation on screen");
  await box.fill("Still in the other conversation");
  await box.press("Enter");
  await shows(frame, "Still in the other conversation");
  assert.deepEqual(await textsOf(mine(), other.id), ["Another conversation of the visitor's", "Still in the other conversation"], "where the next message went");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  noCSPViolations(ctx, "the widget's first message answered after the visitor moved on");
  await ctx.close();
});

test("a message is sent once, however often the visitor presses Enter while it is under way", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const mine = visitorToken(ctx);
  const { frame } = await openChat(ctx);
  const box = await consented(frame);
  const first = "A question sent with two presses of Enter";
  await box.fill(first);
  const opening = await holdAnswers(ctx, /\/v1\/conversations$/, "POST");
  await box.press("Enter");
  await poll("the opening", () => opening.parked.length === 1);
  await box.press("Enter");
  await opening.release();
  await shows(frame, first);
  await poll("the message box emptied once the opening answered", async () => (await box.inputValue()) === "");
  await box.fill("And a second question");
  await box.press("Enter");
  await shows(frame, "And a second question");
  const convs = (await api(mine(), "GET", "/v1/conversations")).conversations;
  assert.equal(convs.length, 1, "conversations opened");
  assert.deepEqual(await textsOf(mine(), convs[0].id), [first, "And a second question"], "the messages stored");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("a message sent again after an error reuses its Idempotency-Key: stored once, though the first try was", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const mine = visitorToken(ctx);
  const { frame } = await openChat(ctx);
  const box = await consented(frame);
  // failOnce has the server store the first post to re, then answers 503,
  // as a chat instance that stored it and lost its connection does.
  const failOnce = async (re) => {
    let failed = false;
    await ctx.route(re, async (route) => {
      if (failed || route.request().method() !== "POST") return route.fallback();
      failed = true;
      await route.fetch();
      await route.fulfill({ status: 503, contentType: "application/problem+json", body: JSON.stringify({ status: 503, detail: "the service is unavailable" }) });
    });
  };
  // sendTwice sends text, which fails, then again with the Send button.
  const sendTwice = async (text) => {
    await box.fill(text);
    await box.press("Enter");
    await frame.getByRole("alert").filter({ hasText: "the service is unavailable" }).waitFor();
    assert.equal(await box.inputValue(), text, "the draft kept after the error");
    await frame.getByRole("button", { name: "Send" }).press("Enter");
    await shows(frame, text);
    await poll("the message box emptied once sent", async () => (await box.inputValue()) === "");
  };

  await failOnce(/\/v1\/conversations$/);
  await sendTwice("A first message whose first try failed");
  const convs = (await api(mine(), "GET", "/v1/conversations")).conversations;
  assert.equal(convs.length, 1, "conversations opened");

  await failOnce(new RegExp(`/v1/conversations/${convs[0].id}/messages$`));
  await sendTwice("A reply whose first try failed");
  assert.deepEqual(await textsOf(mine(), convs[0].id), ["A first message whose first try failed", "A reply whose first try failed"], "the messages stored");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("of two conversations clicked on the list, the one clicked last opens, whichever answers last", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const mine = visitorToken(ctx);
  const first = "The conversation clicked first";
  const { frame, conv } = await startChat(ctx, first);
  const last = await api(mine(), "POST", "/v1/conversations", { text: "The conversation clicked last" });
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  // The newest first: the one clicked last, then the first.
  const items = frame.locator(".history button");
  await poll("both listed", async () => (await items.count()) === 2);

  const reads = await holdAnswers(ctx, readsOf(conv));
  await items.nth(1).press("Enter");
  await poll("the first's reads", () => reads.parked.length === 2);
  await items.nth(0).press("Enter");
  await shows(frame, "The conversation clicked last");
  await reads.release();

  // What the stream brings of the conversation clicked last shows: it is
  // the one on screen.
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${last.id}/assign`, { agent_id: "bob" });
  await api(token("agent", "bob"), "POST", `/v1/conversations/${last.id}/messages`, { text: "Bob answers the one clicked last" });
  await shows(frame, "Bob answers the one clicked last");
  assert.deepEqual(await logOf(frame), ["The conversation clicked last", "Bob answers the one clicked last"], "the log on screen");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("a hand-off leaves the conversation to a person without reading it, and an assignment heard after it stands", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  await noteStreamFrames(ctx);
  const { frame, conv } = await startChat(ctx, "A question handed off, then taken");
  const bot = await assignBot(conv, "faq-taken");
  await shows(frame, "You are talking to a bot");

  // Any read of the conversation made after the hand-off answers only
  // once the assignment that follows it was heard.
  const reads = await holdAnswers(ctx, new RegExp(`/v1/conversations/${conv.id}$`));
  await api(bot, "POST", `/v1/conversations/${conv.id}/handoff`);
  await poll("the hand-off shown, or read", async () => reads.parked.length > 0 || (await frame.getByText(handedOffBanner).count()) > 0);
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/assign`, { agent_id: "bob" });
  await heardIn(frame, "the assignment", (e) => e.type === "assigned" && e.assignee === "bob");
  await reads.release();

  await api(token("agent", "bob"), "POST", `/v1/conversations/${conv.id}/messages`, { text: "Bob takes it from here" });
  await shows(frame, "Bob takes it from here");
  await shows(frame, "You are talking to a person");
  assert.equal(await frame.getByText(handedOffBanner).count(), 0, "a person said to be awaited once Bob took it");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("a reply whose answer comes after the visitor opened another conversation is not shown in that one", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const mine = visitorToken(ctx);
  const { frame, conv } = await startChat(ctx, "The conversation replied to");
  const other = await api(mine(), "POST", "/v1/conversations", { text: "The conversation opened meanwhile" });
  const box = frame.locator("#parley-message");
  const reply = "A reply sent before the visitor moved on";
  await box.fill(reply);
  const posting = await holdAnswers(ctx, new RegExp(`/v1/conversations/${conv.id}/messages$`), "POST");
  await box.press("Enter");
  await poll("the reply's post", () => posting.parked.length === 1);
  await frame.getByRole("button", { name: "Your conversations" }).press("Enter");
  // The newest first: the one opened meanwhile.
  await frame.locator(".history button").first().press("Enter");
  await shows(frame, "The conversation opened meanwhile");
  await posting.release();
  await poll("the message box emptied once the reply was stored", async () => (await box.inputValue()) === "");
  assert.deepEqual(await logOf(frame), ["The conversation opened meanwhile"], "the log of the conversation on screen");
  assert.deepEqual(await textsOf(mine(), conv.id), ["The conversation replied to", reply], "the reply stored where it was written");
  assert.deepEqual(await textsOf(mine(), other.id), ["The conversation opened meanwhile"], "the other conversation");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("a resync heard while the visitor opens a conversation has it read again once opened", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const lost = "The reply the stream lost while the visitor was on their list";
  const stream = await holdBack(ctx, (e) => e.message?.text === lost);
  const { page, frame, conv } = await startChat(ctx, "A question opened again during a resync");
  await api(token("supervisor", "sue"), "POST", `/v1/conversations/${conv.id}/assign`, { agent_id: "bob" });

  // A reply stored after the opening's reads were answered, lost by the
  // stream; the resync's reads are made while the opening is under way:
  // the list, and no conversation, none being on screen yet.
  const reads = await openHeld(ctx, frame, conv);
  await api(token("agent", "bob"), "POST", `/v1/conversations/${conv.id}/messages`, { text: lost });
  await poll("the reply held back", () => stream.held.length === 1);
  const listed = page.waitForRequest((r) => r.method() === "GET" && /\/v1\/conversations[?]/.test(r.url()));
  stream.send(resyncFrame);
  await listed;
  await reads.release();
  await shows(frame, lost);
  assert.equal(await frame.getByText(lost, { exact: true }).count(), 1, "the lost reply, shown once");
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});

test("resyncs heard in a row have the widget read its list and the conversation again once", async () => {
  const ctx = await newContext(browser, { viewport: { width: 320, height: 640 } });
  const stream = await holdBack(ctx, () => false);
  const { frame, conv } = await startChat(ctx, "A question read again once");
  const reads = [];
  ctx.on("request", (r) => r.method() === "GET" && reads.push(new URL(r.url()).pathname));
  for (let i = 0; i < 3; i++) stream.send(resyncFrame);
  // The spread is at most 2 s; its reads begin by then.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(reads.filter((p) => p === "/v1/conversations").length, 1, `the list's reads: ${reads}`);
  assert.equal(reads.filter((p) => p === `/v1/conversations/${conv.id}/messages`).length, 1, `the transcript's reads: ${reads}`);
  assert.equal(await frame.getByRole("alert").count(), 0, "an error in the widget");
  await ctx.close();
});
