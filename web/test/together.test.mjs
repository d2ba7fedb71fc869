// The widget and the console talking to each other in a real browser, each
// in a context of its own, against a real `parley all`: a visitor on a host
// page of another site (localhost, not 127.0.0.1), in a browser with a
// profile directory of its own; an agent in /console. Live both ways with
// typing shown on both sides; the visitor's browser closed and opened again
// on the same profile finds their conversation; the widget's "Erase me"
// turns the agent's open view to erased. Screenshots go to test-results/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  accessible,
  accessibleWithFrame,
  launchBrowser,
  launchProfile,
  noCSPViolations,
  openShadowRoots,
  poll,
  screenshot,
  staffPage,
  startParley,
  startShop,
} from "./lib.mjs";

let stack, browser, closeShop, host, profile;

before(async () => {
  stack = await startParley();
  browser = await launchBrowser();
  profile = await mkdtemp(join(tmpdir(), "parley-visitor-profile-"));
  // A shop's page with the widget on it.
  const shop = await startShop(stack.gw);
  host = shop.url;
  closeShop = shop.close;
});

after(async () => {
  await browser?.close();
  closeShop?.();
  await stack?.stop();
  await rm(profile, { recursive: true, force: true });
});

// visitorBrowser opens the visitor's browser on their profile, at the shop,
// with the widget's frame open. The host opens the launcher's shadow root
// (openShadowRoots) so that axe-core reaches the frame.
async function visitorBrowser() {
  const ctx = await launchProfile(profile, { viewport: { width: 360, height: 640 } });
  await openShadowRoots(ctx);
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  await page.goto(`${host}/`);
  const launcher = page.getByRole("button", { name: "Chat with us" });
  await launcher.click();
  const frame = await poll("the chat frame", () => page.frames().find((f) => f.url().startsWith(`${stack.gw}/widget-frame`)));
  return { ctx, page, frame };
}

const shows = (where, text) => where.getByText(text).first().waitFor({ timeout: 30000 });

test("a visitor in the widget and an agent in the console, live both ways; the visitor comes back, then erases themself", async () => {
  // The agent's console, open before the visitor writes.
  const agent = await staffPage(browser, stack.gw, "/console", stack.token("agent", "alice"));
  await agent.getByText("0 open conversations").waitFor();

  let visitor = await visitorBrowser();
  await shows(visitor.frame, "Start chat");
  await visitor.frame.getByRole("button", { name: "Start chat" }).click();
  await shows(visitor.frame, "You are talking to a person");
  const box = visitor.frame.locator("#parley-message");
  await box.fill("My parcel never came");
  await box.press("Enter");
  await shows(visitor.frame, "My parcel never came");
  await screenshot(visitor.page, "together-visitor-writes");

  // The conversation arrives in the console live, unread.
  const row = agent.getByRole("listitem").filter({ hasText: "1 unread" });
  await row.waitFor();
  await row.getByRole("button").click();
  await agent.getByRole("button", { name: "Assign to me" }).click();
  await agent.getByText("you (alice)").waitFor();
  const transcript = agent.getByRole("list", { name: "Transcript" });
  await transcript.getByText("My parcel never came").waitFor();

  // The visitor types: the console says so; then their message arrives live.
  await box.pressSequentially("It was due on Monday", { delay: 50 });
  await agent.getByRole("status").filter({ hasText: "The visitor is typing…" }).waitFor();
  await screenshot(agent, "together-console-typing");
  await box.press("Enter");
  await transcript.getByText("It was due on Monday").waitFor();

  // The agent types: the widget says so; their reply arrives live.
  const reply = agent.getByLabel("Reply");
  await reply.pressSequentially("Let me look", { delay: 50 });
  await shows(visitor.frame, "Support is typing…");
  await screenshot(visitor.page, "together-widget-typing");
  await reply.pressSequentially(": it is at the depot, out for delivery today.");
  await agent.getByRole("button", { name: "Send" }).click();
  await shows(visitor.frame, "Let me look: it is at the depot, out for delivery today.");
  await transcript.getByText("Let me look: it is at the depot, out for delivery today.").waitFor();
  await accessibleWithFrame(visitor.page, "the widget's chat with an agent's reply");
  await accessible(agent, "the console's conversation answered");
  await screenshot(visitor.page, "together-widget-reply");
  await screenshot(agent, "together-console-reply");

  // The visitor closes their browser and comes back on the same profile:
  // their conversation, listed, opens with everything said.
  noCSPViolations(visitor.ctx, "the visitor's first visit");
  await visitor.ctx.close();
  visitor = await visitorBrowser();
  await shows(visitor.frame, "Your conversations");
  await visitor.frame.getByRole("button", { name: /^Continue the conversation of .* \(open\)$/ }).click();
  await shows(visitor.frame, "Let me look: it is at the depot, out for delivery today.");
  await shows(visitor.frame, "My parcel never came");
  await shows(visitor.frame, "It was due on Monday");
  await screenshot(visitor.page, "together-return");

  // Still live after the return: a message each way.
  await visitor.frame.locator("#parley-message").fill("Thank you!");
  await visitor.frame.locator("#parley-message").press("Enter");
  await transcript.getByText("Thank you!").waitFor();
  await reply.fill("You are welcome.");
  await agent.getByRole("button", { name: "Send" }).click();
  await shows(visitor.frame, "You are welcome.");

  // The visitor erases themself from the widget: the widget says so, and
  // the agent's open view turns to erased, with its notice.
  await visitor.frame.getByRole("button", { name: "Erase me" }).click();
  await visitor.frame.getByRole("button", { name: "Erase everything now" }).click();
  await visitor.frame.getByRole("status").filter({ hasText: /^Erased/ }).waitFor();
  await accessibleWithFrame(visitor.page, "the widget's erased panel");
  await screenshot(visitor.page, "together-widget-erased");
  await agent.getByRole("alert").filter({ hasText: "The visitor erased themself" }).waitFor();
  await poll("every line of the console's transcript erased", async () => (await transcript.getByText("Erased", { exact: true }).count()) === 5);
  assert.equal(await transcript.getByText("My parcel never came").count(), 0, "an erased message still shown");
  await agent.getByRole("heading", { name: "Erased visitor" }).waitFor();
  await accessible(agent, "the console's view of the erased conversation");
  await screenshot(agent, "together-console-erased");

  noCSPViolations(visitor.ctx, "the visitor's return and erasure");
  noCSPViolations(agent.context(), "the console");
  await visitor.ctx.close();
  await agent.context().close();
});
