// The metrics of GET /v1/metrics/{name} and the range a dashboard asks for.

export type Interval = "hour" | "day";

/** A point of a metric: value and count are null when it is suppressed. */
export type Point = { t: string; value: number | null; count: number | null };

export type Metric = { metric: string; interval: Interval; min_group_size: number; points: Point[] };

/** The metrics the dashboard charts, in the order it shows them. */
export const metrics = [
  { name: "conversations", title: "Conversations opened", unit: "conversations", counts: "conversations" },
  { name: "messages", title: "Messages posted", unit: "messages", counts: "messages" },
  { name: "first_response_seconds", title: "Mean first response", unit: "seconds", counts: "responses" },
  { name: "resolution_seconds", title: "Mean resolution time", unit: "seconds", counts: "conversations closed" },
  { name: "csat", title: "Satisfaction (mean rating, 1 to 5)", unit: "score", counts: "ratings", top: 5 },
] as const;

export type MetricInfo = (typeof metrics)[number];

export type Range = { from: string; to: string; interval: Interval };

/** The presets: the last so many hours, each with the interval that suits it. */
export const presets = [
  { id: "24h", label: "Last 24 hours", hours: 24, interval: "hour" as Interval },
  { id: "7d", label: "Last 7 days", hours: 24 * 7, interval: "day" as Interval },
  { id: "30d", label: "Last 30 days", hours: 24 * 30, interval: "day" as Interval },
];

export const intervalSeconds: Record<Interval, number> = { hour: 3600, day: 86400 };

/**
 * presetRange is the range of a preset ending at the end of the current
 * bucket, so that the current hour's or day's point is in it. The inputs
 * speak UTC, as the buckets are aligned on UTC.
 */
export function presetRange(hours: number, interval: Interval, now = new Date()): Range {
  const step = intervalSeconds[interval] * 1000;
  const end = Math.ceil((now.getTime() + 1) / step) * step;
  return { from: toInput(new Date(end - hours * 3600 * 1000)), to: toInput(new Date(end)), interval };
}

/** toInput is a time as a datetime-local input's value, in UTC. */
export function toInput(d: Date): string {
  return d.toISOString().slice(0, 16);
}

/** fromInput reads a datetime-local input's value as UTC; an empty or bad one gives "". */
export function fromInput(v: string): string {
  const d = new Date(v + ":00Z");
  return isNaN(d.getTime()) ? "" : d.toISOString().replace(".000Z", "Z");
}

/** label is a bucket's start as people read it, in UTC. */
export function label(t: string, interval: Interval): string {
  const iso = new Date(t).toISOString();
  return interval === "day" ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

/** format is a point's value as people read it. */
export function format(v: number, unit: string): string {
  if (unit === "seconds" && v < 1) return `${Math.round(v * 1000)} ms`;
  if (unit === "seconds") return v < 90 ? `${v.toFixed(1)} s` : `${(v / 60).toFixed(1)} min`;
  if (unit === "score") return v.toFixed(2);
  return String(Math.round(v));
}
