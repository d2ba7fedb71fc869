// The agent console in a real browser against a real `parley all`: a
// visitor (through the API and a WebSocket of their own) and an agent in the
// console, live both ways; a supervisor's assignment refused and forced; the
// visitor's erasure reaching the agent's open view; and the inbox with 2,000
// open conversations, whose figures are printed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { accessible, gateStream, holdAnswers, holdBack, launchBrowser, loadAverage, newContext, noCSPViolations, noteFetches, parley, poll, rawStream, resyncFrame, screenshot, signIn, staffPage, startParley } from "./lib.mjs";

let stack, browser;
const consent = { consent: { analytics: false, network_data: false, ai: false }, notice_version: "2026-01" };

before(async () => {
  stack = await startParley();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const visitorStream = (token) => rawStream(browser, stack.gw, token);

test("an agent answers a visitor live in the console, and sees their erasure", async () => {
  const { api, gw } = stack;
  const reg = await api(null, "POST", "/v1/tenants/demo/visitors", consent);
  const visitor = reg.access_token;
  const visitorWS = await visitorStream(visitor);
  await api(visitor, "PUT", "/v1/me/profile", { name: "Dana Reyes", email: "dana@example.com" });

  const page = await staffPage(browser, gw, "/console", stack.token("agent", "alice"));
  await page.getByText("0 open conversations").waitFor();

  // The visitor opens a conversation: it appears live, one unread.
  const { id } = await api(visitor, "POST", "/v1/conversations", { text: "Where is my parcel?" });
  const row = page.getByRole("listitem").filter({ hasText: "Dana Reyes" });
  await row.getByText("1 unread").waitFor();
  const second = await api(visitor, "POST", `/v1/conversations/${id}/messages`, { text: "It was due yesterday." });
  await row.getByText("2 unread").waitFor();
  await page.getByText("1 open conversation", { exact: true }).waitFor();
  await accessible(page, "the inbox");
  await screenshot(page, "console-inbox");

  // Opened: read; the transcript, though unassigned, shows what came live.
  await row.getByRole("button").click();
  const transcript = page.getByRole("list", { name: "Transcript" });
  await transcript.getByText("It was due yesterday.").waitFor();
  await poll("the unread count to clear", async () => (await row.getByText(/unread/).count()) === 0);
  assert.deepEqual(JSON.parse(await page.evaluate(() => sessionStorage.getItem("parley.console.unread"))), {});

  // The visitor types: shown. The agent types: the visitor's stream hears it.
  await visitorWS.send({ type: "typing", conversation_id: id });
  await page.getByRole("status").filter({ hasText: "The visitor is typing…" }).waitFor();
  await page.getByLabel("Reply").pressSequentially("On its");
  await poll("the agent's typing on the visitor's stream", async () => (await visitorWS.saw()).some((e) => e.type === "typing" && e.author.id === "alice"));

  // The reply takes the conversation and reaches the visitor; the whole
  // transcript then reads.
  await page.getByLabel("Reply").pressSequentially(" way: it left this morning.");
  await page.getByRole("button", { name: "Send" }).click();
  await transcript.getByText("On its way: it left this morning.").waitFor();
  await poll("the reply on the visitor's stream", async () => (await visitorWS.saw()).some((e) => e.type === "message" && e.message.text === "On its way: it left this morning."));
  await transcript.getByText("Where is my parcel?").waitFor();
  await page.getByText("you (alice)").waitFor();
  await page.getByText("dana@example.com").waitFor();
  const said = await api(visitor, "GET", `/v1/conversations/${id}/messages`);
  assert.deepEqual(said.messages.map((m) => m.text), ["Where is my parcel?", "It was due yesterday.", "On its way: it left this morning."]);
  await accessible(page, "the conversation");
  await screenshot(page, "console-conversation");

  // The visitor withdraws a message: it reads withdrawn in place.
  await api(visitor, "DELETE", `/v1/conversations/${id}/messages/${second.id}`);
  await transcript.getByText("Withdrawn by the visitor").waitFor();
  assert.equal(await transcript.getByText("It was due yesterday.").count(), 0);

  // Presence: away, then available again, as the API reads it.
  await page.getByLabel("Presence").selectOption("away");
  await poll("alice away", async () => (await api(stack.token("agent", "alice"), "GET", "/v1/agents/alice")).status === "away");
  await page.getByLabel("Presence").selectOption("online");
  await poll("alice available", async () => (await api(stack.token("agent", "alice"), "GET", "/v1/agents/alice")).status === "online");

  // Closed; the visitor rates it; the rating shows.
  await page.getByRole("button", { name: "Close conversation" }).click();
  await page.getByText("closed", { exact: true }).waitFor();
  await api(visitor, "POST", `/v1/conversations/${id}/rating`, { score: 4 });
  await page.getByText("4 of 5").waitFor();

  // The visitor erases themself: the open view turns to erased, with the
  // notice, and the transcript the agent reads is erased.
  await api(visitor, "DELETE", "/v1/me");
  await page.getByRole("alert").filter({ hasText: "The visitor erased themself" }).waitFor();
  await poll("every line erased", async () => (await transcript.getByText("Erased", { exact: true }).count()) === 3);
  assert.equal(await transcript.getByText("Where is my parcel?").count(), 0);
  await page.getByText("closed (erased)").waitFor();
  await page.getByRole("heading", { name: "Erased visitor" }).waitFor();
  assert.equal(await page.getByText("dana@example.com").count(), 0, "the profile is gone with the visitor");
  const read = await poll("the agent's read of the erased transcript", async () => {
    const t = await api(stack.token("agent", "alice"), "GET", `/v1/conversations/${id}/messages`);
    return t.messages.every((m) => m.erased && m.text === null) && t;
  });
  assert.equal(read.messages.length, 3);
  assert.deepEqual(await poll("the visitor's stream closed", () => visitorWS.closed()), { code: 1008, reason: "subject erased" });
  await accessible(page, "the erased conversation");
  await screenshot(page, "console-erased");

  noCSPViolations(page.context(), "the console");
  await visitorWS.close();
  await page.context().close();
});

test("a supervisor's assignment to an away agent is refused, then forced", async () => {
  const { api, gw } = stack;
  const visitor = (await api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  const { id } = await api(visitor, "POST", "/v1/conversations", { text: "Anyone there?" });
  await api(stack.token("agent", "bob"), "PUT", "/v1/me/presence", { status: "away" });

  const page = await staffPage(browser, gw, "/console", stack.token("supervisor", "sue"));
  await page.getByRole("listitem").filter({ hasText: "unassigned" }).first().getByRole("button").click();
  await page.getByRole("list", { name: "Transcript" }).getByText("Anyone there?").waitFor();
  await page.getByLabel("Agent id").fill("bob");
  await page.getByRole("button", { name: "Assign", exact: true }).click();
  await page.getByRole("alert").filter({ hasText: /away/ }).waitFor();
  await accessible(page, "a refused assignment");
  await page.getByRole("button", { name: "Assign anyway to bob" }).click();
  // The assignee's availability shows beside their name.
  await page.getByText("Assigned to").locator("xpath=following-sibling::dd[1]").filter({ hasText: /^bob \(away, \d+ open\)$/ }).waitFor();
  assert.equal((await api(stack.token("supervisor", "sue"), "GET", `/v1/conversations/${id}`)).assignee, "bob");
  await api(stack.token("supervisor", "sue"), "POST", `/v1/conversations/${id}/close`, {});
  noCSPViolations(page.context(), "the supervisor's console");
  await page.context().close();
});

test("an agent's presence outlives a reload of the console, and ends with sign-out", async () => {
  const { api, gw } = stack;
  const erin = stack.token("agent", "erin");
  const status = async () => (await api(erin, "GET", "/v1/agents/erin")).status;
  const page = await staffPage(browser, gw, "/console", erin);
  await page.getByLabel("Presence").selectOption("online");
  await poll("erin available", async () => (await status()) === "online");
  await page.reload();
  await signIn(page, erin);
  await poll("the presence read", async () => (await page.getByLabel("Presence").inputValue()) === "online");
  assert.equal(await status(), "online", "presence after a reload");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Token").waitFor();
  await poll("erin away once signed out", async () => (await status()) === "away");
  await page.context().close();
});

// streamedConsole signs in to the console in a context whose live streams
// pass through the test (Playwright's WebSocket routes), which can drop them.
async function streamedConsole(token) {
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  const sockets = [];
  await ctx.routeWebSocket(/\/v1\/stream/, (ws) => {
    ws.connectToServer();
    sockets.push(ws);
  });
  const requests = [];
  const page = await ctx.newPage();
  page.on("request", (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
  await page.goto(`${stack.gw}/console`);
  await signIn(page, token);
  await poll("the console's stream", () => sockets.length === 1);
  return { page, sockets, requests };
}

test("the console says when its live stream dropped, and reconnects", async () => {
  const { page, sockets } = await streamedConsole(stack.token("supervisor", "sue"));
  await page.getByText(/open conversations?$/).first().waitFor();
  await sockets[0].close({ code: 1001, reason: "going away" });
  await page.getByRole("status").filter({ hasText: "The live updates dropped: reconnecting…" }).waitFor();
  await accessible(page, "a dropped stream");
  await poll("the stream connected again", () => sockets.length === 2);
  await poll("the notice gone", async () => (await page.getByText("reconnecting…").count()) === 0);
  // Live again: a new conversation shows.
  const visitor = (await stack.api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  await stack.api(visitor, "PUT", "/v1/me/profile", { name: "Ravi Shah" });
  const { id } = await stack.api(visitor, "POST", "/v1/conversations", { text: "After the drop" });
  await page.getByRole("listitem").filter({ hasText: "Ravi Shah" }).waitFor();
  // Closed: the budget below counts the open ones.
  await stack.api(stack.token("supervisor", "sue"), "POST", `/v1/conversations/${id}/close`, {});
  await page.context().close();
});

// openConversation opens a conversation as a new visitor called name.
async function openConversation(name, text) {
  const visitor = (await stack.api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  await stack.api(visitor, "PUT", "/v1/me/profile", { name });
  return stack.api(visitor, "POST", "/v1/conversations", { text });
}

// inboxLoaded waits for the console's count of open conversations, the
// inbox read to its end.
const inboxLoaded = (page) => page.getByRole("status").filter({ hasText: /^\d[\d,]* open conversations?$/ }).waitFor();

test("a conversation opened while the console's stream connects shows in the inbox", async () => {
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  await noteFetches(ctx);
  const stream = await gateStream(ctx);
  const inbox = await holdAnswers(ctx, /\/v1\/conversations\?(.*&)?status=open(&|$)/);
  const page = await ctx.newPage();
  await page.goto(`${stack.gw}/console`);
  // A supervisor's console reads the tenant's bots in the same task as it
  // begins its first stream (and, unless it waits for it, its inbox).
  const bots = ctx.waitForEvent("request", (r) => new URL(r.url()).pathname === "/v1/bots");
  await signIn(page, stack.token("supervisor", "sue"));
  await bots;
  await poll("the stream's handshake, held", () => stream.asked === 1);
  const listed = await page.evaluate(() => (globalThis.parleyTestFetched ?? []).some((u) => u.includes("/v1/conversations?")));
  if (listed) await poll("the inbox's read, answered", () => inbox.parked.length === 1);
  const { id } = await openConversation("Noor Haddad", "Opened while the console connects");
  await inbox.release();
  stream.release();

  await inboxLoaded(page);
  assert.equal(await page.getByRole("listitem").filter({ hasText: "Noor Haddad" }).count(), 1, "the conversation in the inbox");
  noCSPViolations(ctx, "the console's inbox read once its stream is open");
  await stack.api(stack.token("supervisor", "sue"), "POST", `/v1/conversations/${id}/close`, {});
  await ctx.close();
});

test("a close heard while the console reads its inbox stays, though the inbox, older than it, answers after it", async () => {
  const lead = stack.token("supervisor", "sue");
  const { id } = await openConversation("Ines Moreau", "Closed while the console reads its inbox");
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  const inbox = await holdAnswers(ctx, /\/v1\/conversations\?(.*&)?status=open(&|$)/);
  const page = await ctx.newPage();
  await page.goto(`${stack.gw}/console`);
  await signIn(page, lead);
  await poll("the inbox's read, answered", () => inbox.parked.length === 1);
  // The close is heard, and the conversation read again, before the
  // inbox's read, which saw it open, answers.
  const reread = page.waitForResponse((r) => new URL(r.url()).pathname === `/v1/conversations/${id}`);
  await stack.api(lead, "POST", `/v1/conversations/${id}/close`, {});
  await reread;
  await inbox.release();

  await inboxLoaded(page);
  assert.equal(await page.getByRole("listitem").filter({ hasText: "Ines Moreau" }).count(), 0, "the closed conversation among the open ones");
  noCSPViolations(ctx, "the console's close heard while it reads its inbox");
  await ctx.close();
});

test("after a resync the inbox reads again a row it shows open that the server no longer lists: a close the stream lost", async () => {
  const lead = stack.token("supervisor", "sue");
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  let lost = "";
  const stream = await holdBack(ctx, (e) => e.type === "closed" && e.conversation_id === lost);
  const page = await ctx.newPage();
  const reads = [];
  page.on("request", (r) => reads.push(new URL(r.url()).pathname));
  await page.goto(`${stack.gw}/console`);
  await signIn(page, lead);
  await inboxLoaded(page);
  const { id } = await openConversation("Theo Lambert", "Closed while the console's stream lost it");
  const row = page.getByRole("listitem").filter({ hasText: "Theo Lambert" });
  await row.waitFor();

  // The close is stored, its live event lost: the row still reads open.
  lost = id;
  await stack.api(lead, "POST", `/v1/conversations/${id}/close`, {});
  await poll("the close, held back", () => stream.held.length === 1);
  assert.equal(await row.count(), 1, "the row, open still before the resync");

  // The resync: the inbox's read no longer lists it, so it is read alone.
  stream.send(resyncFrame);
  await poll("the row gone from the open ones", async () => (await row.count()) === 0);
  assert.ok(reads.includes(`/v1/conversations/${id}`), "the unlisted row read again on its own");
  await page.getByRole("button", { name: "Closed" }).click();
  await row.waitFor();
  noCSPViolations(ctx, "the console's reload after a resync");
  await ctx.close();
});

// consoleOf signs a supervisor in to the console in ctx and waits for
// its inbox; it answers the page.
async function consoleOf(ctx) {
  const page = await ctx.newPage();
  await page.goto(`${stack.gw}/console`);
  await signIn(page, stack.token("supervisor", "sue"));
  await inboxLoaded(page);
  return page;
}

const viewport = { width: 1280, height: 800 };

// factOf is the value the open conversation's facts give for what.
const factOf = (page, what) => page.getByText(what, { exact: true }).locator("xpath=following-sibling::dd[1]");

// holdReads routes ctx's reads of conversation id: once hold(n) is called,
// the next n are answered by the server at once and handed to the page
// only when the test calls their entry in parked.
async function holdReads(ctx, id) {
  let held = 0;
  const parked = [];
  await ctx.route(new RegExp(`/v1/conversations/${id}$`), async (route) => {
    if (route.request().method() !== "GET" || held === 0) return route.fallback();
    held--;
    const response = await route.fetch();
    parked.push(() => route.fulfill({ response }));
  });
  return { parked, hold: (n) => (held = n) };
}

test("of two reads of a conversation, the older answering last changes nothing: a close stays", async () => {
  const lead = stack.token("supervisor", "sue");
  const { id } = await openConversation("Lena Park", "Read twice, answered out of order");
  const ctx = await newContext(browser, { viewport });
  const reads = await holdReads(ctx, id);
  const page = await consoleOf(ctx);
  const row = page.getByRole("listitem").filter({ hasText: "Lena Park" });
  await row.waitFor();

  // The assignment's read sees it open; the close's, made after, closed.
  reads.hold(1);
  await stack.api(lead, "POST", `/v1/conversations/${id}/assign`, { agent_id: "bob", override: true });
  await poll("the assignment's read, answered and held", () => reads.parked.length === 1);
  await stack.api(lead, "POST", `/v1/conversations/${id}/close`, {});
  await poll("the row gone from the open ones", async () => (await row.count()) === 0);

  // The older read's answer comes last: the row stays closed.
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === `/v1/conversations/${id}`);
  await reads.parked[0]();
  await answered;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await row.count(), 0, "the closed conversation open again");
  await page.getByRole("button", { name: "Closed" }).click();
  await row.waitFor();
  noCSPViolations(ctx, "the console's reads answered out of order");
  await ctx.close();
});

test("a close made in the console stays, though a read of the conversation begun before it answers after it", async () => {
  const lead = stack.token("supervisor", "sue");
  const { id } = await openConversation("Mara Quinn", "Closed while an older read is on its way");
  const ctx = await newContext(browser, { viewport });
  // The close's own event is lost: only the call's answer says it.
  const stream = await holdBack(ctx, (e) => e.type === "closed" && e.conversation_id === id);
  const reads = await holdReads(ctx, id);
  const page = await consoleOf(ctx);
  const row = page.getByRole("listitem").filter({ hasText: "Mara Quinn" });
  await row.getByRole("button").click();
  const close = page.getByRole("button", { name: "Close conversation" });
  await close.waitFor();

  // An assignment's read sees it open, and is held; then the console closes it.
  reads.hold(1);
  await stack.api(lead, "POST", `/v1/conversations/${id}/assign`, { agent_id: "bob", override: true });
  await poll("the assignment's read, answered and held", () => reads.parked.length === 1);
  await close.click();
  await poll("the row gone from the open ones", async () => (await row.count()) === 0);
  await poll("the close's event, held back", () => stream.held.length === 1);

  // The older read's answer comes last: the row stays closed.
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === `/v1/conversations/${id}`);
  await reads.parked[0]();
  await answered;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await row.count(), 0, "the conversation closed in the console open again");
  noCSPViolations(ctx, "the console's close outlasting an older read");
  await ctx.close();
});

test("an assignment, a hand-off and a close show though reading the conversation again fails, and a failed read is tried again", async () => {
  const lead = stack.token("supervisor", "sue");
  const bot = "faq-console";
  await stack.api(stack.token("admin", "root"), "PUT", `/v1/bots/${bot}`, { name: "Console FAQ", nats_subject: `parley.bots.demo.${bot}` });
  const visitor = (await stack.api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  await stack.api(visitor, "PUT", "/v1/me/profile", { name: "Olga Berg" });
  const { id } = await stack.api(visitor, "POST", "/v1/conversations", { text: "Read again in vain" });
  const ctx = await newContext(browser, { viewport });
  // failing counts the reads of the conversation still to answer 503.
  let failing = 0;
  await ctx.route(new RegExp(`/v1/conversations/${id}$`), (route) => {
    if (route.request().method() !== "GET" || failing <= 0) return route.fallback();
    failing--;
    return route.fulfill({ status: 503, contentType: "application/problem+json", body: JSON.stringify({ status: 503, title: "Unavailable", detail: "failed by the test" }) });
  });
  const page = await consoleOf(ctx);
  await page.getByRole("listitem").filter({ hasText: "Olga Berg" }).getByRole("button").click();
  await page.getByRole("list", { name: "Transcript" }).getByText("Read again in vain").waitFor();
  const assigned = factOf(page, "Assigned to");
  await assigned.filter({ hasText: /^nobody$/ }).waitFor();

  // Every read fails: what each event says shows all the same.
  failing = Infinity;
  await stack.api(lead, "POST", `/v1/conversations/${id}/assign`, { bot_id: bot });
  await assigned.filter({ hasText: /^Console FAQ \(bot\)$/ }).waitFor();
  await stack.api(visitor, "POST", `/v1/conversations/${id}/handoff`, {});
  await assigned.filter({ hasText: /^nobody$/ }).waitFor();
  await stack.api(lead, "POST", `/v1/conversations/${id}/assign`, { agent_id: "bob", override: true });
  await assigned.filter({ hasText: /^bob\b/ }).waitFor();
  await stack.api(lead, "POST", `/v1/conversations/${id}/close`, {});
  await factOf(page, "Status").filter({ hasText: /^closed$/ }).waitFor();

  // One read fails: it is tried again, and the rating shows.
  failing = 1;
  await stack.api(visitor, "POST", `/v1/conversations/${id}/rating`, { score: 4 });
  await page.getByText("4 of 5").waitFor();
  assert.equal(failing, 0, "the failing read made");
  noCSPViolations(ctx, "the console's events applied without a read");
  await ctx.close();
});

// downWhile routes ctx's live streams through the test; downWhile.during(f)
// drops the stream, runs f while it cannot come back, then lets it.
async function downWhile(ctx) {
  let gate = null;
  const sockets = [];
  await ctx.routeWebSocket(/\/v1\/stream/, async (ws) => {
    sockets.push(ws);
    if (gate) await gate;
    ws.connectToServer();
  });
  return async (f) => {
    let release;
    gate = new Promise((r) => (release = r));
    const n = sockets.length;
    await sockets[n - 1].close({ code: 1001, reason: "going away" });
    await poll("the stream's next handshake, held", () => sockets.length === n + 1);
    await f();
    gate = null;
    release();
  };
}

// erase erases visitor and waits until the API no longer shows their
// profile on conversation id.
async function erase(visitor, id) {
  await stack.api(visitor, "DELETE", "/v1/me");
  await poll("the profile gone from the API", async () => !(await stack.api(stack.token("supervisor", "sue"), "GET", `/v1/conversations/${id}`)).visitor_profile);
}

test("a visitor erased while the console's stream was down shows erased once it is back", async () => {
  const ctx = await newContext(browser, { viewport });
  const down = await downWhile(ctx);
  const visitor = (await stack.api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  await stack.api(visitor, "PUT", "/v1/me/profile", { name: "Mira Stone", email: "mira@example.com" });
  const page = await consoleOf(ctx);
  // Opened once the console is live: its stream has a seq to resume from.
  const { id } = await stack.api(visitor, "POST", "/v1/conversations", { text: "Erased while the console was away" });
  await page.getByRole("listitem").filter({ hasText: "Mira Stone" }).getByRole("button").click();
  await page.getByText("mira@example.com").waitFor();

  // The stream drops and cannot come back while the visitor erases themself.
  await down(() => erase(visitor, id));

  await poll("the name and e-mail gone", async () => (await page.getByText(/Mira Stone|mira@example\.com/).count()) === 0);
  await page.getByRole("heading", { name: "Erased visitor" }).waitFor();
  noCSPViolations(ctx, "the console's reload after its stream came back");
  await ctx.close();
});

test("a closed conversation of a visitor erased while the console's stream was down loses their name once it is back", async () => {
  const ctx = await newContext(browser, { viewport });
  const down = await downWhile(ctx);
  const visitor = (await stack.api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  await stack.api(visitor, "PUT", "/v1/me/profile", { name: "Nora Vale" });
  const { id } = await stack.api(visitor, "POST", "/v1/conversations", { text: "Closed, then erased while the console was away" });
  await stack.api(stack.token("supervisor", "sue"), "POST", `/v1/conversations/${id}/close`, {});
  const page = await consoleOf(ctx);
  await page.getByRole("button", { name: "Closed" }).click();
  const row = page.getByRole("listitem").filter({ hasText: "Nora Vale" });
  await row.waitFor();

  await down(() => erase(visitor, id));

  await poll("the name gone from the closed ones", async () => (await row.count()) === 0);
  noCSPViolations(ctx, "the console's closed list read again after its stream came back");
  await ctx.close();
});

test("a console whose stream drops right after each open waits longer each time", async () => {
  const ctx = await newContext(browser, { viewport });
  // Each connection opens (the test answers it), and drops soon after.
  const asked = [];
  await ctx.routeWebSocket(/\/v1\/stream/, (ws) => {
    asked.push(Date.now());
    setTimeout(() => ws.close({ code: 1011, reason: "dropped by the test" }), 300);
  });
  const page = await ctx.newPage();
  await page.goto(`${stack.gw}/console`);
  await signIn(page, stack.token("supervisor", "sue"));
  await poll("the first connection", () => asked.length === 1);
  await page.getByRole("status").filter({ hasText: "The live updates dropped: reconnecting…" }).waitFor();
  // Waits of about 1, 2, 4 and 8 s: at most five connections in 10 s
  // (a wait of 0.5–1 s after each would make ten).
  await new Promise((r) => setTimeout(r, 10_000 - (Date.now() - asked[0])));
  assert.ok(asked.length <= 5, `${asked.length} connections in 10 s: ${asked.map((t) => t - asked[0]).join(", ")} ms`);
  await ctx.close();
});

test("resyncs heard in a row have the inbox and the open conversation read again once", async () => {
  const ctx = await newContext(browser, { viewport });
  const stream = await holdBack(ctx, () => false);
  const { id } = await openConversation("Omar Said", "Read again once");
  const page = await consoleOf(ctx);
  await page.getByRole("listitem").filter({ hasText: "Omar Said" }).getByRole("button").click();
  await page.getByRole("list", { name: "Transcript" }).getByText("Read again once").waitFor();
  const reads = [];
  page.on("request", (r) => r.method() === "GET" && reads.push(new URL(r.url()).pathname));
  for (let i = 0; i < 3; i++) stream.send(resyncFrame);
  // The spread is at most 2 s; its reads begin by then.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(reads.filter((p) => p === "/v1/conversations").length, 1, `the inbox's reads: ${reads}`);
  assert.equal(reads.filter((p) => /^\/v1\/conversations\/[^/]+\/messages$/.test(p)).length, 1, `the transcript's reads: ${reads}`);
  noCSPViolations(ctx, "the console's resyncs in a row");
  // Closed: the budget below counts the open ones.
  await stack.api(stack.token("supervisor", "sue"), "POST", `/v1/conversations/${id}/close`, {});
  await ctx.close();
});

test("a reload asked for while one runs follows it, and a message heard while it reads keeps its row's time", async () => {
  const ctx = await newContext(browser, { viewport });
  const stream = await holdBack(ctx, () => false);
  const writer = (await stack.api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  await stack.api(writer, "PUT", "/v1/me/profile", { name: "Paul Older" });
  const older = await stack.api(writer, "POST", "/v1/conversations", { text: "Older, then written to" });
  const visitor = (await stack.api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token;
  await stack.api(visitor, "PUT", "/v1/me/profile", { name: "Quinn Newer" });
  const newer = await stack.api(visitor, "POST", "/v1/conversations", { text: "Newer" });
  const page = await consoleOf(ctx);
  const listReads = [];
  page.on("request", (r) => /\/v1\/conversations\?(.*&)?status=open(&|$)/.test(r.url()) && listReads.push(r.url()));
  const names = () => page.getByRole("listitem").allInnerTexts();
  const order = async () => (await names()).findIndex((t) => t.includes("Paul Older")) < (await names()).findIndex((t) => t.includes("Quinn Newer"));
  assert.equal(await order(), false, "the older conversation above the newer one");

  // A resync's reload, its page answered and held.
  const inbox = await holdAnswers(ctx, /\/v1\/conversations\?(.*&)?status=open(&|$)/);
  stream.send(resyncFrame);
  await poll("the reload's page, held", () => inbox.parked.length === 1);
  // A message moves the older one up; another resync asks for a reload.
  await stack.api(writer, "POST", `/v1/conversations/${older.id}/messages`, { text: "Written while the inbox reads" });
  await poll("the older conversation moved up", order);
  stream.send(resyncFrame);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(listReads.length, 1, "a second reload while the first runs");

  // The first ends: its page, older than the message, leaves the row's
  // time; the second follows.
  await inbox.release();
  await poll("the second reload", () => listReads.length === 2);
  await inboxLoaded(page);
  assert.equal(await order(), true, "the row written to since, back below");
  for (const c of [older, newer]) await stack.api(stack.token("supervisor", "sue"), "POST", `/v1/conversations/${c.id}/close`, {});
  noCSPViolations(ctx, "the console's reloads in a row");
  await ctx.close();
});

test("with an expired try-out token the console says so, and renews nothing", async () => {
  // A token of 10 s (the gateway allows 5 more), which nothing can renew.
  const token = execFileSync(parley, ["token", "--data-dir", stack.dataDir, "--tenant", "demo", "--role", "supervisor", "--id", "sue", "--ttl", "10s"]).toString().trim();
  const { page, sockets, requests } = await streamedConsole(token);
  await poll("the token expired", async () => (await fetch(`${stack.gw}/v1/conversations`, { headers: { Authorization: `Bearer ${token}` } })).status === 401, 60000);
  await sockets[0].close({ code: 1001, reason: "going away" });
  await page.getByRole("alert").filter({ hasText: "Your session has expired: sign in again." }).waitFor();
  await screenshot(page, "console-expired");
  assert.equal(sockets.length, 1, "streams opened with an expired token");
  assert.deepEqual(requests.filter((r) => r.includes("/v1/sessions/refresh")), [], "renewals without a refresh token");
  assert.equal(await page.getByRole("button", { name: "Reconnect" }).count(), 0, "a reconnect offered to an expired token");
  await page.context().close();
});

test("budget: the console inbox with 2,000 open conversations", async () => {
  const { api, gw } = stack;
  const n = 2000;
  const visitors = 20;
  // Seeding: a few visitors (registration is bounded per address: 30 a
  // minute), each allowed n/visitors open conversations by the tenant's
  // settings; one request of each visitor at a time, so none passes the
  // per-principal rate.
  const admin = stack.token("admin", "root");
  const settings = await api(admin, "GET", "/v1/settings");
  await api(admin, "PUT", "/v1/settings", { ...settings, open_conversations_per_visitor: n / visitors });
  await poll("the settings applied", async () => (await api(admin, "GET", "/v1/settings")).open_conversations_per_visitor === n / visitors);
  const started = Date.now();
  const tokens = [];
  for (let i = 0; i < visitors; i++) tokens.push((await api(null, "POST", "/v1/tenants/demo/visitors", consent)).access_token);
  await Promise.all(
    tokens.map(async (tok, i) => {
      for (let k = 0; k < n / visitors; k++) {
        for (;;) {
          try {
            await api(tok, "POST", "/v1/conversations", { text: `Question ${i}.${k}` });
            break;
          } catch (e) {
            // A settings copy not yet caught up, or a brief rate limit: again.
            if (!/ 429 /.test(e.message)) throw e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      }
    }),
  );
  const seeded = (Date.now() - started) / 1000;
  console.log(`seeded ${n} open conversations in ${seeded.toFixed(1)} s (${Math.round(n / seeded)}/s); load ${await loadAverage()}`);

  // An agent's inbox (every open conversation is unassigned, so theirs to
  // see, not yet to read) and a supervisor's (theirs to read), alternated:
  // the first sign-in also pays for what is cold.
  await inboxFigures(n, "agent", "carol", false);
  await inboxFigures(n, "supervisor", "sue", true);
  await inboxFigures(n, "agent", "dave", false);
});

async function inboxFigures(n, role, id, reads) {
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const marks = () => page.evaluate(() => Object.fromEntries(performance.getEntriesByType("mark").map((m) => [m.name, m.startTime])));
  const navStart = Date.now();
  await page.goto(`${stack.gw}/console`);
  await page.getByLabel("Token").fill(stack.token(role, id));
  const formShown = Date.now() - navStart;
  const signedAt = await page.evaluate(() => performance.now());
  await page.getByRole("button", { name: "Use token" }).click();
  await page.getByText(`${n.toLocaleString("en")} open conversations`, { exact: true }).waitFor({ timeout: 120000 });
  const m = await marks();
  const inDOM = await page.getByRole("listitem").count();
  console.log(
    `console inbox (${role}, ${n} open): sign-in form ${formShown} ms after navigation; first rows ${Math.round(m["parley-inbox-rows"] - signedAt)} ms after sign-in, all loaded ${Math.round(m["parley-inbox-loaded"] - signedAt)} ms after; ${inDOM} rows in the document; load ${await loadAverage()}`,
  );
  assert.ok(inDOM < 100, `only the rows in view are rendered (${inDOM})`);

  // Scroll to the end: the oldest conversation is the last row; Home, from
  // the keyboard, goes back to the first.
  const list = page.getByRole("list", { name: "Conversations" });
  await page.locator(".rows").evaluate((el) => (el.scrollTop = el.scrollHeight));
  await list.locator(`li[aria-posinset="${n}"]`).waitFor();
  await list.locator(`li[aria-posinset="${n}"] button`).focus();
  await page.keyboard.press("Home");
  await poll("the first row focused", () => page.evaluate(() => document.activeElement?.closest("li")?.getAttribute("aria-posinset") === "1"));

  // Opening one, with all of them loaded: from the click to its view shown
  // (its transcript read, or refused for an agent it is not assigned to).
  const opens = [];
  for (const at of [1, 2, 3, 4, 5]) {
    await page.evaluate(() => performance.clearMarks("parley-conversation-shown"));
    await list.locator(`li[aria-posinset="${at}"] button`).click();
    await poll("the conversation shown", async () => (await marks())["parley-conversation-shown"]);
    const shown = await marks();
    opens.push(Math.round(shown["parley-conversation-shown"] - shown["parley-open"]));
    if (reads) await page.getByRole("list", { name: "Transcript" }).getByText(/^Question /).waitFor();
    else await page.getByText("not assigned to you").waitFor();
  }
  console.log(`console (${role}): opening a conversation with ${n} in the inbox: ${opens.join(", ")} ms from click to shown; load ${await loadAverage()}`);
  noCSPViolations(ctx, `the inbox of ${n}`);
  await ctx.close();
}
