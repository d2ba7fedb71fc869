// The staff pages' session: signed in through the tenant's identity
// provider (the gateway's sign-in, bound to this browser by its cookie), or,
// in a try-out, with a token from `parley token`. The refresh token is kept
// in sessionStorage: a tab's sign-in ends with the tab.
import { CallError, claims, Client, explain, type Principal } from "../client";

export const client = new Client(location.origin, "parley.staff.refresh", () => sessionStorage);

const stateKey = "parley.sign_in.state";
const tenantKey = "parley.sign_in.tenant";

/** The tenant last signed in to from this browser tab, for the form. */
export function lastTenant(): string {
  return sessionStorage.getItem(tenantKey) ?? new URLSearchParams(location.search).get("tenant") ?? "";
}

/** Begins a sign-in at the tenant's identity provider: the browser leaves. */
export async function beginSignIn(tenant: string): Promise<void> {
  const { authorization_url } = await client.anonymous<{ authorization_url: string }>(`/v1/tenants/${encodeURIComponent(tenant)}/sign-in`, {
    credentials: "same-origin",
  });
  sessionStorage.setItem(stateKey, new URL(authorization_url).searchParams.get("state") ?? "");
  sessionStorage.setItem(tenantKey, tenant);
  location.assign(authorization_url);
}

/**
 * restore finishes a sign-in the provider sent the browser back from, or
 * resumes this tab's session; it reports whether one is on.
 */
export async function restore(): Promise<boolean> {
  const q = new URLSearchParams(location.search);
  const state = q.get("state");
  if (state && (q.has("code") || q.has("error"))) {
    history.replaceState(null, "", location.pathname);
    const kept = sessionStorage.getItem(stateKey);
    sessionStorage.removeItem(stateKey);
    if (state !== kept) throw new CallError(401, "This sign-in was not begun in this tab: sign in again.");
    client.signedIn(await client.anonymous(`/v1/sign-in/callback?${q}`, { credentials: "same-origin" }));
    return true;
  }
  const refresh = client.stored();
  if (!refresh) return false;
  try {
    await client.resume(refresh);
    return true;
  } catch (e) {
    client.forget();
    if (e instanceof CallError && e.status === 401) return false;
    throw e;
  }
}

/**
 * Uses a try-out token (`parley token`), as the gateway names its person; one
 * it refuses is refused here in words, and nothing of it is kept.
 */
export async function useToken(token: string): Promise<Principal> {
  const c = claims(token);
  if (!c.sub) throw new CallError(422, "That is not a token: paste the whole output of `parley token`.");
  try {
    return await client.useToken(token);
  } catch (e) {
    throw new CallError(
      e instanceof CallError ? e.status : 0,
      explain(e, {
        401: (d) => `This token cannot sign in: ${d}.`,
        404: () => `This token's tenant, "${c.tenant ?? ""}", does not exist: use a token of a tenant that does.`,
      }),
    );
  }
}

/**
 * signOut ends the session. An agent is set away first: presence does not
 * lapse when a page is left (a reload must not make the agent away), so
 * signing out is how an agent stops being assigned, besides choosing Away.
 */
export async function signOut(): Promise<void> {
  if (client.principal?.role === "agent") {
    await client.call("PUT", "/v1/me/presence", { status: "away" }).catch(() => {});
  }
  const refresh = client.stored();
  client.forget();
  // Forgotten here whatever the answer: a session left open ends with its refresh token's life.
  if (refresh) await client.anonymous("/v1/sessions/sign-out", { method: "POST", body: { refresh_token: refresh } }).catch(() => {});
}
