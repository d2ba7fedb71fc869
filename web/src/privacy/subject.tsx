// Export or erase a data subject by id (admin). The export is offered as a
// JSON file from a Blob URL, with a summary; the erasure is confirmed, then
// followed until the privacy service completes it, and its report shown.
import { useEffect, useRef, useState } from "preact/hooks";
import { CallError, explain } from "../client";
import { useFileURL } from "../download";
import { ErasureReport, follow, type Erasure } from "../erasure";
import { client } from "../staff/session";
import { counted } from "./counted";

type Export = {
  subject: { id: string };
  exported_at: string;
  consents: { analytics: boolean; network_data: boolean; ai: boolean; notice_version: string; at: string }[];
  network_data: unknown[];
  requests: unknown[];
  profile: unknown;
  conversations: { messages: unknown[] }[];
};

/** What the API's refusals mean for a subject, in the page's words. */
const refusals = (id: string) => ({
  404: () => `There is no subject ${id} in this tenant.`,
  410: () => `Subject ${id} was erased: nothing is held about them.`,
});

export function SubjectTools() {
  const [id, setId] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState("");
  const [exported, setExported] = useState<{ doc: Export; blob: Blob } | null>(null);
  const [confirm, setConfirm] = useState("");
  const [erasure, setErasure] = useState<Erasure | null>(null);
  const [followed, setFollowed] = useState(false);
  const exportURL = useFileURL(exported?.blob ?? null);
  const stop = useRef(false);
  const confirmRef = useRef<HTMLButtonElement>(null);

  useEffect(() => () => void (stop.current = true), []);
  useEffect(() => {
    if (confirm) confirmRef.current?.focus();
  }, [confirm]);

  const subject = id.trim();
  const reset = () => {
    setError("");
    setExported(null);
    setErasure(null);
    setFollowed(false);
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
      setExported({ doc, blob: new Blob([text], { type: "application/json" }) });
    } catch (e) {
      setError(explain(e, refusals(subject)));
    } finally {
      setBusy("");
    }
  };

  const eraseIt = async (who: string) => {
    reset();
    setBusy(`Erasing ${who}…`);
    try {
      const e = await client.json<Erasure>("POST", `/v1/subjects/${encodeURIComponent(who)}/erase`, {});
      await follow(client, e.erasure_id, setErasure, () => stop.current);
      setFollowed(true);
    } catch (e) {
      setError(explain(e, refusals(who)));
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
            <li>
              {counted(exported.doc.consents.length, "consent record")}; in force: {consentText(exported.doc.consents.at(-1))}
            </li>
            <li>
              {counted(exported.doc.conversations.length, "conversation")}, {counted(messages, "message")}
            </li>
            <li>
              {counted(exported.doc.network_data.length, "network data record")}, {counted(exported.doc.requests.length, "request")},{" "}
              {exported.doc.profile ? "a profile" : "no profile"}
            </li>
            <li>Exported at {new Date(exported.doc.exported_at).toLocaleString()}</li>
          </ul>
          <a class="button" href={exportURL} download={`parley-export-${exported.doc.subject.id}.json`}>
            Download the export ({Math.ceil(exported.blob.size / 1024)} KB, JSON)
          </a>
        </section>
      )}
      {erasure && <ErasureReport e={erasure} title={`Erasure of ${erasure.subject}`} done={followed} />}
    </div>
  );
}

function consentText(c: Export["consents"][number] | undefined): string {
  if (!c) return "none";
  const yes = (["analytics", "network_data", "ai"] as const).filter((k) => c[k]);
  return `${yes.length ? yes.join(", ") : "nothing"} (notice ${c.notice_version})`;
}
