// The analytics dashboard in a real browser against `parley all` with a
// real ClickHouse: six consenting visitors open conversations and two of
// them rate, so in the same bucket conversations pass the minimum group
// size (5) and csat does not; the charts draw, the suppressed point is
// marked suppressed and never drawn as zero. Without ClickHouse the page
// says analytics is not available.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { accessible, launchBrowser, noCSPViolations, poll, screenshot, staffPage, startParley } from "./lib.mjs";

// The server binaries `parley all --clickhouse auto` looks for, as the Go
// tests' chtest does: without one the ClickHouse tests skip, except in CI,
// which must never pass by skipping.
const clickhouse = ["clickhouse-server", "clickhouse"].some((b) =>
  (process.env.PATH ?? "").split(delimiter).some((d) => d && existsSync(join(d, b))),
);
const noClickHouse = "this test needs a ClickHouse server binary (clickhouse-server or clickhouse) on PATH; on Debian: sudo apt-get install clickhouse-server";
if (!clickhouse && process.env.CI) throw new Error(noClickHouse);

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// inks counts the pixels of a chart's canvas in the line's colour and in
// the hatching's.
function inks(section) {
  return section.locator("canvas").first().evaluate((c) => {
    const { data } = c.getContext("2d").getImageData(0, 0, c.width, c.height);
    const near = (i, [r, g, b]) => Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 24;
    let line = 0;
    let hatch = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (near(i, [0x0b, 0x5c, 0xad])) line++;
      if (near(i, [0x6b, 0x74, 0x80])) hatch++;
    }
    return { line, hatch };
  });
}

// section is the chart of one metric.
const section = (page, metric) => page.locator(`section[data-metric="${metric}"]`);

