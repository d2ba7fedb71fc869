// The privacy page in a real browser against a real `parley all`: an admin
// changes the settings and the privacy notice (a bad value is refused with
// the API's words and changes nothing), sets the identity provider (the
// secret never comes back), exports and erases a visitor, and sees the
// audit trail verified in the browser; saved checkpoints that the trail
// does not hold, or that are forged, are named as such; an auditor reads
// the trail and cannot change the settings.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { readFile } from "node:fs/promises";
import { accessible, launchBrowser, loadAverage, noCSPViolations, poll, screenshot, staffPage, startParley } from "./lib.mjs";

let stack, browser, admin, visitor, conversation, firstCheckpoint;

before(async () => {
  stack = await startParley();
  browser = await launchBrowser();
  admin = stack.token("admin", "root");
  const v = await stack.api(null, "POST", "/v1/tenants/demo/visitors", {
    consent: { analytics: true, network_data: false, ai: false },
    notice_version: "1",
  });
  visitor = v.visitor_id;
  conversation = (await stack.api(v.access_token, "POST", "/v1/conversations", { text: "my order number is 4711" })).id;
  // A field the page does not show, which its saves must keep.
  await stack.api(admin, "PUT", "/v1/settings", { retention_days: 365, collect_network_data: false, retention_seconds: 400 * 86400 });
  firstCheckpoint = await stack.api(admin, "GET", "/v1/audit/checkpoint");
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

let page;

test("an admin changes the settings and the notice; a bad value is refused in the API's words and changes nothing", async () => {
  page = await staffPage(browser, stack.gw, "/privacy", admin);
  const puts = [];
  page.on("request", (r) => r.method() === "PUT" && r.url().endsWith("/v1/settings") && puts.push(r));
  const retention = page.getByLabel("Retention (days)");
  await poll("the settings to load", async () => (await retention.inputValue()) === "365");
  await accessible(page, "settings");

  // Checked in the page by the API's rule: nothing is sent.
  await retention.fill("0");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.locator("#set-retention_days-error").filter({ hasText: "retention_days must be 1 to 3650" }).waitFor();
  assert.equal(puts.length, 0, "a value the page refuses is not sent");
  await accessible(page, "settings refused in the page");

  // A refusal only the API knows (the body rewritten on its way, as an
  // older page would send it): its 422 detail is shown by the field it names.
  await retention.fill("30");
  await page.route("**/v1/settings", (route) => {
    const r = route.request();
    if (r.method() !== "PUT") return route.continue();
    return route.continue({ postData: JSON.stringify({ ...r.postDataJSON(), min_group_size: 3 }) });
  });
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.locator("#set-min_group_size-error").filter({ hasText: "min_group_size must be 0 (the default) or 5 to 1000" }).waitFor();
  await page.unroute("**/v1/settings");
  assert.equal((await stack.api(admin, "GET", "/v1/settings")).retention_days, 365, "a refused change changed the settings");
  await page.getByRole("status").filter({ hasText: "Unsaved changes." }).waitFor();

  const notice = "We keep your conversation for 30 days and erase it 2 days after it closes.\nAsk us for a copy at any time.";
  await page.getByLabel("Erase after close (hours)").fill("48");
  await page.getByLabel("Minimum group size").fill("7");
  await page.getByLabel("Collect network data").check();
  await page.getByLabel("Notice text").fill(notice);
  await page.getByLabel("Notice version").fill("2026-12");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByRole("status").filter({ hasText: /^Saved at / }).waitFor();
  assert.deepEqual(await stack.api(admin, "GET", "/v1/settings"), {
    retention_days: 30,
    collect_network_data: true,
    erase_after_close_hours: 48,
    min_group_size: 7,
    retention_seconds: 400 * 86400,
    notice_text: notice,
    notice_version: "2026-12",
  });
  // What the widget reads, anonymously.
  await poll("the notice to be answered", async () => {
    const r = await fetch(`${stack.gw}/v1/tenants/demo/notice`);
    const n = await r.json();
    return r.headers.get("cache-control") === "public, max-age=60" && n.version === "2026-12" && n.text === notice;
  });
  await accessible(page, "settings saved");
  await page.locator("#settings").scrollIntoViewIfNeeded();
  await screenshot(page, "privacy-settings");
});

test("an admin sets the identity provider; its secret is write-only", async () => {
  const secret = "s3cret-never-shown";
  await page.getByText("No identity provider is set").waitFor();
  await page.getByLabel("Issuer").fill("http://127.0.0.1:9/realms/demo");
  await page.getByLabel("Client id").fill("parley");
  await page.getByLabel("Roles", { exact: true }).fill("support-admins = admin\nsupport-agents = agent");
  await page.getByLabel("New client secret").fill(secret);
  await page.getByRole("button", { name: "Save identity provider" }).click();
  await page.getByText("A client secret is set.").waitFor();
  assert.equal(await page.getByLabel("New client secret").inputValue(), "");
  assert.ok(!(await page.content()).includes(secret), "the secret is on the page");
  const stored = await stack.api(admin, "GET", "/v1/tenants/demo/identity-provider");
  assert.equal(stored.client_secret_set, true);
  assert.deepEqual(stored.roles, { "support-admins": "admin", "support-agents": "agent" });
  assert.ok(!JSON.stringify(stored).includes(secret));

  // Saved again with the field empty, for the same issuer and client: the
  // secret is kept.
  await page.getByLabel("Extra scopes").fill("groups email");
  await page.getByRole("button", { name: "Save identity provider" }).click();
  await poll("the provider saved", async () => {
    const p = await stack.api(admin, "GET", "/v1/tenants/demo/identity-provider");
    return p.scopes.join(" ") === "groups email" && p.client_secret_set;
  });
  await page.getByText("A client secret is set.").waitFor();
  // A value the API refuses: its detail by the field.
  await page.getByLabel("Issuer").fill("ftp://id.example");
  await page.getByRole("button", { name: "Save identity provider" }).click();
  await page.locator("#idp-issuer-error").filter({ hasText: "issuer must be an https URL" }).waitFor();
  await accessible(page, "identity provider refused");
});

test("an admin exports a visitor, then erases them and reads the completion report", async () => {
  await page.getByLabel("Subject id").fill("nobody");
  await page.getByRole("button", { name: "Export" }).click();
  await page.getByRole("alert").filter({ hasText: "There is no subject nobody in this tenant." }).waitFor();

  await page.getByLabel("Subject id").fill(visitor);
  await page.getByRole("button", { name: "Export" }).click();
  const link = page.getByRole("link", { name: /Download the export/ });
  await link.waitFor();
  await page.getByText("1 conversation, 1 message", { exact: true }).waitFor();
  await page.getByText("1 consent record; in force: analytics (notice 1)", { exact: true }).waitFor();
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  assert.equal(download.suggestedFilename(), `parley-export-${visitor}.json`);
  const doc = JSON.parse(await readFile(await download.path(), "utf8"));
  assert.equal(doc.subject.id, visitor);
  assert.deepEqual(
    doc.consents.map(({ analytics, network_data, ai, notice_version }) => ({ analytics, network_data, ai, notice_version })),
    [{ analytics: true, network_data: false, ai: false, notice_version: "1" }],
  );
  assert.equal(doc.conversations[0].messages[0].text, "my order number is 4711");
  await accessible(page, "export");

  await page.getByRole("button", { name: "Erase…" }).click();
  const dialog = page.getByRole("alertdialog");
  await dialog.getByText(`Erase subject ${visitor}?`).waitFor();
  await accessible(page, "erasure confirmation");
  const seen = [];
  page.on("response", (r) => r.url().includes("/v1/erasures/") && r.json().then((e) => seen.push(e.status), () => {}));
  await dialog.getByRole("button", { name: `Erase ${visitor} for good` }).click();
  await page.getByRole("status").filter({ hasText: /^Completed at / }).waitFor();
  const report = page.getByRole("table", { name: "Completion report" });
  assert.equal(await report.getByRole("row", { name: /Keys destroyed/ }).getByRole("cell").textContent(), "yes");
  console.log(`erasure statuses the page read: ${seen.join(", ")}`);
  await accessible(page, "erasure completed");
  await page.locator("#subject").scrollIntoViewIfNeeded();
  await screenshot(page, "privacy-erasure");

  // Afterwards nothing is held, and the transcript reads erased.
  await page.getByRole("button", { name: "Export" }).click();
  await page.getByRole("alert").filter({ hasText: `Subject ${visitor} was erased` }).waitFor();
  const msgs = await stack.api(stack.token("supervisor", "sue"), "GET", `/v1/conversations/${conversation}/messages`);
  assert.deepEqual(
    msgs.messages.map(({ text, erased }) => ({ text, erased })),
    [{ text: null, erased: true }],
  );
});

// signCheckpoint signs a checkpoint as pkg/audit does, with a key of the test's own.
function signCheckpoint(cp) {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const fields = ["parley-audit-checkpoint-v1", cp.tenant, String(cp.count), cp.head, cp.at].map((f) => Buffer.from(f));
  const msg = Buffer.concat(fields.flatMap((f) => [Buffer.from([0, 0, (f.length >> 8) & 255, f.length & 255]), f]));
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  return { checkpoint: { ...cp, signature: sign(null, msg, privateKey).toString("base64") }, public_key: raw.toString("base64") };
}

test("the audit trail shows the erasure and is verified in the browser; saved checkpoints are checked", async () => {
  // More than a page of GET /v1/audit (1000 entries): each staff read of a
  // transcript page is audited. Each of 21 readers stays within a person's
  // burst (100 requests).
  const readers = Array.from({ length: 21 }, (_, i) => stack.token("supervisor", `s${i}`));
  await Promise.all(
    readers.map(async (tok) => {
      for (let i = 0; i < 50; i++) await stack.api(tok, "GET", `/v1/conversations/${conversation}/messages`);
    }),
  );
  const entries = [];
  for (let more = true, since = ""; more; ) {
    const page = await stack.api(admin, "GET", `/v1/audit${since && `?since=${encodeURIComponent(since)}`}`);
    entries.push(...page.entries.filter((e) => !entries.some((x) => x.hash === e.hash)));
    ({ more } = page);
    since = entries.at(-1).at;
  }
  assert.ok(entries.length > 1000, `the trail has ${entries.length} entries, want more than a page`);
  const head = entries.at(-1).hash;
  const started = Date.now();
  await page.getByRole("button", { name: "Read and verify again" }).click();
  await page.getByText(`Verified: ${entries.length} entries, head ${head}, checkpoint signed at`).waitFor();
  console.log(`audit trail of ${entries.length} entries read and verified in the browser in ${Date.now() - started} ms (load ${await loadAverage()})`);
  await page.getByText(`Parley's checkpoint (${entries.length} entries,`).waitFor();
  const table = page.locator("table.audit");
  await page.getByRole("table", { name: `The newest 50 of ${entries.length} entries, newest first` }).waitFor();
  await accessible(page, "audit verified");
  await page.locator("#audit-title").evaluate((e) => e.scrollIntoView());
  await screenshot(page, "privacy-audit");
  await page.getByRole("button", { name: `Show all ${entries.length} entries` }).click();
  await page.getByRole("table", { name: `All ${entries.length} entries, newest first` }).waitFor();
  await table.getByRole("row").filter({ hasText: `subject:${visitor}` }).filter({ hasText: "erase" }).first().waitFor();
  await table.getByRole("row").filter({ hasText: "settings.change" }).first().waitFor();

  const saved = page.getByLabel(/A checkpoint you saved earlier/);
  const check = page.getByRole("button", { name: "Check the trail holds it" });
  // Saved before the erasure: the trail still holds it.
  await saved.fill(JSON.stringify(firstCheckpoint));
  await check.click();
  // It counts the one settings change before it: a count of one is said so.
  assert.equal(firstCheckpoint.checkpoint.count, 1);
  await page.getByText("Your saved checkpoint (1 entry,").waitFor();

  // A forged signature.
  const forged = structuredClone(firstCheckpoint);
  forged.checkpoint.count += 1;
  await saved.fill(JSON.stringify(forged));
  await check.click();
  await page
    .getByRole("alert")
    .filter({ hasText: "Your saved checkpoint: REFUSED: audit checkpoint signature does not verify: not signed by this key, or changed since" })
    .waitFor();

  // Signed, but counting entries the trail does not have.
  // Signed over a time in Go's form, as the page verifies it: a whole second
  // (toISOString's ".120Z" would be ".12Z" there, and the signature refused).
  const at = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const beyond = signCheckpoint({ tenant: "demo", count: entries.length + 3, head: "ab".repeat(32), at });
  await saved.fill(JSON.stringify(beyond));
  await check.click();
  await page
    .getByRole("alert")
    .filter({ hasText: `ENTRIES MISSING: the checkpoint of` })
    .filter({ hasText: `says ${entries.length + 3} entries, the last with hash ${"ab".repeat(32)}: the trail has ${entries.length}: its newest entries were removed` })
    .waitFor();
  await page.getByText("The audit key Parley answers now is not the one saved with it").waitFor();

  // A public key the auditor trusts: Parley's own, then another one.
  const knownKey = page.getByLabel(/A public key you trust/);
  await knownKey.fill(firstCheckpoint.public_key);
  await page.getByRole("button", { name: "Read and verify again" }).click();
  await page.getByText(`Parley's checkpoint (${entries.length} entries,`).filter({ hasText: "held; checked with the key you gave; the same Parley answers" }).waitFor();
  const other = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("base64");
  await knownKey.fill(other);
  await page.getByRole("button", { name: "Read and verify again" }).click();
  await page
    .getByRole("alert")
    .filter({ hasText: "Parley's checkpoint: REFUSED: audit checkpoint signature does not verify: not signed by this key, or changed since; checked with the key you gave; Parley answers another key" })
    .last() // the line, inside the verdict's alert
    .waitFor();
  await page.getByText("Not verified: ").filter({ hasText: "a checkpoint is REFUSED" }).waitFor();
  await accessible(page, "a checkpoint refused with the key given");
  // The saved one is checked with the key given too: the test's own.
  await saved.fill(JSON.stringify(firstCheckpoint));
  await check.click();
  await page.getByRole("alert").filter({ hasText: "Your saved checkpoint: REFUSED" }).filter({ hasText: "checked with the key you gave" }).waitFor();
  await knownKey.fill("");
  await page.getByRole("button", { name: "Read and verify again" }).click();
  await page.getByText(`Parley's checkpoint (${entries.length} entries,`).filter({ hasText: "held; checked with the key Parley answers now" }).waitFor();

  await saved.fill("{not json");
  await check.click();
  await page.getByRole("alert").filter({ hasText: "Saved checkpoint: not an answer of GET /v1/audit/checkpoint" }).waitFor();
  await accessible(page, "saved checkpoints checked");
  noCSPViolations(page.context(), "the admin's privacy page");
  await page.context().close();
});

test("an auditor reads and verifies the trail and cannot change the settings", async () => {
  const auditor = await staffPage(browser, stack.gw, "/privacy", stack.token("auditor", "aude"));
  await auditor.getByText(/^Verified: \d+ entries, head [0-9a-f]{64}, checkpoint signed at/).waitFor();
  await auditor.getByText("Only an admin may see or change the tenant's settings").waitFor();
  assert.equal(await auditor.getByRole("button", { name: "Save settings" }).count(), 0);
  assert.equal(await auditor.getByLabel("Retention (days)").count(), 0);
  assert.equal(await auditor.getByRole("button", { name: "Erase…" }).count(), 0);
  await accessible(auditor, "auditor");

  // A whole page of one instant (GET /v1/audit answers the same page again
  // for since): the page says it cannot read the trail whole, rather than
  // report it shorter than it is.
  const route = (url) => url.pathname === "/v1/audit";
  let firstPage;
  await auditor.route(route, async (r) => {
    const res = await r.fetch();
    const body = await res.json();
    firstPage ??= body;
    return r.fulfill({ response: res, json: { ...firstPage, more: true } });
  });
  await auditor.getByRole("button", { name: "Read and verify again" }).click();
  await auditor
    .getByRole("alert")
    .filter({ hasText: /^more entries than a page \(\d+\) share the instant \S+: GET \/v1\/audit pages by time and cannot read past them/ })
    .waitFor();
  await auditor.unroute(route);

  // A trail changed on its way (or in the store): the page names the entry.
  await auditor.route(
    (url) => url.pathname === "/v1/audit",
    async (route) => {
      const r = await route.fetch();
      const body = await r.json();
      if (!body.entries[1]) return route.fulfill({ response: r, json: body });
      body.entries[1].target = "subject:someone-else";
      return route.fulfill({ response: r, json: body });
    },
  );
  await auditor.getByRole("button", { name: "Read and verify again" }).click();
  await auditor.getByRole("alert").filter({ hasText: /Not verified: \d+ entries, chain BROKEN at entry 2 of \d+/ }).filter({ hasText: "on subject:someone-else: its hash does not match its content: the entry was changed" }).waitFor();
  await accessible(auditor, "chain broken");
  noCSPViolations(auditor.context(), "the auditor's privacy page");
  await auditor.context().close();
});
