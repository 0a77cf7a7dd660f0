// The trend an administrator checks: how long each configuration's backups take and how large
// they are, backup after backup.
import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { api, type BackupExecution } from "../api";
import { queryKeys } from "../api/queries";
import { Card, CardContent, CardHeader } from "../components/ui";
import { RunsChart, formatSeconds, type RunPoint } from "../components/charts";
import { formatFileSize } from "../components/format";

/** The completed backups looked at (newest first), and how many of one configuration are drawn. */
const LOOKED_AT = 500;
const DRAWN = 60;

/** Each configuration's completed backups as chart points, oldest first. */
export function runsByConfiguration(backups: BackupExecution[]): Map<string, { name: string; runs: RunPoint[] }> {
  const by = new Map<string, { name: string; runs: RunPoint[] }>();
  for (const b of backups) {
    if (b.status !== "completed" || !b.configuration_id || !b.completed_at) continue;
    const seconds = (new Date(b.completed_at).getTime() - new Date(b.started_at).getTime()) / 1000;
    if (!Number.isFinite(seconds)) continue;
    const entry = by.get(b.configuration_id) ?? { name: b.configuration_name ?? b.configuration_id, runs: [] };
    entry.runs.push({ at: b.started_at, seconds: Math.max(0, seconds), bytes: b.file_size ?? 0 });
    by.set(b.configuration_id, entry);
  }
  for (const e of by.values()) e.runs = e.runs.sort((a, b) => a.at.localeCompare(b.at)).slice(-DRAWN);
  return by;
}

export function BackupTrends() {
  const query = useQuery({ queryKey: [...queryKeys.executionsCompleted, "trends"], queryFn: () => api.listExecutions(LOOKED_AT, "completed"), refetchInterval: 30_000 });
  const [chosen, setChosen] = useState<string>("");
  const by = runsByConfiguration(query.data ?? []);
  if (by.size === 0) return null;
  // The configuration whose backup ran last, until another is chosen.
  const latest = [...by.entries()].sort((a, b) => b[1].runs[b[1].runs.length - 1].at.localeCompare(a[1].runs[a[1].runs.length - 1].at))[0][0];
  const id = by.has(chosen) ? chosen : latest;
  const { runs } = by.get(id)!;
  const last = runs[runs.length - 1];
  return (
    <Card data-testid="backup-trends">
      <CardHeader
        title="Duration and size"
        description="Each completed backup of a configuration: how long it took (line, left) and its archive's size (bars, right)"
        action={
          <select aria-label="Configuration" data-testid="trends-configuration" className="rounded-md border border-slate-300 px-2 py-1 text-sm" value={id} onChange={(e) => setChosen(e.target.value)}>
            {[...by.entries()].map(([k, v]) => <option key={k} value={k}>{v.name}</option>)}
          </select>
        }
      />
      <CardContent>
        {runs.length < 2 ? (
          <p className="text-sm text-slate-500" data-testid="trends-one">One backup so far ({formatSeconds(last.seconds)}, {formatFileSize(last.bytes)}): the trend shows from the second.</p>
        ) : (
          <figure aria-label={`${runs.length} backups: the last took ${formatSeconds(last.seconds)} and is ${formatFileSize(last.bytes)}`} data-testid="trends-chart">
            <RunsChart runs={runs} />
          </figure>
        )}
      </CardContent>
    </Card>
  );
}
