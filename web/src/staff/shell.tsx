// The frame of every staff page: sign-in when no session is on, then a
// header naming the person with links to the pages their role may use, and
// the page itself.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Principal } from "../client";
import { beginSignIn, client, lastTenant, restore, signOut, useToken } from "./session";

// tryout is the principal the sign-in form suggests a try-out token for: one
// the page lets in, and the one `parley demo` prints that page's token for.
type Page = { path: string; title: string; roles: string[]; tryout: { role: string; id: string } };

export const pages: Page[] = [
  { path: "/console", title: "Console", roles: ["agent", "supervisor", "admin"], tryout: { role: "agent", id: "alice" } },
  { path: "/privacy", title: "Privacy", roles: ["admin", "auditor"], tryout: { role: "admin", id: "root" } },
  { path: "/dashboard", title: "Dashboard", roles: ["analyst", "admin"], tryout: { role: "analyst", id: "ann" } },
];

/** Shell renders the page at path for a signed-in person whose role it allows. */
export function Shell({ path, children }: { path: string; children: (p: Principal) => ComponentChildren }) {
  const page = pages.find((p) => p.path === path)!;
  const [who, setWho] = useState<Principal | null>(null);
  const [ready, setReady] = useState(false);
  const [error, setError] = useState("");

  useEffect(() => {
    document.title = `${page.title} · Parley`;
    restore()
      .then((on) => on && setWho(client.principal))
      .catch((e: Error) => setError(e.message))
      .finally(() => setReady(true));
  }, []);

  if (!ready) return <main class="staff" aria-busy="true" />;
  if (!who) return <SignIn page={page} error={error} onToken={setWho} />;
  const mine = pages.filter((p) => p.roles.includes(who.role));
  return (
    <>
      <header class="bar">
        <span class="brand">Parley</span>
        <nav aria-label="Pages">
          {mine.map((p) => (
            <a href={p.path} aria-current={p.path === path ? "page" : undefined}>
              {p.title}
            </a>
          ))}
        </nav>
        <span class="who">
          {who.id} · {who.role} · {who.tenant}
        </span>
        <button type="button" onClick={() => signOut().finally(() => location.reload())}>
          Sign out
        </button>
      </header>
      <main class="staff" id="main">
        {page.roles.includes(who.role) ? (
          children(who)
        ) : (
          <p role="alert">
            Your role ({who.role}) cannot use the {page.title.toLowerCase()}.
          </p>
        )}
      </main>
    </>
  );
}

function SignIn({ page, error, onToken }: { page: Page; error: string; onToken: (p: Principal) => void }) {
  const [tenant, setTenant] = useState(lastTenant());
  const [token, setToken] = useState("");
  const [problem, setProblem] = useState(error);
  const [busy, setBusy] = useState(false);
  return (
    <main class="staff signin" id="main">
      <h1>Sign in to the {page.title.toLowerCase()}</h1>
      {problem && <p role="alert" class="error">{problem}</p>}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setBusy(true);
          beginSignIn(tenant.trim()).catch((err: Error) => {
            setProblem(err.message);
            setBusy(false);
          });
        }}
      >
        <h2>With your organisation's account</h2>
        <label for="tenant">Tenant</label>
        <input id="tenant" name="tenant" required autocomplete="organization" value={tenant} onInput={(e) => setTenant(e.currentTarget.value)} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setBusy(true);
          useToken(token.trim()).then(onToken, (err: Error) => {
            setProblem(err.message);
            setBusy(false);
          });
        }}
      >
        <h2>With a try-out token</h2>
        <p class="hint">
          From <code>bin/parley token --tenant demo --role {page.tryout.role} --id {page.tryout.id}</code>; it lasts until it expires and is not stored.
        </p>
        <label for="token">Token</label>
        <input id="token" name="token" required autocomplete="off" spellcheck={false} value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <button type="submit" disabled={busy}>
          Use token
        </button>
      </form>
    </main>
  );
}
