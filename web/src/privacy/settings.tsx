// The tenant's settings (GET/PUT /v1/settings): checked here by the rules
// the privacy service applies, and its 422 shown next to the field it names.
// Every field GET answered is sent back, shown or not.
import { useEffect, useState } from "preact/hooks";
import { client } from "../staff/session";
import { Field, useSave } from "./form";

type Settings = Record<string, unknown> & {
  retention_days: number;
  collect_network_data: boolean;
  erase_after_close_hours: number;
  notice_text: string;
  notice_version: string;
};

type Num = { key: string; label: string; hint: string; check: (n: number) => string };

const range = (lo: number, hi: number, what: string) => (n: number) => (n >= lo && n <= hi ? "" : `must be ${what}`);

// The rules of services/privacy's validSettings, in its words.
const numbers: Num[] = [
  { key: "retention_days", label: "Retention (days)", hint: "How long conversations are kept: 1 to 3650.", check: range(1, 3650, "1 to 3650") },
  { key: "erase_after_close_hours", label: "Erase after close (hours)", hint: "Erase each conversation this long after it closes, unless the visitor chose otherwise; 0 = never.", check: range(0, 8760, "0 (off) to 8760") },
  {
    key: "min_group_size",
    label: "Minimum group size",
    hint: "The fewest visitors a metric's point may stand for; 0 = the default of 5, else 5 to 1000.",
    check: (n) => (n === 0 || (n >= 5 && n <= 1000) ? "" : "must be 0 (the default) or 5 to 1000"),
  },
  { key: "open_conversations_per_visitor", label: "Open conversations per visitor", hint: "0 = the default of 5, at most 10000.", check: range(0, 10000, "0 (the default of 5) to 10000") },
  { key: "messages_per_conversation_per_minute", label: "Messages per conversation per minute", hint: "0 = the default of 60, at most 100000.", check: range(0, 100000, "0 (the default of 60) to 100000") },
];

const fields = [...numbers.map((n) => n.key), "collect_network_data", "notice_text", "notice_version"];

const chars = (s: string) => Array.from(s).length;

/** check answers the refusal of each field of s that breaks a rule. */
function check(draft: Record<string, string>): Record<string, string> {
  const errs: Record<string, string> = {};
  for (const n of numbers) {
    const v = draft[n.key];
    const why = /^-?\d+$/.test(v) ? n.check(Number(v)) : "must be a whole number";
    if (why) errs[n.key] = `${n.key} ${why}`;
  }
  if (chars(draft.notice_text) > 4000) errs.notice_text = "notice_text must be at most 4000 UTF-8 characters";
  if (chars(draft.notice_version) > 64) errs.notice_version = "notice_version must be at most 64 UTF-8 characters";
  return errs;
}

function draftOf(s: Settings): Record<string, string> {
  const d: Record<string, string> = {};
  for (const n of numbers) d[n.key] = String(s[n.key] ?? 0);
  d.notice_text = s.notice_text ?? "";
  d.notice_version = s.notice_version ?? "";
  return d;
}

export function SettingsForm() {
  const [saved, setSaved] = useState<Settings | null>(null);
  const [draft, setDraft] = useState<Record<string, string>>({});
  const [network, setNetwork] = useState(false);
  const { busy, errors, setErrors, status, setStatus, save } = useSave<Settings>(fields);

  const load = (s: Settings) => {
    setSaved(s);
    setDraft(draftOf(s));
    setNetwork(s.collect_network_data);
  };
  useEffect(() => {
    client
      .json<Settings>("GET", "/v1/settings")
      .then(load)
      .catch((e: Error) => setErrors({ "": e.message }));
  }, []);

  if (!saved) {
    return errors[""] ? <p role="alert" class="error">{errors[""]}</p> : <p aria-busy="true">Loading the settings…</p>;
  }
  const changed = JSON.stringify(draftOf(saved)) !== JSON.stringify(draft) || network !== saved.collect_network_data;
  const set = (k: string) => (e: Event) => setDraft({ ...draft, [k]: (e.currentTarget as HTMLInputElement).value });

  const submit = async (e: Event) => {
    e.preventDefault();
    const errs = check(draft);
    setErrors(errs);
    setStatus("");
    if (Object.keys(errs).length) {
      document.getElementById(`set-${Object.keys(errs)[0]}`)?.focus();
      return;
    }
    const body: Record<string, unknown> = { ...saved, collect_network_data: network, notice_text: draft.notice_text, notice_version: draft.notice_version };
    for (const n of numbers) body[n.key] = Number(draft[n.key]);
    await save("/v1/settings", body, load);
  };

  return (
    <form onSubmit={submit} noValidate aria-labelledby="settings-title">
      {errors[""] && <p role="alert" class="error">{errors[""]}</p>}
      <div class="grid">
        {numbers.map((n) => (
          <Field id={`set-${n.key}`} label={n.label} hint={n.hint} error={errors[n.key]}>
            {(d) => <input id={`set-${n.key}`} inputMode="numeric" value={draft[n.key]} onInput={set(n.key)} aria-describedby={d} aria-invalid={errors[n.key] ? "true" : undefined} />}
          </Field>
        ))}
        <div class="field check">
          <input id="set-collect_network_data" type="checkbox" checked={network} onChange={(e) => setNetwork(e.currentTarget.checked)} aria-describedby="set-collect_network_data-hint" />
          <label for="set-collect_network_data">Collect network data</label>
          <span class="hint" id="set-collect_network_data-hint">
            The /24 network and browser family of visitors who consent to it.
          </span>
          {errors.collect_network_data && <span class="error">{errors.collect_network_data}</span>}
        </div>
      </div>
      <h3>Privacy notice</h3>
      <Field id="set-notice_text" label="Notice text" hint={`Plain text shown to visitors before they choose, ${chars(draft.notice_text)} of 4000 characters; empty: the widget's own wording.`} error={errors.notice_text}>
        {(d) => <textarea id="set-notice_text" rows={5} value={draft.notice_text} onInput={set("notice_text")} aria-describedby={d} aria-invalid={errors.notice_text ? "true" : undefined} />}
      </Field>
      <Field id="set-notice_version" label="Notice version" hint="Recorded with each visitor's consent; change it when the text changes. Empty: 1." error={errors.notice_version}>
        {(d) => <input id="set-notice_version" value={draft.notice_version} onInput={set("notice_version")} aria-describedby={d} aria-invalid={errors.notice_version ? "true" : undefined} />}
      </Field>
      <div class="actions">
        <button type="submit" disabled={busy}>
          Save settings
        </button>
        <button type="button" class="secondary" disabled={!changed || busy} onClick={() => (load(saved), setErrors({}), setStatus(""))}>
          Undo changes
        </button>
        <span role="status" class="hint">
          {busy ? "Saving…" : changed ? "Unsaved changes." : status || "Saved."}
        </span>
      </div>
    </form>
  );
}
