// One metric's chart (uPlot on a canvas) with its text alternative: a
// summary that counts the suppressed buckets and a table of every point.
// A suppressed point is no value to uPlot — so the line breaks there
// instead of joining across it or dropping to zero — and a hatched band
// over its bucket.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import { format, intervalSeconds, label, type Metric, type MetricInfo } from "./metrics";

const ink = "#1b1f24";
const accent = "#0b5cad";
const grid = "#dde2e8";

export function Chart({ info, m, from, to }: { info: MetricInfo; m: Metric; from: string; to: string }) {
  const suppressed = m.points.filter((p) => p.value === null).length;
  const id = `metric-${info.name}`;
  return (
    <section class="metric" aria-labelledby={id} data-metric={info.name}>
      <h2 id={id}>{info.title}</h2>
      {m.points.length === 0 ? (
        <p class="summary empty">Nothing in this range: no facts were recorded between these times.</p>
      ) : (
        <>
          <Plot info={info} m={m} from={from} to={to} />
          <ul class="legend" aria-hidden="true">
            <li>
              <span class="swatch line" /> {info.unit}
            </li>
            {suppressed > 0 && (
              <li>
                <span class="swatch hatch" /> suppressed: fewer than {m.min_group_size} visitors
              </li>
            )}
          </ul>
          <p class="summary">{summary(info, m, suppressed)}</p>
          <details>
            <summary>Table of the points</summary>
            <table>
              <caption>
                {info.title}, by {m.interval} (UTC)
              </caption>
              <thead>
                <tr>
                  <th scope="col">{m.interval === "day" ? "Day" : "Hour"} (UTC)</th>
                  <th scope="col">Value</th>
                  <th scope="col">Count of {info.counts}</th>
                </tr>
              </thead>
              <tbody>
                {m.points.map((p) => (
                  <tr class={p.value === null ? "suppressed" : undefined}>
                    <th scope="row">{label(p.t, m.interval)}</th>
                    {p.value === null ? (
                      <td colSpan={2}>suppressed: fewer than {m.min_group_size} visitors</td>
                    ) : (
                      <>
                        <td>{format(p.value, info.unit)}</td>
                        <td>{p.count}</td>
                      </>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </section>
  );
}

function summary(info: MetricInfo, m: Metric, suppressed: number): string {
  const shown = m.points.filter((p) => p.value !== null);
  const n = m.points.length;
  let s = `${n} ${m.interval === "day" ? "day" : "hour"}${n === 1 ? "" : "s"} with facts`;
  if (shown.length > 0) {
    const values = shown.map((p) => p.value!);
    const [lo, hi] = [format(Math.min(...values), info.unit), format(Math.max(...values), info.unit)];
    const what = info.unit === "seconds" || info.unit === "score" ? "mean" : info.unit;
    s += lo === hi ? `; ${what}: ${lo}` : `; ${what} from ${lo} to ${hi}`;
  }
  s += suppressed === 0 ? "; none suppressed." : `; ${suppressed} suppressed (fewer than ${m.min_group_size} visitors), drawn hatched, not as zero.`;
  return s;
}

function Plot({ info, m, from, to }: { info: MetricInfo; m: Metric; from: string; to: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current!;
    const step = intervalSeconds[m.interval];
    // Each point sits in the middle of its bucket, inside its band.
    const xs = m.points.map((p) => Date.parse(p.t) / 1000 + step / 2);
    const ys = m.points.map((p) => p.value);
    const gaps = m.points.flatMap((p) => (p.value === null ? [Date.parse(p.t) / 1000] : []));
    const plot = new uPlot(
      {
        width: el.clientWidth || 600,
        height: 200,
        legend: { show: false },
        cursor: { show: false },
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales: {
          x: { time: true, range: () => [Date.parse(from) / 1000, Date.parse(to) / 1000] },
          // A score's scale is fixed; a count's or a time's starts at zero.
          y: { range: (_u, _min, max) => [0, "top" in info ? info.top : max > 0 && isFinite(max) ? max * 1.15 : 1] },
        },
        axes: [
          { stroke: ink, grid: { stroke: grid } },
          { stroke: ink, grid: { stroke: grid }, size: 60 },
        ],
        series: [{}, { label: info.unit, stroke: accent, width: 2, spanGaps: false, points: { show: true, size: 7, fill: accent } }],
        hooks: { drawClear: [(u) => hatch(u, gaps, step)] },
      },
      [xs, ys],
      el,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: el.clientWidth || 600, height: 200 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [m, from, to]);
  return <div class="plot" ref={box} aria-hidden="true" />;
}

// hatch draws a grey hatched band over each suppressed bucket, under the series.
function hatch(u: uPlot, starts: number[], step: number) {
  if (starts.length === 0) return;
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  const tile = document.createElement("canvas");
  tile.width = tile.height = 8 * devicePixelRatio;
  const t = tile.getContext("2d")!;
  t.fillStyle = "#eceff3";
  t.fillRect(0, 0, tile.width, tile.height);
  t.strokeStyle = "#6b7480";
  t.lineWidth = devicePixelRatio;
  t.beginPath();
  t.moveTo(0, tile.height);
  t.lineTo(tile.width, 0);
  t.stroke();
  ctx.save();
  ctx.fillStyle = ctx.createPattern(tile, "repeat")!;
  for (const s of starts) {
    const x0 = Math.max(left, u.valToPos(s, "x", true));
    const x1 = Math.min(left + width, u.valToPos(s + step, "x", true));
    // At least a few pixels wide, so that an hour in thirty days still shows.
    const w = Math.max(x1 - x0, 4 * devicePixelRatio);
    ctx.fillRect(x0, top, w, height);
  }
  ctx.restore();
}
