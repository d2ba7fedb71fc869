// The tenant's audit trail (admin, auditor), read whole (GET /v1/audit, page
// after page) and verified here as `parley audit verify` does: its hash
// chain, then Parley's signed checkpoint (GET /v1/audit/checkpoint) and, when
// the auditor pastes one saved earlier, theirs; with a public key the auditor
// trusts, when given, rather than the one Parley answers.
import { useEffect, useState } from "preact/hooks";
import { useFileURL } from "../download";
import { client } from "../staff/session";
import { counted } from "./counted";
import { checkCheckpoint, goTime, parseSaved, verifyChain, type CheckpointAnswer, type CheckpointResult, type ChainBreak, type Entry } from "./verify";

/**
 * readTrail reads every entry, oldest first; since repeats the last
 * instant's entries. A page that brings nothing new while more are said to
 * follow is a whole page of one instant: since cannot page within an
 * instant, and stopping there would report the trail shorter than it is.
 */
async function readTrail(onProgress: (n: number) => void): Promise<Entry[]> {
  const entries: Entry[] = [];
  const seen = new Set<string>();
  let since = "";
  for (;;) {
    const q = since ? `?since=${encodeURIComponent(since)}` : "";
    const page = await client.json<{ entries: Entry[]; more: boolean }>("GET", `/v1/audit${q}`);
    let added = 0;
    for (const e of page.entries) {
      if (seen.has(e.hash)) continue;
      seen.add(e.hash);
      entries.push(e);
      added++;
    }
    onProgress(entries.length);
    if (!page.more) return entries;
    if (added === 0) {
      throw new Error(
        `more entries than a page (${page.entries.length}) share the instant ${goTime(since)}: GET /v1/audit pages by time and cannot read past them, so the trail cannot be read whole here; check it with \`parley audit verify\`, which reads it whole`,
      );
    }
    since = entries[entries.length - 1].at;
  }
}

/** A checkpoint's result, and which key checked it. */
type Checked = CheckpointResult & { using: string };

/**
 * keyFor chooses the key that checks a checkpoint — the one the auditor
 * gives, else the one saved with it, else the one Parley answers now — and
 * says which, and whether Parley's differs.
 */
function keyFor(known: string, saved: string | null, answered: string | null): { key: string | null; using: string } {
  if (known) {
    const same = known === answered ? "the same Parley answers" : `Parley answers another key${answered ? ` (${answered})` : ""}`;
    return { key: known, using: `checked with the key you gave; ${same}` };
  }
  if (saved) return { key: saved, using: "checked with the key saved with it" };
  return { key: answered, using: "checked with the key Parley answers now" };
}

type Report = {
  entries: Entry[];
  broken: ChainBreak | null;
  checkpoints: Checked[];
  noCheckpoint: boolean;
  key: string | null;
  /** A Blob URL of the checkpoint's answer as it came, for the auditor to save. */
  answer: Blob;
};

const shown = 50;

