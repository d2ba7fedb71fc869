// The agent's presence: available (the API's "online") or away, what
// assignments go by. Presence does not lapse when the agent disconnects, so
// the console sets "away" as its page is left.
import { useEffect, useState } from "preact/hooks";
import { client } from "../staff/session";

type Availability = { status: "online" | "away"; open: number; max_open: number | null };

export function Presence({ me }: { me: string }) {
  const [status, setStatus] = useState<"online" | "away" | "">("");
  const [error, setError] = useState("");

  useEffect(() => {
    client
      .json<Availability>("GET", `/v1/agents/${encodeURIComponent(me)}`)
      .then((a) => setStatus(a.status))
      .catch((e: Error) => setError(e.message));
  }, [me]);

  useEffect(() => {
    if (status !== "online") return;
    const leave = () => {
      // keepalive: the request outlives the page.
      void fetch("/v1/me/presence", {
        method: "PUT",
        keepalive: true,
        headers: { Authorization: `Bearer ${client.token()}`, "Content-Type": "application/json" },
        body: JSON.stringify({ status: "away" }),
      });
    };
    addEventListener("pagehide", leave);
    return () => removeEventListener("pagehide", leave);
  }, [status]);

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
