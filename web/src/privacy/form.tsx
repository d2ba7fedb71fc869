// What the privacy page's forms share: the API's 422 detail split over the
// fields it names, a labelled field with its own error, and a saved-state line.
import type { ComponentChildren } from "preact";

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
