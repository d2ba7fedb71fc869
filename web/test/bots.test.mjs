// Bots in the pages, in a real browser against a real `parley all`: an admin
// registers a bot (its webhook a server of this test on loopback); a visitor
// who gave no ai consent chats in the widget; a supervisor assigns the bot
// in the console, with the keyboard; the widget says "You are talking to a
// bot" and asks for ai consent before the assistant answers; the visitor
// allows; the bot's webhook receives, signed, only what follows (the
// visitor's e-mail address redacted); the bot answers through the API with
// its own session (refreshed from its registration); the widget labels its
// message "Bot"; the visitor stops the assistant (ai withdrawn), and what
// they write then never reaches the bot; they allow it again and ask for a
// person, and the hand-off reaches the bot; the console shows the
// conversation unassigned with the hand-off line (at the server's time, and
// still there after a reload), the bot's message labelled, and an agent's
// inbox gets it.
// Then the privacy page's "Bots and integrations": list, register (the
// secret shown once, copied), delete. Screenshots go to test-results/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";
import { accessible, accessibleWithFrame, freePort, launchBrowser, newContext, noCSPViolations, openShadowRoots, poll, screenshot, signIn, staffPage, startParley, startShop } from "./lib.mjs";

let stack, browser, closeShop, host, hookServer, hook;
const hooks = [];

