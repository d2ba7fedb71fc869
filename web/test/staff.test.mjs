// The staff pages' common frame in a real browser: the sign-in form, a
// try-out token and one the gateway refuses, the pages a role may use,
// sign-out, and the strict CSP.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { accessible, launchBrowser, newContext, noCSPViolations, poll, screenshot, signIn, staffPage, startParley } from "./lib.mjs";

let stack, browser;

before(async () => {
  stack = await startParley();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

test("the sign-in form is accessible and refuses what is not a token", async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(`${stack.gw}/console`);
  await page.getByRole("heading", { name: "Sign in to the console" }).waitFor();
  await accessible(page, "sign-in");
  await screenshot(page, "sign-in");
  await page.getByLabel("Token").fill("not a token");
  await page.getByRole("button", { name: "Use token" }).click();
  await page.getByRole("alert").filter({ hasText: "That is not a token" }).waitFor();
  // A tenant without an identity provider: the gateway's problem is shown.
  await page.getByLabel("Tenant").fill("demo");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("alert").filter({ hasText: /provider/i }).waitFor();
  noCSPViolations(ctx, "the sign-in form");
  await ctx.close();
});

test("a token the gateway refuses, such as one of a tenant that does not exist, is refused at sign-in in words: nothing kept, no stream", async () => {
  for (const [path, role, id] of [["/console", "agent", "alice"], ["/privacy", "admin", "root"], ["/dashboard", "analyst", "ann"]]) {
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    const streams = [];
    page.on("websocket", (ws) => streams.push(ws.url()));
    await page.goto(stack.gw + path);
    // Made as `make demo` makes tokens, validly signed, for a tenant nobody created.
    await page.getByLabel("Token").fill(stack.token(role, id, "ghost"));
    await page.getByRole("button", { name: "Use token" }).click();
    const refused = page.getByRole("alert").filter({ hasText: 'This token\'s tenant, "ghost", does not exist' });
    // Whichever comes first: the refusal, or the page signed in.
    await refused.or(page.getByRole("button", { name: "Sign out" })).waitFor();
    assert.ok(await refused.isVisible(), `${path}: a token of tenant ghost signed in`);
    await page.getByRole("heading", { name: /^Sign in to the / }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, `${path}: something was kept`);
    assert.deepEqual(streams, [], `${path}: the live stream was tried`);

    if (path === "/console") {
      await screenshot(page, "sign-in-unknown-tenant");
      // Well formed, but signed for another token: not valid.
      const [head, body] = stack.token(role, id).split(".");
      await page.getByLabel("Token").fill(`${head}.${body}.${stack.token(role, "bob").split(".")[2]}`);
      await page.getByRole("button", { name: "Use token" }).click();
      await page.getByRole("alert").filter({ hasText: "This token cannot sign in: the token is not valid" }).waitFor();
      assert.deepEqual(streams, [], "the live stream was tried with a token that is not valid");
      // The form still signs a good token in, whose console opens its stream once.
      await signIn(page, stack.token(role, id));
      await poll("the console's live stream", () => streams.length === 1);
    }
    noCSPViolations(ctx, `${path}: a token refused`);
    await ctx.close();
  }
});

test("a role sees the pages it may use, and is told when it may not use one", async () => {
  const page = await staffPage(browser, stack.gw, "/dashboard", stack.token("agent", "alice"));
  const nav = page.getByRole("navigation", { name: "Pages" });
  assert.deepEqual(await nav.getByRole("link").allTextContents(), ["Console"]);
  await page.getByRole("alert").filter({ hasText: "Your role (agent) cannot use the dashboard" }).waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to the dashboard" }).waitFor();
  noCSPViolations(page.context(), "an agent on the dashboard");
  await page.context().close();

  const admin = await staffPage(browser, stack.gw, "/privacy", stack.token("admin", "root"));
  assert.deepEqual(await admin.getByRole("navigation", { name: "Pages" }).getByRole("link").allTextContents(), ["Console", "Privacy", "Dashboard"]);
  noCSPViolations(admin.context(), "the privacy page");
  await admin.context().close();
});

test("each page's sign-in form suggests a try-out token that page lets in", async () => {
  for (const path of ["/console", "/privacy", "/dashboard"]) {
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    await page.goto(stack.gw + path);
    const hint = await page.locator(".hint code").textContent();
    const [, role, id] = hint.match(/--role (\S+) --id (\S+)/) ?? [];
    assert.ok(role && id, `${path}: the hint ${JSON.stringify(hint)} names no role and id`);
    await signIn(page, stack.token(role, id));
    assert.equal(await page.getByRole("alert").filter({ hasText: "cannot use" }).count(), 0, `${path}: the hint's ${role} is refused`);
    await ctx.close();
  }
});

test("every page names its icon, which the gateway serves, and asks for nothing it answers 404", async () => {
  for (const path of ["/console", "/privacy", "/dashboard", "/demo"]) {
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    const missing = [];
    page.on("response", (r) => r.status() === 404 && missing.push(r.url()));
    await page.goto(stack.gw + path);
    const href = await page.locator('link[rel="icon"]').getAttribute("href");
    assert.ok(href, `${path}: no icon`);
    const icon = await page.request.get(stack.gw + href);
    assert.equal(icon.status(), 200, `${path}: its icon ${href}`);
    assert.equal(icon.headers()["content-type"], "image/svg+xml", `${path}: its icon's type`);
    assert.deepEqual(missing, [], `${path}: requests answered 404`);
    noCSPViolations(ctx, path);
    await ctx.close();
  }
});
