// Staff sign-in through a tenant's OpenID provider in a real browser, against
// a real `parley all` (which lets sign-ins reach a provider on loopback): the
// provider is a small one of the test's own on 127.0.0.1 (discovery, its
// keys, the authorization redirect, the token endpoint with PKCE, RS256 id
// tokens signed with node:crypto). The console's form signs a person in with
// the role their groups map to; a sign-in whose answer comes back to another
// tab, or to a browser without the sign-in's cookie, is refused in words.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { createServer } from "node:http";
import { accessible, freePort, launchBrowser, newContext, noCSPViolations, poll, screenshot, startParley } from "./lib.mjs";

const clientID = "parley-console";
const clientSecret = "stub-secret-4b1d";

let stack, browser, idp;

/**
 * startProvider runs an OpenID provider on 127.0.0.1 that signs in one
 * person, at once (no login form), with the groups given: what a real one
 * does after its login, as far as Parley sees it.
 */
async function startProvider(person) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: "k1", alg: "RS256", use: "sig" };
  const codes = new Map();
  const b64url = (b) => Buffer.from(b).toString("base64url");
  const idToken = (claims) => {
    const head = b64url(JSON.stringify({ alg: "RS256", kid: "k1", typ: "JWT" }));
    const body = b64url(JSON.stringify(claims));
    return `${head}.${body}.${b64url(sign("sha256", Buffer.from(`${head}.${body}`), privateKey))}`;
  };
  const json = (res, status, v) => res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" }).end(JSON.stringify(v));
  const exchanges = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === "/.well-known/openid-configuration") {
      return json(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/keys`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
      });
    }
    if (url.pathname === "/keys") return json(res, 200, { keys: [jwk] });
    if (url.pathname === "/authorize") {
      const q = url.searchParams;
      if (q.get("client_id") !== clientID || q.get("response_type") !== "code" || q.get("code_challenge_method") !== "S256") {
        return res.writeHead(400).end("bad authorization request");
      }
      const code = randomBytes(16).toString("hex");
      codes.set(code, { nonce: q.get("nonce"), challenge: q.get("code_challenge"), redirect: q.get("redirect_uri") });
      const back = new URL(q.get("redirect_uri"));
      back.searchParams.set("code", code);
      back.searchParams.set("state", q.get("state"));
      return res.writeHead(302, { Location: back.href }).end();
    }
    if (url.pathname === "/token" && req.method === "POST") {
      let raw = "";
      for await (const chunk of req) raw += chunk;
      const form = new URLSearchParams(raw);
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? "");
      const [id, secret] = basic
        ? Buffer.from(basic[1], "base64").toString().split(":").map(decodeURIComponent)
        : [form.get("client_id"), form.get("client_secret")];
      const pending = codes.get(form.get("code"));
      codes.delete(form.get("code"));
      const verifier = form.get("code_verifier") ?? "";
      const ok =
        id === clientID &&
        secret === clientSecret &&
        form.get("grant_type") === "authorization_code" &&
        pending &&
        pending.redirect === form.get("redirect_uri") &&
        createHash("sha256").update(verifier).digest("base64url") === pending.challenge;
      exchanges.push(ok ? "ok" : "refused");
      if (!ok) return json(res, 400, { error: "invalid_grant" });
      const now = Math.floor(Date.now() / 1000);
      return json(res, 200, {
        access_token: randomBytes(16).toString("hex"),
        token_type: "Bearer",
        expires_in: 300,
        id_token: idToken({ iss: issuer, sub: person.sub, aud: clientID, iat: now, exp: now + 300, nonce: pending.nonce, groups: person.groups }),
      });
    }
    res.writeHead(404).end();
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return { issuer, exchanges, close: () => new Promise((r) => server.close(r)) };
}

before(async () => {
  stack = await startParley();
  browser = await launchBrowser();
  idp = await startProvider({ sub: "248289761001", groups: ["staff", "support-leads"] });
  // The tenant's provider, set through the API by its admin.
  await stack.api(stack.token("admin", "root"), "PUT", "/v1/tenants/demo/identity-provider", {
    issuer: idp.issuer,
    client_id: clientID,
    client_secret: clientSecret,
    redirect_url: `${stack.gw}/console`,
    roles_claim: "groups",
    roles: { "support-leads": "supervisor", "support-agents": "agent" },
  });
});

after(async () => {
  await browser?.close();
  await idp?.close();
  await stack?.stop();
});

// beginSignIn fills the console's sign-in form with the tenant and sends the
// browser on its way to the provider.
async function beginSignIn(page) {
  await page.goto(`${stack.gw}/console`);
  await page.getByLabel("Tenant").fill("demo");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

test("a member of staff signs in through the tenant's provider, with the role their groups map to", async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await beginSignIn(page);
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  const who = await page.locator(".who").innerText();
  assert.match(who, /^oidc-[0-9a-f]{32} · supervisor · demo$/, "the person signed in, with the mapped role");
  assert.equal(new URL(page.url()).search, "", "the provider's code and state left the address bar");
  assert.deepEqual(idp.exchanges, ["ok"], "the code exchanged once, with PKCE and the client's secret");
  // A supervisor's pages, and the console working with the session.
  await page.getByText(/open conversations?/).waitFor();
  await accessible(page, "the console after a provider's sign-in");
  await screenshot(page, "sign-in-provider");
  // The session is the tab's, and a reload keeps it.
  await page.reload();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  noCSPViolations(ctx, "the provider's sign-in");
  await ctx.close();
});

test("the provider's answer brought back to another tab is refused in words", async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  // The provider's redirect back is held (a redirect's hop is not routed:
  // the provider's answer is fetched and its Location kept), and its
  // address opened in another tab of the same browser (the cookie is there,
  // the tab's state is not).
  let back;
  await page.route((url) => url.origin === idp.issuer && url.pathname === "/authorize", async (route) => {
    const r = await route.fetch({ maxRedirects: 0 });
    back = r.headers().location;
    return route.abort();
  });
  await beginSignIn(page);
  await poll("the provider to send the browser back", () => back);
  const other = await ctx.newPage();
  await other.goto(back);
  await other.getByRole("alert").filter({ hasText: "This sign-in was not begun in this tab: sign in again." }).waitFor();
  await other.getByRole("heading", { name: "Sign in to the console" }).waitFor();
  await accessible(other, "a sign-in refused in another tab");
  await screenshot(other, "sign-in-other-tab");
  noCSPViolations(ctx, "a sign-in refused in another tab");
  await ctx.close();
});

test("the provider's answer brought back without the sign-in's cookie is refused by the gateway in words", async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  // The same tab, but the cookie the gateway set when the sign-in began is
  // gone (as in a browser other than the one that began it): the gateway
  // refuses, and the page says why.
  await page.route((url) => url.origin === idp.issuer && url.pathname === "/authorize", async (route) => {
    await ctx.clearCookies();
    return route.continue();
  });
  const before = idp.exchanges.length;
  await beginSignIn(page);
  await page.getByRole("alert").filter({ hasText: "the sign-in was begun in another browser: start again in this one" }).waitFor();
  await page.getByRole("heading", { name: "Sign in to the console" }).waitFor();
  assert.equal(idp.exchanges.length, before, "no code exchanged for a sign-in without its cookie");
  await accessible(page, "a sign-in refused without its cookie");
  noCSPViolations(ctx, "a sign-in refused without its cookie");
  await ctx.close();
});