before(async () => {
  // The bots' webhook runs on this host, which Parley sends none to unless told.
  stack = await startParley(["--private-webhooks"]);
  browser = await launchBrowser();
  // A shop's page with the widget on it.
  const shop = await startShop(stack.gw);
  host = shop.url;
  closeShop = shop.close;
  // The bot's webhook: it keeps each request (path, signature, body as
  // sent) and acknowledges whatever Parley delivers.
  const hookPort = await freePort();
  hook = `http://127.0.0.1:${hookPort}/parley`;
  hookServer = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      hooks.push({ path: req.url, signature: req.headers["parley-signature"], body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise((r) => hookServer.listen(hookPort, "127.0.0.1", r));
});

after(async () => {
  await browser?.close();
  closeShop?.();
  hookServer?.close();
  await stack?.stop();
});

// signed answers a delivery's body once its Parley-Signature verifies under
// secret, as pkg/webhook does: t=<unix>,v1=<hex>[,v1=<hex>…], each v1 the
// HMAC-SHA256 keyed with the secret's text of "<t>.<body>", t within five
// minutes of now.
function signed(h, secret) {
  let t = "";
  const v1 = [];
  for (const part of (h.signature ?? "").split(",")) {
    const [k, v] = part.trim().split("=");
    if (k === "t") t = v;
    if (k === "v1") v1.push(Buffer.from(v, "hex"));
  }
  assert.match(t, /^\d+$/, `the signature's timestamp in ${JSON.stringify(h.signature)}`);
  assert.ok(Math.abs(Date.now() / 1000 - Number(t)) < 300, `a signature of ${t}, now ${Date.now() / 1000}`);
  const want = createHmac("sha256", secret).update(`${t}.`).update(h.body).digest();
  assert.ok(v1.some((s) => s.length === want.length && timingSafeEqual(s, want)), `no v1 of ${JSON.stringify(h.signature)} matches the body under the secret`);
  return JSON.parse(h.body.toString("utf8"));
}

const shows = (where, text) => where.getByText(text).first().waitFor({ timeout: 30000 });

// focused names the element with the keyboard's focus in a page or frame.
const focused = (where) => where.evaluate(() => document.activeElement?.textContent?.trim() || document.activeElement?.id || "");

// tabTo presses Tab (in page, whose keyboard reaches the frame) until the
// focus in where is on the control named name, as a keyboard user would.
async function tabTo(page, where, name, most = 30) {
  for (let i = 0; i < most; i++) {
    if ((await focused(where)) === name) return;
    await page.keyboard.press("Tab");
  }
  assert.fail(`Tab never reached ${JSON.stringify(name)} (last: ${JSON.stringify(await focused(where))})`);
}

test("a bot in the widget and the console: consent first, labelled, and a person on request", async () => {
  const { api, gw } = stack;
  const admin = stack.token("admin", "ada");

  // The admin registers the bot; its session is what it answers with.
  const reg = await api(admin, "PUT", "/v1/bots/faq", { name: "FAQ assistant", webhook_url: hook });
  assert.equal(reg.id, "faq");
  assert.ok(reg.secret, "the registration shows the signing secret");
  assert.ok(reg.session?.refresh_token, "the registration gives the bot a session");

  // A supervisor's console and an agent's, open before the visitor writes.
  const supervisor = await staffPage(browser, gw, "/console", stack.token("supervisor", "sam"));
  await supervisor.getByText("0 open conversations").waitFor();
  const agent = await staffPage(browser, gw, "/console", stack.token("agent", "alice"));
  await agent.getByText("0 open conversations").waitFor();

  // The visitor, with every purpose off (ai too), writes in the widget.
  const ctx = await newContext(browser, { viewport: { width: 360, height: 720 } });
  await openShadowRoots(ctx);
  const page = await ctx.newPage();
  await page.goto(`${host}/`);
  await page.getByRole("button", { name: "Chat with us" }).click();
  const frame = await poll("the chat frame", () => page.frames().find((f) => f.url().startsWith(`${gw}/widget-frame`)));
  await frame.getByRole("button", { name: "Start chat" }).click();
  await shows(frame, "You are talking to a person");
  const box = frame.locator("#parley-message");
  await box.fill("How do I return a parcel?");
  await box.press("Enter");
  await shows(frame, "How do I return a parcel?");

  // The supervisor assigns the bot, keyboard only: the conversation's row,
  // the bot's menu (typed to), its button.
  const row = supervisor.getByRole("listitem").filter({ hasText: "unassigned" });
  await row.waitFor();
  await row.getByRole("button").focus();
  await supervisor.keyboard.press("Enter");
  const transcript = supervisor.getByRole("list", { name: "Transcript" });
  await transcript.getByText("How do I return a parcel?").waitFor();
  const menu = supervisor.getByLabel("Bot", { exact: true });
  await menu.focus();
  await supervisor.keyboard.type("FAQ");
  assert.equal(await menu.inputValue(), "faq");
  await supervisor.keyboard.press("Tab");
  assert.equal(await focused(supervisor), "Assign to bot");
  await supervisor.keyboard.press("Enter");
  await supervisor.getByText("FAQ assistant (bot)").first().waitFor();
  const conv = (await api(stack.token("supervisor", "sam"), "GET", "/v1/conversations?status=open")).conversations[0];
  assert.equal(conv.assignee, "bot:faq");
  await accessible(supervisor, "the console, the conversation assigned to a bot");
  await screenshot(supervisor, "bots-console-assigned");

  // The widget learns it live: the bot banner, and the ai consent prompt.
  await shows(frame, "You are talking to a bot");
  await shows(frame, "Before the assistant can answer");
  await shows(frame, "e-mail addresses, phone numbers, card numbers, IBANs and IP addresses removed");
  await accessibleWithFrame(page, "the widget asking for ai consent");
  await screenshot(page, "bots-widget-consent");

  // Nothing of the conversation reached the bot without the consent.
  const delivered = () => hooks.filter((h) => h.path === "/parley").map((h) => signed(h, reg.secret));
  const ofConv = () => delivered().filter((b) => b.conversation_id === conv.id);
  assert.deepEqual(ofConv(), [], "the bot received the conversation before the visitor allowed it");

  // The visitor allows, with the keyboard: the consent recorded has ai on,
  // the other purposes as they were.
  await frame.getByRole("button", { name: "Close" }).focus();
  await tabTo(page, frame, "Allow the assistant");
  await page.keyboard.press("Enter");
  await poll("the prompt to go", async () => (await frame.getByText("Before the assistant can answer").count()) === 0);
  await poll("the focus on the message box", () => frame.evaluate(() => document.activeElement?.id === "parley-message"));
  const exported = await api(admin, "GET", `/v1/subjects/${conv.visitor}/export`);
  const inForce = exported.consents.at(-1);
  assert.deepEqual([inForce.ai, inForce.analytics, inForce.network_data], [true, false, false]);
  await shows(frame, "You are talking to a bot");
  assert.equal(await frame.getByRole("button", { name: "Stop the assistant" }).count(), 1, "no way to stop the assistant");

  // What the visitor writes now reaches the bot, signed, the e-mail address
  // redacted (the visitor still sees it). Deliveries come in the order
  // stored: the first of the conversation to arrive is this message, so
  // neither the opening nor the assignment, both before the consent, went.
  await box.fill("Write to me at ada.lovelace@example.com please");
  await box.press("Enter");
  await shows(frame, "Write to me at ada.lovelace@example.com please");
  const first = await poll("the visitor's message at the bot", () => ofConv()[0]);
  assert.deepEqual([first.type, first.author?.role, first.text], ["chat.message_posted.v1", "visitor", "Write to me at [email] please"]);

  // The bot answers with its own session, renewed from the registration's.
  const session = await api(null, "POST", "/v1/sessions/refresh", { refresh_token: reg.session.refresh_token });
  await api(session.access_token, "POST", `/v1/conversations/${conv.id}/messages`, { text: "Print the label from your order page and drop the parcel at any post office." });
  const said = frame.locator(".log > div").filter({ hasText: "Print the label" });
  await said.waitFor();
  assert.equal(await said.locator(".who").textContent(), "Bot");
  await accessibleWithFrame(page, "the widget with the bot's answer");
  await screenshot(page, "bots-widget-answer");

  // The visitor, back in another tab, finds the bot's conversation as it
  // stands: the banner, the answer labelled, and no prompt (the consent in
  // force, read anew, holds ai).
  const again = await ctx.newPage();
  await again.goto(`${host}/`);
  const consentRead = again.waitForResponse((r) => r.url() === `${gw}/v1/me/consent` && r.request().method() === "GET");
  await again.getByRole("button", { name: "Chat with us" }).click();
  const frame2 = await poll("the second tab's chat frame", () => again.frames().find((f) => f.url().startsWith(`${gw}/widget-frame`)));
  assert.equal((await (await consentRead).json()).ai, true);
  await frame2.getByRole("button", { name: /^Continue the conversation of / }).click();
  await shows(frame2, "You are talking to a bot");
  assert.equal(await frame2.locator(".log > div").filter({ hasText: "Print the label" }).locator(".who").textContent(), "Bot");
  assert.equal(await frame2.getByRole("button", { name: "Allow the assistant" }).count(), 0, "the prompt again, though ai is consented to");
  await again.close();

  // The visitor stops the assistant, with the keyboard, as easily as they
  // allowed it: ai withdrawn, the rest unchanged; the banner says the
  // assistant no longer receives their messages and offers a person.
  await frame.getByRole("button", { name: "Close" }).focus();
  await tabTo(page, frame, "Stop the assistant");
  await page.keyboard.press("Enter");
  await shows(frame, "You stopped the assistant: it no longer receives your messages");
  await poll("the focus on the message box", () => frame.evaluate(() => document.activeElement?.id === "parley-message"));
  const withdrawn = (await api(admin, "GET", `/v1/subjects/${conv.visitor}/export`)).consents.at(-1);
  assert.deepEqual([withdrawn.ai, withdrawn.analytics, withdrawn.network_data], [false, false, false]);
  assert.equal(await frame.getByRole("button", { name: "Allow the assistant" }).count(), 0, "asked at once for the consent just withdrawn");
  await frame.getByRole("button", { name: "Ask for a person" }).waitFor();
  await accessibleWithFrame(page, "the widget after the assistant was stopped");
  await screenshot(page, "bots-widget-stopped");

  // What the visitor writes now does not reach the bot (checked below,
  // once a later event has).
  const posted = page.waitForResponse((r) => r.url() === `${gw}/v1/conversations/${conv.id}/messages` && r.request().method() === "POST");
  await box.fill("Call me on +44 20 7946 0958");
  await box.press("Enter");
  const unsent = (await (await posted).json()).id;
  await shows(frame, "Call me on +44 20 7946 0958");

  // The visitor wants the assistant back: the prompt again, then allowed.
  await frame.getByRole("button", { name: "Close" }).focus();
  await tabTo(page, frame, "Use the assistant again");
  await page.keyboard.press("Enter");
  await shows(frame, "Before the assistant can answer");
  await poll("the focus on Allow the assistant", async () => (await focused(frame)) === "Allow the assistant");
  await page.keyboard.press("Enter");
  await poll("the prompt to go again", async () => (await frame.getByText("Before the assistant can answer").count()) === 0);

  // The visitor asks for a person, with the keyboard.
  await frame.getByRole("button", { name: "Close" }).focus();
  await tabTo(page, frame, "Ask for a person");
  await page.keyboard.press("Enter");
  await shows(frame, "A person will answer you");
  await poll("the focus back on the message box", () => frame.evaluate(() => document.activeElement?.id === "parley-message"));
  await poll("the bot banner to go", async () => (await frame.getByText("You are talking to a bot").count()) === 0);
  await accessibleWithFrame(page, "the widget after the hand-off");
  await screenshot(page, "bots-widget-handoff");

  // The hand-off reaches the bot; delivered in the order stored, it comes
  // after the message written while the assistant was stopped, which never
  // did: not to the webhook, not in the bot's delivery log.
  const handoff = await poll("the hand-off at the bot", () => ofConv().find((b) => b.type === "chat.handed_off.v1"));
  assert.deepEqual([handoff.assignee, handoff.author?.role], ["", "visitor"]);
  assert.ok(!ofConv().some((b) => b.id === unsent), "a message written while the assistant was stopped reached the bot");
  const attempts = await poll("the hand-off in the bot's delivery log", async () => {
    const { deliveries } = await api(admin, "GET", "/v1/bots/faq/deliveries");
    return deliveries.some((d) => d.event_id === handoff.id) && deliveries;
  });
  assert.ok(!attempts.some((d) => d.event_id === unsent), "the delivery log holds the message written while the assistant was stopped");
  const texts = ofConv().filter((b) => b.text).map((b) => b.text);
  assert.ok(!texts.includes("How do I return a parcel?"), "the opening, before the consent, reached the bot");
  assert.ok(!ofConv().some((b) => b.type === "chat.conversation_assigned.v1"), "the assignment, before the consent, reached the bot");
  assert.ok(!JSON.stringify(delivered()).includes("example.com"), "an e-mail address in clear reached the bot");

  // The console: unassigned, the hand-off line, the bot's message labelled.
  await supervisor.getByText("The visitor asked for a person").waitFor();
  await supervisor.locator(".facts dd").filter({ hasText: "nobody" }).waitFor();
  await transcript.locator(".line.bot").filter({ hasText: "Bot · FAQ assistant" }).filter({ hasText: "Print the label" }).waitFor();
  assert.equal((await api(stack.token("supervisor", "sam"), "GET", `/v1/conversations/${conv.id}`)).assignee, null);
  await accessible(supervisor, "the console after the hand-off");
  await screenshot(supervisor, "bots-console-handoff");
  // The hand-off line stands at the server's time of it (the bot's delivery
  // says when), live and after a reload, which reads it from the
  // transcript.
  const handoffLine = transcript.locator(".line.handoff");
  const ms = (at) => Date.parse(at.replace(/(\.\d{3})\d+/, "$1"));
  const lineAt = async () => ms(await handoffLine.locator("time").getAttribute("datetime"));
  assert.equal(await lineAt(), ms(handoff.at), "the live hand-off line's time");
  await supervisor.reload();
  // A try-out token's sign-in is not kept: the supervisor gives it again.
  await signIn(supervisor, stack.token("supervisor", "sam"));
  await supervisor.getByRole("listitem").filter({ hasText: "unassigned" }).getByRole("button").click();
  await transcript.getByText("Print the label").waitFor();
  await handoffLine.filter({ hasText: "The visitor asked for a person" }).waitFor();
  assert.equal(await handoffLine.count(), 1, "the hand-off line once");
  assert.equal(await lineAt(), ms(handoff.at), "the hand-off line's time after a reload");
  await accessible(supervisor, "the console reloaded after the hand-off");
  await screenshot(supervisor, "bots-console-handoff-reloaded");
  // It reaches the agents' inbox.
  await agent.getByRole("listitem").filter({ hasText: "unassigned" }).waitFor();
  await screenshot(agent, "bots-agent-inbox");

  noCSPViolations(ctx, "the widget");
  noCSPViolations(supervisor.context(), "the supervisor's console");
  await ctx.close();
  await agent.context().close();
  await supervisor.context().close();
});

test("the privacy page's bots and integrations: list, register with the secret shown once, delete", async () => {
  const { gw } = stack;
  const page = await staffPage(browser, gw, "/privacy", stack.token("admin", "ada"));
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: gw });
  const section = page.locator("#bots");
  const table = section.getByRole("table", { name: "Registered" });
  await table.getByRole("cell", { name: "FAQ assistant", exact: true }).waitFor();

  // Register an integration, keyboard only.
  await section.getByLabel("Integration: receives every conversation's events").focus();
  await page.keyboard.press("Space");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "reg-id");
  await page.keyboard.type("crm");
  await page.keyboard.press("Tab");
  await page.keyboard.type("Our CRM");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "reg-target");
  // A refusal first, in words, by its field.
  await page.keyboard.type("ftp://crm.example.com");
  await page.keyboard.press("Enter");
  await section.getByText("webhook_url: an https address").waitFor();
  await section.getByLabel("Webhook URL").fill(hook.replace("/parley", "/crm"));
  await section.getByLabel("Webhook URL").press("Enter");
  const secrets = section.getByRole("group", { name: /Our CRM \(crm\) is registered/ });
  await secrets.waitFor();
  const secret = await secrets.getByLabel(/Signing secret/).inputValue();
  assert.match(secret, /^[A-Za-z0-9_-]{40,}$/);
  await secrets.getByRole("button", { name: "Copy signing secret" }).press("Enter");
  await secrets.getByText("Copied.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
  await table.getByRole("cell", { name: "Our CRM", exact: true }).waitFor();
  await accessible(page, "the privacy page with a new integration's secret");
  await screenshot(page, "bots-privacy-registered");
  await secrets.getByRole("button", { name: "I have copied them" }).click();
  assert.equal(await section.locator("#created-secret").count(), 0, "the secret still shown");

  // Register a bot on a NATS subject: its refresh token is shown once too,
  // and is the bot's session.
  await section.getByLabel("Bot: answers the conversations assigned to it").check();
  await section.getByLabel("Id").fill("triage");
  await section.getByLabel("Name").fill("Triage bot");
  await section.getByRole("radio", { name: "NATS subject" }).check();
  await section.getByRole("radio", { name: "NATS subject" }).press("Tab");
  await page.keyboard.type("parley.bots.demo.triage");
  await page.keyboard.press("Enter");
  const botSecrets = section.getByRole("group", { name: /Triage bot \(triage\) is registered/ });
  await botSecrets.waitFor();
  await botSecrets.getByRole("button", { name: "Copy the bot's refresh token" }).click();
  await botSecrets.getByText("Copied.").waitFor();
  const refresh = await page.evaluate(() => navigator.clipboard.readText());
  const session = await stack.api(null, "POST", "/v1/sessions/refresh", { refresh_token: refresh });
  assert.deepEqual([session.principal.role, session.principal.id], ["bot", "triage"]);
  await screenshot(page, "bots-privacy-bot-registered");
  await botSecrets.getByRole("button", { name: "I have copied them" }).click();

  // Delete the integration, confirmed.
  await section.getByRole("button", { name: "Delete Our CRM" }).first().press("Enter");
  await section.getByRole("group", { name: "Delete Our CRM" }).getByRole("button", { name: "Delete Our CRM" }).press("Enter");
  await section.getByText("Our CRM (crm) deleted.").waitFor();
  assert.equal(await table.getByRole("cell", { name: "Our CRM", exact: true }).count(), 0);
  await accessible(page, "the privacy page after a delete");
  noCSPViolations(page.context(), "the privacy page");
  await page.context().close();
});
