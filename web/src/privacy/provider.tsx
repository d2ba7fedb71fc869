// The tenant's identity provider (GET/PUT /v1/tenants/{tenant}/identity-provider).
// The client secret is write-only: the API says only whether one is set; an
// absent secret keeps the stored one, an empty one clears it.
import { useEffect, useState } from "preact/hooks";
import { CallError } from "../client";
import { client } from "../staff/session";
import { Field, useSave } from "./form";

type Provider = {
  issuer: string;
  client_id: string;
  client_secret_set: boolean;
  redirect_url: string;
  scopes: string[];
  roles_claim: string;
  roles: Record<string, string>;
};

const fields = ["issuer", "client_id", "client_secret", "redirect_url", "scopes", "roles_claim", "roles"];

type Draft = { issuer: string; client_id: string; redirect_url: string; scopes: string; roles_claim: string; roles: string };

function draftOf(p: Provider | null): Draft {
  return {
    issuer: p?.issuer ?? "",
    client_id: p?.client_id ?? "",
    redirect_url: p?.redirect_url ?? `${location.origin}/console`,
    scopes: (p?.scopes ?? []).join(" "),
    roles_claim: p?.roles_claim ?? "groups",
    roles: Object.entries(p?.roles ?? {})
      .map(([v, r]) => `${v} = ${r}`)
      .join("\n"),
  };
}

/** roleMap reads "claim value = role" lines. */
function roleMap(text: string): Record<string, string> | string {
  const out: Record<string, string> = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const i = line.lastIndexOf("=");
    if (i < 1) return `roles: "${line}" is not "claim value = role"`;
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

export function ProviderForm({ tenant }: { tenant: string }) {
  const path = `/v1/tenants/${encodeURIComponent(tenant)}/identity-provider`;
  const [saved, setSaved] = useState<Provider | null | undefined>(undefined);
  const [draft, setDraft] = useState<Draft>(draftOf(null));
  const [secret, setSecret] = useState("");
  const [clear, setClear] = useState(false);
  const { busy, errors, setErrors, status, setStatus, save } = useSave<Provider>(fields);

  const load = (p: Provider | null) => {
    setSaved(p);
    setDraft(draftOf(p));
    setSecret("");
    setClear(false);
  };
  useEffect(() => {
    client
      .json<Provider>("GET", path)
      .then(load)
      .catch((e: CallError) => (e.status === 404 ? load(null) : setErrors({ "": e.message })));
  }, []);

  if (saved === undefined) {
    return errors[""] ? <p role="alert" class="error">{errors[""]}</p> : <p aria-busy="true">Loading the identity provider…</p>;
  }
  const set = (k: keyof Draft) => (e: Event) => setDraft({ ...draft, [k]: (e.currentTarget as HTMLInputElement).value });
  const submit = async (e: Event) => {
    e.preventDefault();
    setStatus("");
    const roles = roleMap(draft.roles);
    if (typeof roles === "string") {
      setErrors({ roles });
      return;
    }
    const body: Record<string, unknown> = {
      issuer: draft.issuer.trim(),
      client_id: draft.client_id.trim(),
      redirect_url: draft.redirect_url.trim(),
      scopes: draft.scopes.split(/\s+/).filter(Boolean),
      roles_claim: draft.roles_claim.trim(),
      roles,
    };
    // Absent keeps the stored secret; "" clears it.
    if (clear) body.client_secret = "";
    else if (secret) body.client_secret = secret;
    await save(path, body, load);
  };
  const input = (k: keyof Draft, label: string, hint: string) => (
    <Field id={`idp-${k}`} label={label} hint={hint} error={errors[k]}>
      {(d) => <input id={`idp-${k}`} value={draft[k]} onInput={set(k)} aria-describedby={d} aria-invalid={errors[k] ? "true" : undefined} spellcheck={false} />}
    </Field>
  );

  return (
    <form onSubmit={submit} noValidate aria-labelledby="idp-title">
      {errors[""] && <p role="alert" class="error">{errors[""]}</p>}
      <p class="hint">{saved ? "Staff sign in through this provider." : "No identity provider is set: staff can sign in only with try-out tokens."}</p>
      <div class="grid">
        {input("issuer", "Issuer", "https (http only on a loopback host).")}
        {input("client_id", "Client id", "As registered at the provider.")}
        {input("redirect_url", "Redirect URL", "Where the provider sends the browser back: a staff page.")}
        {input("scopes", "Extra scopes", "Separated by spaces, besides openid.")}
        {input("roles_claim", "Roles claim", "The id token claim holding groups or roles (a dotted path reaches a nested one).")}
      </div>
      <Field id="idp-roles" label="Roles" hint="One a line: claim value = agent, supervisor, admin, analyst or auditor." error={errors.roles}>
        {(d) => <textarea id="idp-roles" rows={4} value={draft.roles} onInput={set("roles")} aria-describedby={d} aria-invalid={errors.roles ? "true" : undefined} spellcheck={false} />}
      </Field>
      <fieldset>
        <legend>Client secret</legend>
        <p id="idp-secret-state">{saved?.client_secret_set ? "A client secret is set." : "No client secret is set."} It is never shown.</p>
        <Field id="idp-client_secret" label="New client secret" hint="Empty keeps the one set, as long as the issuer and client id stay the same." error={errors.client_secret}>
          {(d) => (
            <input id="idp-client_secret" type="password" autocomplete="new-password" value={secret} disabled={clear} onInput={(e) => setSecret(e.currentTarget.value)} aria-describedby={d} />
          )}
        </Field>
        {saved?.client_secret_set && !secret && !clear && (draft.issuer.trim() !== saved.issuer || draft.client_id.trim() !== saved.client_id) && (
          <p class="error">A new issuer or client id drops the secret set: give the secret again.</p>
        )}
        <div class="field check">
          <input id="idp-clear" type="checkbox" checked={clear} onChange={(e) => setClear(e.currentTarget.checked)} />
          <label for="idp-clear">Remove the secret (a public client)</label>
        </div>
      </fieldset>
      <div class="actions">
        <button type="submit" disabled={busy}>
          Save identity provider
        </button>
        <span role="status" class="hint">
          {busy ? "Saving…" : status}
        </span>
      </div>
    </form>
  );
}
