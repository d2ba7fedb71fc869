// The agent's presence: available (the API's "online") or away, what
// assignments go by. It changes only when the agent chooses, or signs out
// (staff/session.ts signOut): leaving or reloading the page keeps it, as a
// reload must not make the agent away.
import { useEffect, useState } from "preact/hooks";
import { client } from "../staff/session";

export type Availability = { status: "online" | "away"; open: number; max_open: number | null };

export function Presence({ me }: { me: string }) {
  const [status, setStatus] = useState<"online" | "away" | "">("");
  const [error, setError] = useState("");

  useEffect(() => {
    client
      .json<Availability>("GET", `/v1/agents/${encodeURIComponent(me)}`)
      .then((a) => setStatus(a.status))
      .catch((e: Error) => setError(e.message));
  }, [me]);

  const set = (to: "online" | "away") => {
    setError("");
    client
      .json<Availability>("PUT", "/v1/me/presence", { status: to })
      .then((a) => setStatus(a.status))
      .catch((e: Error) => setError(e.message));
  };

  return (
    <div class="presence">
      <label for="presence">Presence</label>
      <select id="presence" value={status} disabled={!status} onChange={(e) => set(e.currentTarget.value as "online" | "away")}>
        <option value="online">Available</option>
        <option value="away">Away</option>
      </select>
      {error && (
        <span role="alert" class="error">
          {error}
        </span>
      )}
    </div>
  );
}

/** availability says how an agent stands, for the conversation's facts. */
export function availability(a: Availability): string {
  const load = a.max_open === null ? `${a.open} open` : `${a.open} of ${a.max_open} open`;
  return `${a.status === "online" ? "available" : "away"}, ${load}`;
}
