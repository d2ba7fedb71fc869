// What the privacy page's forms share: the API's 422 detail split over the
// fields it names, a labelled field with its own error, and a saved-state line.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import type { CallError } from "../client";
import { client } from "../staff/session";

/**
 * byField splits a problem's detail — one refusal a line, each naming its
 * field first, as the API writes them — over fields; lines that name none
 * go under "".
 */
export function byField(detail: string, fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of detail.split("\n")) {
    const f = fields.find((f) => new RegExp(`(^|[\\s:])${f}\\b`).test(line)) ?? "";
    out[f] = out[f] ? `${out[f]} ${line}` : line;
  }
  return out;
}

/** Field is a labelled control with its hint and its error, tied by aria-describedby. */
export function Field(props: { id: string; label: string; hint?: string; error?: string; children: (describedBy: string | undefined) => ComponentChildren }) {
  const { id, label, hint, error } = props;
  const ids = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(" ") || undefined;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {props.children(ids)}
      {hint && (
        <span class="hint" id={`${id}-hint`}>
          {hint}
        </span>
      )}
      {error && (
        <span class="error" id={`${id}-error`}>
          {error}
        </span>
      )}
    </div>
  );
}

/**
 * useSave PUTs a form's body: busy while it goes, then "Saved at …", or the
 * API's refusal — a 422 split over fields, anything else under "".
 */
export function useSave<T>(fields: string[]) {
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [status, setStatus] = useState("");
  const save = async (path: string, body: unknown, then: (stored: T) => void) => {
    setBusy(true);
    setStatus("");
    try {
      then(await client.json<T>("PUT", path, body));
      setErrors({});
      setStatus(`Saved at ${new Date().toLocaleTimeString()}.`);
    } catch (err) {
      const e = err as CallError;
      setErrors(e.status === 422 ? byField(e.message, fields) : { "": e.message });
    } finally {
      setBusy(false);
    }
  };
  return { busy, errors, setErrors, status, setStatus, save };
}
