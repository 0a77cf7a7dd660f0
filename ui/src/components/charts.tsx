// Charts of the app, drawn with Recharts: SVG, React components, axes that format their own
// ticks, tooltips and reference lines, and well kept. (uPlot is faster on 100,000 points but draws
// on a canvas a test cannot read; our series have a point per backup or per measurement.)
import { Bar, CartesianGrid, ComposedChart, Line, LineChart, ReferenceLine, Tooltip, XAxis, YAxis } from "recharts";
import { formatFileSize } from "./format";

/** A tick's date: day and month in the user's locale (the tooltip gives the whole date). */
function day(ms: number): string {
  return new Date(ms).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

/** Ticks for a span of time: hours and minutes within two days, days beyond. */
function ticksFor(first: number, last: number): (ms: number) => string {
  return last - first < 2 * 86_400_000 ? (ms) => new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }) : day;
}

/** A size as an axis says it: at most one decimal (the tooltip gives two). */
function axisSize(bytes: number): string {
  if (bytes === 0) return "0";
  const units = ["B", "KB", "MB", "GB", "TB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(bytes) / Math.log(1024)));
  const v = bytes / Math.pow(1024, i);
  return `${v >= 10 ? Math.round(v) : Math.round(v * 10) / 10} ${units[i]}`;
}

function moment(ms: number): string {
  return new Date(ms).toLocaleString();
}

/** Seconds as a tick or a tooltip says them: 45 s, 3.5 min, 1.2 h. */
export function formatSeconds(s: number): string {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round((s / 60) * 10) / 10} min`;
  return `${Math.round((s / 3600) * 10) / 10} h`;
}

export type GrowthPoint = { at: string; used: number };

/** Used space over time, with the storage's capacity as a line when it has one. */
export function UsageChart({ points, capacity, width = 420, height = 140 }: { points: GrowthPoint[]; capacity: number | null; width?: number; height?: number }) {
  const data = points.map((p) => ({ t: new Date(p.at).getTime(), used: p.used }));
  const used = Math.max(...data.map((d) => d.used), 1);
  // The capacity drawn as a line when it is near enough to matter; far above, said in words
  // (a 5 MB line under a 250 GB scale would be flat).
  const drawn = capacity != null && capacity > 0 && capacity <= used * 4 ? capacity : null;
  const top = Math.max(used, drawn ?? 0);
  const first = points[0], last = points[points.length - 1];
  const tick = ticksFor(data[0].t, data[data.length - 1].t);
  return (
    <figure data-testid="growth-chart" aria-label={`used space over time: ${formatFileSize(first.used)} to ${formatFileSize(last.used)}${capacity ? ` of ${formatFileSize(capacity)}` : ""}`}>
      <LineChart width={width} height={height} data={data} margin={{ top: 8, right: 16, bottom: 4, left: 8 }}>
        <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
        <XAxis dataKey="t" type="number" scale="time" domain={["dataMin", "dataMax"]} tickFormatter={tick} tick={{ fontSize: 11 }} />
        <YAxis domain={[0, Math.ceil(top * 1.1)]} tickFormatter={axisSize} tick={{ fontSize: 11 }} width={64} />
        <Tooltip labelFormatter={(v) => moment(Number(v))} formatter={(v) => [formatFileSize(Number(v)), "used"]} />
        {drawn ? <ReferenceLine y={drawn} stroke="#dc2626" strokeDasharray="4 2" label={{ value: `capacity ${formatFileSize(drawn)}`, fontSize: 11, position: "insideTopRight" }} /> : null}
        <Line type="monotone" dataKey="used" name="used" stroke="#2563eb" strokeWidth={2} dot={data.length < 40} isAnimationActive={false} />
      </LineChart>
      <figcaption className="text-xs text-slate-500">
        Used space since {new Date(first.at).toLocaleString()}
        {drawn ? "; the red line is the capacity" : capacity ? `; the capacity, ${formatFileSize(capacity)}, is far above` : ""}
      </figcaption>
    </figure>
  );
}

export type RunPoint = { at: string; seconds: number; bytes: number };

/** A configuration's backups over time: how long each took (line) and how large it was (bars). */
export function RunsChart({ runs, width = 640, height = 200 }: { runs: RunPoint[]; width?: number; height?: number }) {
  const data = runs.map((r) => ({ t: new Date(r.at).getTime(), seconds: r.seconds, bytes: r.bytes }));
  const tick = ticksFor(data[0]?.t ?? 0, data[data.length - 1]?.t ?? 0);
  return (
    <ComposedChart width={width} height={height} data={data} margin={{ top: 8, right: 8, bottom: 4, left: 8 }}>
      <CartesianGrid strokeDasharray="3 3" stroke="#e2e8f0" />
      <XAxis dataKey="t" type="number" scale="time" domain={["dataMin", "dataMax"]} tickFormatter={tick} tick={{ fontSize: 11 }} padding={{ left: 12, right: 12 }} />
      <YAxis yAxisId="size" orientation="right" tickFormatter={axisSize} tick={{ fontSize: 11 }} width={64} />
      <YAxis yAxisId="time" tickFormatter={(v: number) => formatSeconds(v)} tick={{ fontSize: 11 }} width={56} />
      <Tooltip labelFormatter={(v) => moment(Number(v))} formatter={(v, name) => (name === "size" ? [formatFileSize(Number(v)), "size"] : [formatSeconds(Number(v)), "duration"])} />
      <Bar yAxisId="size" dataKey="bytes" name="size" fill="#cbd5e1" barSize={8} isAnimationActive={false} />
      <Line yAxisId="time" type="monotone" dataKey="seconds" name="duration" stroke="#2563eb" strokeWidth={2} dot isAnimationActive={false} />
    </ComposedChart>
  );
}