export function AuditTrail({ tenant }: { tenant: string }) {
  const [report, setReport] = useState<Report | null>(null);
  const answerURL = useFileURL(report?.answer ?? null);
  const [progress, setProgress] = useState("");
  const [error, setError] = useState("");
  const [all, setAll] = useState(false);
  const [pasted, setPasted] = useState("");
  const [saved, setSaved] = useState<Checked | null>(null);
  const [knownKey, setKnownKey] = useState("");
  const [savedNote, setSavedNote] = useState("");
  const [savedError, setSavedError] = useState("");

  const verify = async () => {
    setError("");
    setSaved(null);
    setSavedError("");
    setProgress("Reading the audit trail…");
    try {
      const entries = await readTrail((n) => setProgress(`Reading the audit trail: ${counted(n, "entry")}…`));
      const answer = await client.json<CheckpointAnswer>("GET", "/v1/audit/checkpoint");
      setProgress(`Verifying ${counted(entries.length, "entry")}…`);
      const broken = await verifyChain(entries);
      const checkpoints: Checked[] = [];
      const { key, using } = keyFor(knownKey.trim(), null, answer.public_key);
      if (!broken && answer.checkpoint && key) {
        checkpoints.push({ ...(await checkCheckpoint("Parley's checkpoint", entries, answer.checkpoint, key, tenant)), using });
      }
      const blob = new Blob([JSON.stringify(answer)], { type: "application/json" });
      setReport({ entries, broken, checkpoints, noCheckpoint: !answer.checkpoint, key: answer.public_key, answer: blob });
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setProgress("");
    }
  };
  useEffect(() => void verify(), []);

  const checkSaved = async (e: Event) => {
    e.preventDefault();
    setSaved(null);
    setSavedNote("");
    setSavedError("");
    if (!report) return;
    try {
      const a = parseSaved(pasted);
      if (!a.checkpoint) throw new Error("the saved answer holds no checkpoint (nothing was audited when it was saved)");
      const { key, using } = keyFor(knownKey.trim(), a.public_key, report.key);
      if (!key) throw new Error("there is a checkpoint to check and no public key");
      if (report.broken) throw new Error("the chain itself is broken: see above");
      setSaved({ ...(await checkCheckpoint("Your saved checkpoint", report.entries, a.checkpoint, key, tenant)), using });
      if (a.public_key && report.key && a.public_key !== report.key) setSavedNote("The audit key Parley answers now is not the one saved with it: it was replaced since.");
    } catch (err) {
      setSavedError((err as Error).message);
    }
  };

  const entries = report?.entries ?? [];
  const rows = (all ? entries : entries.slice(-shown)).slice().reverse();
  return (
    <div>
      <div class="actions">
        <button type="button" class="secondary" onClick={() => void verify()} disabled={!!progress}>
          Read and verify again
        </button>
        {progress && (
          <span role="status">
            <progress aria-label={progress} /> {progress}
          </span>
        )}
      </div>
      <div class="paste">
        <label for="known-key">A public key you trust, to check the checkpoints with (base64; saved earlier or given by your operator; optional)</label>
        <input id="known-key" spellcheck={false} autocomplete="off" value={knownKey} onInput={(e) => setKnownKey(e.currentTarget.value)} aria-describedby="known-key-hint" />
        <p class="hint" id="known-key-hint">
          Without one, the checkpoint is checked with the key Parley answers: that shows the trail is as Parley signed it, not that Parley's key is the one you trust.
        </p>
      </div>
      {error && <p role="alert" class="error">{error}</p>}
      {report && <Verdict r={report} />}
      {report && (
        <form class="paste" onSubmit={checkSaved}>
          <label for="saved-checkpoint">A checkpoint you saved earlier (the answer of GET /v1/audit/checkpoint, JSON)</label>
          <textarea id="saved-checkpoint" rows={4} spellcheck={false} value={pasted} onInput={(e) => setPasted(e.currentTarget.value)} />
          <div class="actions">
            <button type="submit" disabled={!pasted.trim()}>
              Check the trail holds it
            </button>
            <a class="button secondary" href={answerURL} download={`parley-audit-checkpoint-${tenant}.json`}>
              Save Parley's checkpoint
            </a>
          </div>
          {savedError && <p role="alert" class="error">Saved checkpoint: {savedError}</p>}
          {saved && <CheckpointLine c={saved} />}
          {savedNote && <p class="hint">{savedNote}</p>}
        </form>
      )}
      {report && (
        <table class="audit">
          <caption>
            {all || entries.length <= shown ? `All ${counted(entries.length, "entry")}` : `The newest ${shown} of ${entries.length} entries`}, newest first
          </caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">Hash</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((e) => {
              const n = entries.indexOf(e) + 1;
              return (
                <tr class={report.broken?.entry === e ? "broken" : undefined}>
                  <td>{n}</td>
                  <td>
                    <time dateTime={e.at}>{new Date(e.at).toLocaleString()}</time>
                  </td>
                  <td>
                    {e.actor.role}/{e.actor.id}
                  </td>
                  <td>{e.action}</td>
                  <td class="target">{e.target}</td>
                  <td>
                    <code title={e.hash}>{e.hash.slice(0, 12)}…</code>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {report && !all && entries.length > shown && (
        <button type="button" class="secondary" onClick={() => setAll(true)}>
          Show all {counted(entries.length, "entry")}
        </button>
      )}
    </div>
  );
}

function Verdict({ r }: { r: Report }) {
  const n = r.entries.length;
  if (r.broken) {
    const e = r.broken.entry;
    return (
      <div class="verdict bad" role="alert">
        <p>
          <strong>
            Not verified: {counted(n, "entry")}, chain BROKEN at entry {r.broken.index + 1} of {n}
          </strong>
        </p>
        <p>
          {goTime(e.at)} {e.action} by {e.actor.role}/{e.actor.id} on {e.target}: {r.broken.reason}
        </p>
      </div>
    );
  }
  const failed = r.checkpoints.find((c) => c.state !== "held");
  const head = n ? r.entries[n - 1].hash : "none";
  return (
    <div class={`verdict ${failed ? "bad" : "good"}`} role={failed ? "alert" : "status"}>
      <p>
        <strong>
          {failed
            ? failed.state === "missing"
              ? `Not verified: ${counted(n, "entry")}, chain intact up to its end, but entries a checkpoint counts are MISSING`
              : `Not verified: ${counted(n, "entry")}, chain intact, but a checkpoint is REFUSED`
            : r.checkpoints.length
              ? `Verified: ${counted(n, "entry")}, head ${head}, checkpoint signed at ${goTime(r.checkpoints[0].cp.at)}`
              : `Verified: ${counted(n, "entry")}, head ${head}, chain intact`}
        </strong>
      </p>
      {r.checkpoints.map((c) => (
        <CheckpointLine c={c} />
      ))}
      {r.noCheckpoint && (
        <p class="hint">
          No checkpoint yet: a trail deleted whole, or cut off at its end, cannot be detected without one. Save Parley's checkpoint now and then, outside Parley, and paste it here to check.
        </p>
      )}
    </div>
  );
}

function CheckpointLine({ c }: { c: Checked }) {
  const at = goTime(c.cp.at).replace(/\.\d+Z$/, "Z");
  switch (c.state) {
    case "held":
      return (
        <p class="good" role="status">
          {c.name} ({counted(c.cp.count, "entry")}, {at}): held; {c.using}
        </p>
      );
    case "refused":
      return (
        <p class="error" role="alert">
          {c.name}: REFUSED: {c.why}; {c.using}
        </p>
      );
    default:
      return (
        <p class="error" role="alert">
          {c.name}: ENTRIES MISSING: {c.why}; {c.using}
        </p>
      );
  }
}
