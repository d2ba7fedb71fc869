// The analytics dashboard, for analysts and admins: every metric of
// GET /v1/metrics/{name} over a chosen range and interval. It stores nothing
// in the browser beyond the staff session.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "uplot/dist/uPlot.min.css";
import { CallError, explain } from "./client";
import { Chart } from "./dashboard/chart";
import { fromInput, metrics, presetRange, presets, type Interval, type Metric, type Range } from "./dashboard/metrics";
import { client } from "./staff/session";
import { Shell } from "./staff/shell";
import "./staff/staff.css";
import "./dashboard/dashboard.css";

type Answer = { name: string; metric?: Metric; error?: CallError };
type Shown = { range: { from: string; to: string }; answers: Answer[] };

function Page() {
  const first = presets[0];
  const [preset, setPreset] = useState(first.id);
  const [range, setRange] = useState<Range>(() => presetRange(first.hours, first.interval));
  const [busy, setBusy] = useState(false);
  const [shown, setShown] = useState<Shown | null>(null);

  const load = async (r: Range) => {
    setBusy(true);
    const from = fromInput(r.from);
    const to = fromInput(r.to);
    const q = new URLSearchParams({ from, to, interval: r.interval });
    const answers = await Promise.all(
      metrics.map(({ name }) =>
        client.json<Metric>("GET", `/v1/metrics/${name}?${q}`).then(
          (metric): Answer => ({ name, metric }),
          (e): Answer => ({ name, error: e instanceof CallError ? e : new CallError(0, `The gateway could not be reached: ${(e as Error).message}`) }),
        ),
      ),
    );
    setShown({ range: { from, to }, answers });
    setBusy(false);
  };

  useEffect(() => void load(range), []);

  const choose = (id: string) => {
    setPreset(id);
    const p = presets.find((x) => x.id === id);
    if (!p) return;
    const r = presetRange(p.hours, p.interval);
    setRange(r);
    void load(r);
  };
  const edit = (change: Partial<Range>) => {
    setPreset("custom");
    setRange({ ...range, ...change });
  };

  const failed = shown?.answers.filter((a) => a.error) ?? [];
  // The same problem for every metric (a bad range, analytics not running) is said once.
  const shared = failed.length === metrics.length && failed.every((a) => a.error!.status === failed[0].error!.status) ? failed[0].error! : null;

  return (
    <>
      <h1>Dashboard</h1>
      <form
        class="range"
        aria-label="Range and interval"
        onSubmit={(e) => {
          e.preventDefault();
          void load(range);
        }}
      >
        <div class="field">
          <label for="preset">Range</label>
          <select id="preset" value={preset} onChange={(e) => choose(e.currentTarget.value)}>
            {presets.map((p) => (
              <option value={p.id}>{p.label}</option>
            ))}
            <option value="custom">Custom</option>
          </select>
        </div>
        <div class="field">
          <label for="from">From (UTC)</label>
          <input id="from" type="datetime-local" required value={range.from} onInput={(e) => edit({ from: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="to">To (UTC)</label>
          <input id="to" type="datetime-local" required value={range.to} onInput={(e) => edit({ to: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="interval">Interval</label>
          <select id="interval" value={range.interval} onChange={(e) => edit({ interval: e.currentTarget.value as Interval })}>
            <option value="hour">Hour</option>
            <option value="day">Day</option>
          </select>
        </div>
        <button type="submit" disabled={busy}>
          Show
        </button>
      </form>
      <p role="status" class="hint">
        {busy ? "Loading the metrics…" : shown ? "Points with fewer distinct visitors than the tenant's minimum group size are suppressed." : ""}
      </p>
      {shared ? (
        <p role="alert" class="error">
          {explain(shared, refusals)}
        </p>
      ) : (
        shown && (
          <div class="charts" aria-busy={busy}>
            {metrics.map((info) => {
              const a = shown.answers.find((x) => x.name === info.name)!;
              return a.metric ? (
                <Chart info={info} m={a.metric} from={shown.range.from} to={shown.range.to} />
              ) : (
                <section class="metric" aria-label={info.title}>
                  <h2>{info.title}</h2>
                  <p role="alert" class="error">
                    {explain(a.error, refusals)}
                  </p>
                </section>
              );
            })}
          </div>
        )
      )}
    </>
  );
}

// What the metrics API's problems mean, and what to do about them.
const refusals = {
  422: (d: string) => `The range was refused: ${d}`,
  503: (d: string) => `Analytics is not available (ClickHouse is not running or not reachable): ${d}`,
  403: (d: string) => `Your role may not read the metrics: ${d}`,
};

render(<Shell path="/dashboard">{() => <Page />}</Shell>, document.getElementById("app")!);
