// The tenant's bots and integrations (admin): list, register or change one,
// delete one, and read one's delivery log. A registration's signing secret,
// and a bot's session, are shown once, when it is created: the API never
// answers them again, and the page keeps them only while they show.
import { useEffect, useRef, useState } from "preact/hooks";
import { CallError, explain } from "../client";
import type { Integration } from "../bots";
import { client } from "../staff/session";
import { Field, byField } from "./form";

type Kind = "bot" | "integration";
const paths: Record<Kind, string> = { bot: "/v1/bots", integration: "/v1/integrations" };

type Created = Integration & { secret?: string; session?: { refresh_token: string } };

/** A line of a delivery log: an attempt, when, and how it went; never what it said. */
type Delivery = { event_id: string; type: string; attempt: number; outcome: string; status: number; duration_ms: number; at: string };
type Log = { deliveries: Delivery[]; more: boolean };

const fields = ["id", "name", "webhook_url", "nats_subject"];

export function Integrations({ tenant }: { tenant: string }) {
  const [all, setAll] = useState<Integration[] | null>(null);
  const [error, setError] = useState("");
  const [created, setCreated] = useState<Created | null>(null);
  const [deleting, setDeleting] = useState<Integration | null>(null);
  const [log, setLog] = useState<{ of: Integration; lines: Delivery[]; more: boolean } | null>(null);
  const [status, setStatus] = useState("");

  const load = async () => {
    try {
      const [bots, others] = await Promise.all([
        client.json<{ bots: Integration[] }>("GET", paths.bot),
        client.json<{ integrations: Integration[] }>("GET", paths.integration),
      ]);
      // The API answers each list under its path's name (openapi.json).
      setAll([...bots.bots, ...others.integrations]);
      setError("");
    } catch (e) {
      setAll([]);
      setError(explain(e));
    }
  };
  useEffect(() => void load(), []);

  const remove = async (it: Integration) => {
    setStatus("");
    try {
      await client.json("DELETE", `${paths[it.kind]}/${encodeURIComponent(it.id)}`);
      setDeleting(null);
      if (log?.of.id === it.id) setLog(null);
      // Said once the list no longer shows it.
      await load();
      setStatus(`${it.name} (${it.id}) deleted${it.kind === "bot" ? ": its sessions are ended" : ""}.`);
    } catch (e) {
      setError(explain(e));
    }
  };

  // readLog reads a delivery log, oldest first, a page (500) at a time:
  // since the last entry read for the next, its entries at that instant
  // answered again and dropped.
  const readLog = async (it: Integration, after?: { lines: Delivery[] }) => {
    setError("");
    const last = after?.lines.at(-1);
    const q = last ? `?${new URLSearchParams({ since: last.at })}` : "";
    try {
      const page = await client.json<Log>("GET", `${paths[it.kind]}/${encodeURIComponent(it.id)}/deliveries${q}`);
      const seen = new Set(after?.lines.map((d) => `${d.event_id}/${d.attempt}/${d.at}`));
      const lines = [...(after?.lines ?? []), ...page.deliveries.filter((d) => !seen.has(`${d.event_id}/${d.attempt}/${d.at}`))];
      setLog({ of: it, lines, more: page.more });
    } catch (e) {
      setError(explain(e));
    }
  };

  return (
    <div class="integrations">
      <p class="hint">
        A bot answers visitors in the conversations assigned to it; an integration (a CRM, a ticketing system) receives every
        conversation's events. Either receives only the events of visitors who consented to <strong>AI</strong>, with e-mail
        addresses, phone numbers, card numbers, IBANs and IP addresses removed, each signed with its secret.
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p role="status" class="hint">
        {status}
      </p>
      {all === null ? (
        <p aria-busy="true">Loading the bots and integrations…</p>
      ) : all.length === 0 ? (
        <p>No bot or integration is registered.</p>
      ) : (
        <table>
          <caption>Registered</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">Kind</th>
              <th scope="col">Delivered to</th>
              <th scope="col">Changed</th>
              <th scope="col">
                <span class="sr">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {all.map((it) => (
              <tr key={`${it.kind}/${it.id}`}>
                <td>{it.name}</td>
                <td>
                  <code>{it.id}</code>
                </td>
                <td>{it.kind}</td>
                <td class="target">{it.webhook_url ?? it.nats_subject}</td>
                <td>{new Date(it.updated_at).toLocaleString()}</td>
                <td class="buttons">
                  <button type="button" class="secondary" onClick={() => readLog(it)}>
                    Delivery log<span class="sr"> of {it.name}</span>
                  </button>
                  <button type="button" class="secondary" onClick={() => setDeleting(it)}>
                    Delete<span class="sr"> {it.name}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {deleting && <ConfirmDelete it={deleting} onYes={() => remove(deleting)} onNo={() => setDeleting(null)} />}
      {log && <DeliveryLog of={log.of} lines={log.lines} more={log.more} onMore={() => readLog(log.of, log)} onClose={() => setLog(null)} />}
      {created && <Secrets it={created} onDone={() => setCreated(null)} />}
      <Register
        tenant={tenant}
        onSaved={(it, isNew) => {
          setStatus(isNew ? "" : `${it.name} (${it.id}) saved; its secret is unchanged.`);
          setCreated(isNew ? it : null);
          void load();
        }}
      />
    </div>
  );
}

function ConfirmDelete({ it, onYes, onNo }: { it: Integration; onYes: () => void; onNo: () => void }) {
  const yes = useRef<HTMLButtonElement>(null);
  useEffect(() => yes.current?.focus(), []);
  return (
    <div class="confirm" role="group" aria-label={`Delete ${it.name}`}>
      <p>
        Delete the {it.kind} <strong>{it.name}</strong> ({it.id})? Nothing more is delivered to it
        {it.kind === "bot" ? ", its sessions end, and its conversations wait for a person" : ""}.
      </p>
      <div class="actions">
        <button type="button" class="danger" ref={yes} onClick={onYes}>
          Delete {it.name}
        </button>
        <button type="button" class="secondary" onClick={onNo}>
          Keep it
        </button>
      </div>
    </div>
  );
}

function DeliveryLog({ of, lines, more, onMore, onClose }: { of: Integration; lines: Delivery[]; more: boolean; onMore: () => void; onClose: () => void }) {
  return (
    <div class="result">
      <table class="deliveries">
        <caption>
          Delivery log of {of.name}, oldest first ({lines.length} {lines.length === 1 ? "attempt" : "attempts"}{more ? " so far" : ""}; what was sent is not kept)
        </caption>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Event</th>
            <th scope="col">Type</th>
            <th scope="col">Attempt</th>
            <th scope="col">Outcome</th>
            <th scope="col">HTTP status</th>
            <th scope="col">Took</th>
          </tr>
        </thead>
        <tbody>
          {lines.map((d, i) => (
            <tr key={i}>
              <td>{new Date(d.at).toLocaleString()}</td>
              <td>
                <code>{d.event_id}</code>
              </td>
              <td>{d.type}</td>
              <td>{d.attempt}</td>
              <td>{d.outcome}</td>
              <td>{d.status || "none"}</td>
              <td>{d.duration_ms} ms</td>
            </tr>
          ))}
        </tbody>
      </table>
      {lines.length === 0 && <p>Nothing was delivered to it yet.</p>}
      <div class="actions">
        {more && (
          <button type="button" class="secondary" onClick={onMore}>
            Later entries
          </button>
        )}
        <button type="button" class="secondary" onClick={onClose}>
          Close the log
        </button>
      </div>
    </div>
  );
}

/** Secrets shows what a registration answers once: the signing secret, and a bot's refresh token. */
function Secrets({ it, onDone }: { it: Created; onDone: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [it]);
  return (
    <div class="result secrets" role="group" aria-labelledby="secrets-title">
      <h3 id="secrets-title" tabIndex={-1} ref={heading}>
        {it.name} ({it.id}) is registered: copy these now
      </h3>
      <p>They are shown this once: Parley keeps the secret sealed and never answers it again. Give them to whoever runs the {it.kind}.</p>
      {it.secret && <Copyable id="secret" label="Signing secret (verifies the Parley-Signature of each delivery)" value={it.secret} />}
      {it.session?.refresh_token && (
        <Copyable id="refresh" label="The bot's refresh token (POST /v1/sessions/refresh gives it an access token to answer with)" value={it.session.refresh_token} />
      )}
      <button type="button" class="secondary" onClick={onDone}>
        I have copied them
      </button>
    </div>
  );
}

function Copyable({ id, label, value }: { id: string; label: string; value: string }) {
  const [said, setSaid] = useState("");
  const input = useRef<HTMLInputElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setSaid("Copied.");
    } catch {
      // No clipboard for this page (not a secure context, or refused): the
      // value is selected for the person to copy themself.
      input.current?.select();
      setSaid("Selected: copy it with your keyboard.");
    }
  };
  return (
    <div class="field">
      <label for={`created-${id}`}>{label}</label>
      <div class="row">
        <input id={`created-${id}`} ref={input} readOnly value={value} spellcheck={false} class="secret" onFocus={(e) => e.currentTarget.select()} />
        <button type="button" onClick={copy}>
          Copy<span class="sr"> {label.split(" (")[0].toLowerCase()}</span>
        </button>
        <span role="status" class="hint">
          {said}
        </span>
      </div>
    </div>
  );
}

function Register({ tenant, onSaved }: { tenant: string; onSaved: (it: Created, isNew: boolean) => void }) {
  const [kind, setKind] = useState<Kind>("bot");
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [by, setBy] = useState<"webhook_url" | "nats_subject">("webhook_url");
  const [target, setTarget] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});

  const submit = async (e: Event) => {
    e.preventDefault();
    const want: Record<string, string> = {};
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id.trim())) want.id = "id: 1 to 64 letters, digits, - or _.";
    if (!name.trim() || name.trim().length > 100) want.name = "name: 1 to 100 characters.";
    if (by === "webhook_url" && !/^https?:\/\//.test(target.trim())) want.webhook_url = "webhook_url: an https address.";
    if (by === "nats_subject" && !target.trim().startsWith(`parley.bots.${tenant}.`)) want.nats_subject = `nats_subject: must start with parley.bots.${tenant}.`;
    setErrors(want);
    if (Object.keys(want).length) return;
    setBusy(true);
    try {
      const r = await client.call("PUT", `${paths[kind]}/${encodeURIComponent(id.trim())}`, { name: name.trim(), [by]: target.trim() });
      const it: Created = await r.json();
      onSaved(it, r.status === 201);
      setId("");
      setName("");
      setTarget("");
    } catch (err) {
      const c = err as CallError;
      setErrors(c instanceof CallError && c.status === 422 ? byField(c.message, fields) : { "": explain(err) });
    } finally {
      setBusy(false);
    }
  };

  const targetField = by === "webhook_url" ? "webhook_url" : "nats_subject";
  return (
    <form onSubmit={submit} noValidate aria-labelledby="register-title">
      <h3 id="register-title">Register or change one</h3>
      {errors[""] && (
        <p role="alert" class="error">
          {errors[""]}
        </p>
      )}
      <fieldset>
        <legend>Kind</legend>
        <div class="field check">
          <input type="radio" id="kind-bot" name="kind" checked={kind === "bot"} onChange={() => setKind("bot")} />
          <label for="kind-bot">Bot: answers the conversations assigned to it</label>
        </div>
        <div class="field check">
          <input type="radio" id="kind-integration" name="kind" checked={kind === "integration"} onChange={() => setKind("integration")} />
          <label for="kind-integration">Integration: receives every conversation's events</label>
        </div>
      </fieldset>
      <div class="grid">
        <Field id="reg-id" label="Id" hint="Letters, digits, - and _; an id already registered is changed, its secret kept." error={errors.id}>
          {(d) => <input id="reg-id" value={id} onInput={(e) => setId(e.currentTarget.value)} aria-describedby={d} aria-invalid={errors.id ? "true" : undefined} spellcheck={false} />}
        </Field>
        <Field id="reg-name" label="Name" hint="What staff see, such as FAQ assistant." error={errors.name}>
          {(d) => <input id="reg-name" value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby={d} aria-invalid={errors.name ? "true" : undefined} />}
        </Field>
      </div>
      <fieldset>
        <legend>Delivered by</legend>
        <div class="field check">
          <input type="radio" id="by-webhook" name="by" checked={by === "webhook_url"} onChange={() => setBy("webhook_url")} />
          <label for="by-webhook">Webhook (HTTPS)</label>
        </div>
        <div class="field check">
          <input type="radio" id="by-nats" name="by" checked={by === "nats_subject"} onChange={() => setBy("nats_subject")} />
          <label for="by-nats">NATS subject</label>
        </div>
        <Field
          id="reg-target"
          label={by === "webhook_url" ? "Webhook URL" : "NATS subject"}
          hint={by === "webhook_url" ? "https://… at a public address." : `parley.bots.${tenant}.<name>`}
          error={errors[targetField]}
        >
          {(d) => (
            <input id="reg-target" value={target} onInput={(e) => setTarget(e.currentTarget.value)} aria-describedby={d} aria-invalid={errors[targetField] ? "true" : undefined} spellcheck={false} />
          )}
        </Field>
      </fieldset>
      <div class="actions">
        <button type="submit" disabled={busy}>
          Register
        </button>
        <span role="status" class="hint">
          {busy ? "Registering…" : ""}
        </span>
      </div>
    </form>
  );
}