test("the charts draw, a suppressed point is marked suppressed, never zero", { skip: !clickhouse && noClickHouse }, async (t) => {
  // The facts must fall on one UTC day: this close to midnight, wait for
  // it to pass rather than skip (a skip would let CI pass unchecked).
  const now = new Date();
  if (now.getUTCHours() === 23 && now.getUTCMinutes() >= 57) {
    const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1, 0, 0, 5);
    t.diagnostic(`waiting ${Math.round((midnight - now) / 1000)} s for midnight UTC, so the facts fall on one day`);
    await new Promise((r) => setTimeout(r, midnight - now));
  }
  const stack = await startParley(["--clickhouse", "auto"]);
  t.after(() => stack.stop());
  const agent = stack.token("agent", "alice");
  const analyst = stack.token("analyst", "ann");

  // Six consenting visitors open conversations, which an agent answers and
  // closes; two of them rate.
  const started = Date.now();
  for (let i = 0; i < 6; i++) {
    const v = await stack.api("", "POST", "/v1/tenants/demo/visitors", {
      consent: { analytics: true, network_data: false, ai: false },
      notice_version: "2026-01",
    });
    const { id } = await stack.api(v.token, "POST", "/v1/conversations", { text: `Where is order ${i}?` });
    await stack.api(agent, "POST", `/v1/conversations/${id}/messages`, { text: "Let me look." });
    await stack.api(agent, "POST", `/v1/conversations/${id}/close`);
    if (i < 2) await stack.api(v.token, "POST", `/v1/conversations/${id}/rating`, { score: 4 + i });
  }
  const seeded = Date.now() - started;

  // The facts reach ClickHouse asynchronously: wait until the API counts them.
  const day = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  const q = new URLSearchParams({ from: day.toISOString(), to: new Date(day.getTime() + 86400000).toISOString(), interval: "day" });
  const waited = Date.now();
  await poll(
    "the facts to reach ClickHouse",
    async () => {
      const conv = await stack.api(analyst, "GET", `/v1/metrics/conversations?${q}`);
      const csat = await stack.api(analyst, "GET", `/v1/metrics/csat?${q}`);
      return conv.points[0]?.value === 6 && csat.points.length === 1;
    },
    120000,
  );
  console.log(`dashboard: seeded 6 conversations in ${seeded} ms; facts in ClickHouse ${Date.now() - waited} ms later`);

  const page = await staffPage(browser, stack.gw, "/dashboard", analyst, { width: 1280, height: 1000 });
  const shown = Date.now();
  await page.getByLabel("Range", { exact: true }).selectOption({ label: "Last 7 days" });
  await section(page, "conversations").locator("canvas").first().waitFor();
  console.log(`dashboard: the first chart drawn ${Date.now() - shown} ms after the choice`);

  // Conversations passes the minimum group size: its point is drawn with its value.
  const conv = section(page, "conversations");
  await conv.getByText("none suppressed").waitFor();
  assert.match(await conv.locator("tbody").textContent(), /6/);
  assert.doesNotMatch(await conv.locator(".legend").textContent(), /suppressed/);

  // Csat stands for two visitors: suppressed, said in the summary, the
  // legend and the table, and no value (let alone zero) in its row.
  const csat = section(page, "csat");
  await csat.getByText("1 suppressed (fewer than 5 visitors)").waitFor();
  assert.match(await csat.locator(".legend").textContent(), /suppressed: fewer than 5 visitors/);
  const rows = csat.locator("tbody tr");
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().getAttribute("class"), "suppressed");
  const cells = await rows.first().locator("td").allTextContents();
  assert.deepEqual(cells, ["suppressed: fewer than 5 visitors"], "the suppressed row holds no number");
  // On the canvases: the conversations chart has its point in the line's
  // colour; the csat chart has the hatched band and nothing in that colour —
  // no point, no line, at zero or anywhere.
  const conversationsInk = await inks(conv);
  const csatInk = await inks(csat);
  assert.ok(conversationsInk.line > 0, "the conversations point is drawn");
  assert.equal(csatInk.line, 0, "nothing is drawn for the suppressed csat point");
  assert.ok(csatInk.hatch > 0, "the suppressed csat bucket is hatched");
  assert.equal(conversationsInk.hatch, 0, "no hatching where nothing is suppressed");
  for (const name of ["messages", "first_response_seconds", "resolution_seconds"]) {
    await section(page, name).getByText("none suppressed").waitFor();
  }
  await accessible(page, "dashboard");
  await csat.locator("summary").click();
  await accessible(page, "dashboard with a table open");
  await csat.locator("summary").click();
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(page, "dashboard");

  // A range with nothing in it says so.
  await page.getByLabel("From (UTC)").fill("2020-01-01T00:00");
  await page.getByLabel("To (UTC)").fill("2020-01-02T00:00");
  await page.getByRole("button", { name: "Show" }).click();
  await conv.getByText("Nothing in this range").waitFor();
  assert.equal(await page.locator("section.metric canvas").count(), 0, "no chart for an empty range");
  await accessible(page, "dashboard, empty range");
  await screenshot(page, "dashboard-empty");

  // A range whose end is before its start: the API's 422, said once.
  await page.getByLabel("To (UTC)").fill("2019-12-31T00:00");
  await page.getByRole("button", { name: "Show" }).click();
  const refused = page.getByRole("alert").filter({ hasText: "The range was refused" });
  await refused.waitFor();
  assert.equal(await page.getByRole("alert").count(), 1);
  await accessible(page, "dashboard, refused range");
  await screenshot(page, "dashboard-refused");
  noCSPViolations(page.context(), "the dashboard");
  await page.context().close();
});

test("without ClickHouse the dashboard says analytics is not available", async (t) => {
  const stack = await startParley();
  t.after(() => stack.stop());
  const page = await staffPage(browser, stack.gw, "/dashboard", stack.token("admin", "root"));
  await page.getByRole("alert").filter({ hasText: "Analytics is not available" }).waitFor();
  await accessible(page, "dashboard without analytics");
  await screenshot(page, "dashboard-unavailable");
  noCSPViolations(page.context(), "the dashboard");
  await page.context().close();
});
