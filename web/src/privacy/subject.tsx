// Export or erase a data subject by id (admin). The export is offered as a
// JSON file from a Blob URL, with a summary; the erasure is confirmed, then
// followed until the privacy service completes it, and its report shown.
import { useEffect, useRef, useState } from "preact/hooks";
import { CallError } from "../client";
import { client } from "../staff/session";

type Export = {
  subject: { id: string };
  exported_at: string;
  consents: { analytics: boolean; network_data: boolean; ai: boolean; notice_version: string; at: string }[];
  network_data: unknown[];
  requests: unknown[];
  profile: unknown;
  conversations: { messages: unknown[] }[];
};

type Erasure = {
  erasure_id: string;
  subject: string;
  status: string;
  requested_at: string;
  completed_at: string | null;
  report: { keys_destroyed: boolean; at: string; duration_ms: number; counts?: Record<string, number> } | null;
};

/** What the API's refusals mean for a subject, in the page's words. */
function explain(e: CallError, id: string): string {
  switch (e.status) {
    case 404:
      return `There is no subject ${id} in this tenant.`;
    case 410:
      return `Subject ${id} was erased: nothing is held about them.`;
    default:
      return e.message;
  }
}

const pollEvery = 500;

export function SubjectTools() {
  const [id, setId] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState("");
  const [exported, setExported] = useState<{ doc: Export; url: string; bytes: number } | null>(null);
  const [confirm, setConfirm] = useState("");
  const [erasure, setErasure] = useState<Erasure | null>(null);
  const stop = useRef(false);
  const confirmRef = useRef<HTMLButtonElement>(null);

  useEffect(() => () => void (stop.current = true), []);
  useEffect(() => () => {
    if (exported) URL.revokeObjectURL(exported.url);
  }, [exported]);
  useEffect(() => {
    if (confirm) confirmRef.current?.focus();
  }, [confirm]);

  const subject = id.trim();
  const reset = () => {
    setError("");
    setExported(null);
    setErasure(null);
    setConfirm("");
  };

  const exportIt = async () => {
    reset();
    setBusy("Exporting…");
    try {
      const r = await client.call("GET", `/v1/subjects/${encodeURIComponent(subject)}/export`);
      // The export is streamed: a body cut short does not parse.
      const text = await r.text();
      let doc: Export;
      try {
        doc = JSON.parse(text);
      } catch {
        throw new CallError(502, "The export was cut off before it was complete: export again.");
      }
      const blob = new Blob([text], { type: "application/json" });
      setExported({ doc, url: URL.createObjectURL(blob), bytes: blob.size });
    } catch (e) {
      setError(explain(e as CallError, subject));
    } finally {
      setBusy("");
    }
  };

  const eraseIt = async (who: string) => {
    reset();
    setBusy(`Erasing ${who}…`);
    try {
      let e = await client.json<{ erasure_id: string; status: string }>("POST", `/v1/subjects/${encodeURIComponent(who)}/erase`, {});
      const path = `/v1/erasures/${encodeURIComponent(e.erasure_id)}`;
      let status = await client.json<Erasure>("GET", path);
      setErasure(status);
      while (status.status !== "completed" && !stop.current) {
        await new Promise((r) => setTimeout(r, pollEvery));
        status = await client.json<Erasure>("GET", path);
        setErasure(status);
      }
    } catch (e) {
      setError(explain(e as CallError, who));
    } finally {
      setBusy("");
    }
  };

  const messages = exported ? exported.doc.conversations.reduce((n, c) => n + c.messages.length, 0) : 0;
  return (
    <div>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          void exportIt();
        }}
      >
        <div class="field">
          <label for="subject-id">Subject id</label>
          <input id="subject-id" required autocomplete="off" spellcheck={false} value={id} onInput={(e) => setId(e.currentTarget.value)} />
        </div>
        <button type="submit" disabled={!subject || !!busy}>
          Export
        </button>
        <button type="button" class="danger" disabled={!subject || !!busy} onClick={() => (reset(), setConfirm(subject))}>
          Erase…
        </button>
      </form>
      {busy && (
        <p role="status">
          <progress aria-label={busy} /> {busy}
        </p>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      {confirm && (
        <div class="confirm" role="alertdialog" aria-labelledby="erase-q" aria-describedby="erase-d">
          <p id="erase-q">
            <strong>Erase subject {confirm}?</strong>
          </p>
          <p id="erase-d">Their keys are destroyed: every message of theirs reads as erased, for everyone, for good. This cannot be undone.</p>
          <button
            ref={confirmRef}
            type="button"
            class="danger"
            onClick={() => {
              const who = confirm;
              setConfirm("");
              void eraseIt(who);
            }}
          >
            Erase {confirm} for good
          </button>{" "}
          <button type="button" class="secondary" onClick={() => setConfirm("")}>
            Cancel
          </button>
        </div>
      )}
      {exported && (
        <section aria-labelledby="export-title" class="result">
          <h3 id="export-title">Export of {exported.doc.subject.id}</h3>
          <ul>
            <li>{exported.doc.consents.length} consent records; in force: {consentText(exported.doc.consents.at(-1))}</li>
            <li>
              {exported.doc.conversations.length} conversations, {messages} messages
            </li>
            <li>
              {exported.doc.network_data.length} network data records, {exported.doc.requests.length} requests, {exported.doc.profile ? "a profile" : "no profile"}
            </li>
            <li>Exported at {new Date(exported.doc.exported_at).toLocaleString()}</li>
          </ul>
          <a class="button" href={exported.url} download={`parley-export-${exported.doc.subject.id}.json`}>
            Download the export ({Math.ceil(exported.bytes / 1024)} KB, JSON)
          </a>
        </section>
      )}
      {erasure && <ErasureView e={erasure} />}
    </div>
  );
}

function consentText(c: Export["consents"][number] | undefined): string {
  if (!c) return "none";
  const yes = (["analytics", "network_data", "ai"] as const).filter((k) => c[k]);
  return `${yes.length ? yes.join(", ") : "nothing"} (notice ${c.notice_version})`;
}

function ErasureView({ e }: { e: Erasure }) {
  const r = e.report;
  return (
    <section aria-labelledby="erasure-title" class="result">
      <h3 id="erasure-title">Erasure of {e.subject}</h3>
      {!r ? (
        <p role="status">
          <progress aria-label="Erasure in progress" /> Pending since {new Date(e.requested_at).toLocaleTimeString()}: destroying the keys and clearing every service…
        </p>
      ) : (
        <>
          <p role="status">Completed at {new Date(r.at).toLocaleString()}, in {r.duration_ms} ms.</p>
          <table>
            <caption>Completion report</caption>
            <tbody>
              <tr>
                <th scope="row">Erasure id</th>
                <td>
                  <code>{e.erasure_id}</code>
                </td>
              </tr>
              <tr>
                <th scope="row">Keys destroyed</th>
                <td>{r.keys_destroyed ? "yes" : "none were left (they had expired)"}</td>
              </tr>
              {Object.entries(r.counts ?? {}).map(([k, v]) => (
                <tr>
                  <th scope="row">{k.replace(/_/g, " ")}</th>
                  <td>{v}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
