// An erasure followed to its end and its completion report: the widget's
// "erase me" (the visitor, with their own token) and the privacy page's
// erasure of a subject by id (an admin) show the same.
import { retryDelay, sleep, type Client } from "./client";

export type Erasure = {
  erasure_id: string;
  subject?: string;
  status: string;
  requested_at?: string;
  completed_at?: string | null;
  report?: { keys_destroyed: boolean; at: string; duration_ms: number; counts?: Record<string, number> } | null;
};

// Polls of a pending erasure, waiting longer each time (0.5 s doubling, at
// most 15 s): about a minute and a half, then the page says it is pending.
const polls = 10;

/**
 * follow reads the erasure until it completes, handing each answer to
 * onUpdate; it answers the last, pending still if it did not complete in
 * time or stop() said the page is gone.
 */
export async function follow(client: Client, id: string, onUpdate: (e: Erasure) => void, stop: () => boolean = () => false): Promise<Erasure> {
  const path = `/v1/erasures/${encodeURIComponent(id)}`;
  let e = await client.json<Erasure>("GET", path);
  onUpdate(e);
  for (let n = 1; e.status !== "completed" && n <= polls && !stop(); n++) {
    await sleep(retryDelay(n) / 2);
    e = await client.json<Erasure>("GET", path);
    onUpdate(e);
  }
  return e;
}

/** ErasureReport shows an erasure: pending, or completed with its report. */
export function ErasureReport({ e, title, done }: { e: Erasure; title: string; done: boolean }) {
  const r = e.report;
  return (
    <section aria-labelledby="erasure-title" class="result">
      <h3 id="erasure-title">{title}</h3>
      {!r ? (
        done ? (
          <p role="status">
            Still pending: the erasure goes on without this page. Its id is <code>{e.erasure_id}</code>; check it again later.
          </p>
        ) : (
          <p role="status">
            <progress aria-label="Erasure in progress" /> Pending
            {e.requested_at ? ` since ${new Date(e.requested_at).toLocaleTimeString()}` : ""}: destroying the keys and clearing every service…
          </p>
        )
      ) : (
        <>
          <p role="status">
            Completed at {new Date(r.at).toLocaleString()}, in {r.duration_ms} ms.
          </p>
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
                <tr key={k}>
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
