// Any second (continuous protection): per configuration with the setting on, a timeline — backups
// as points, the continuously covered spans as bars, the gaps between them marked — a second
// picked or typed, its plan (which base, how many segments and changes), then one tenant put back
// in place or the whole database into a new database.
import { useMemo, useState } from "react";
import { useMutation, useQuery } from "@tanstack/react-query";
import { api, type SecondOutcome, type Timeline } from "../api";
import { queryKeys } from "../api/queries";
import { Button } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { formatCount, formatFileSize } from "../components/format";

type Mode = "tenant" | "database";

/** Position (0–100 %) of an instant between `from` and `to`. */
function pos(t: string, from: number, to: number): number {
  const x = Date.parse(t);
  return to > from ? Math.min(100, Math.max(0, ((x - from) / (to - from)) * 100)) : 0;
}

export function TimelineBar({ timeline, onPick }: { timeline: Timeline; onPick: (at: string) => void }) {
  const times = [...timeline.backups.map((b) => Date.parse(b.started_at)), ...timeline.spans.flatMap((s) => [Date.parse(s.from), Date.parse(s.until)])].filter((n) => !Number.isNaN(n));
  if (times.length === 0) return <Empty>Nothing to draw yet: the first step makes the base backup.</Empty>;
  const from = Math.min(...times);
  const to = Math.max(...times, from + 1000);
  const gaps = timeline.spans.slice(1).map((s, i) => ({ from: timeline.spans[i].until, until: s.from, why: timeline.spans[i].ended_by }));
  return (
    <div>
      <div className="relative h-8 rounded bg-slate-100" data-testid="timeline" aria-label="Continuous protection's timeline">
        {timeline.spans.map((s) => (
          <button
            key={s.base_id + s.from}
            type="button"
            data-testid="timeline-span"
            title={`Any second from ${s.from} to ${s.until} (click: pick its end)`}
            className="absolute top-2 h-4 rounded bg-emerald-500"
            style={{ left: `${pos(s.from, from, to)}%`, width: `${Math.max(0.5, pos(s.until, from, to) - pos(s.from, from, to))}%` }}
            onClick={() => onPick(s.until)}
          />
        ))}
        {gaps.map((g) => (
          <div
            key={g.from}
            data-testid="timeline-gap"
            title={`Not covered from ${g.from} to ${g.until}${g.why ? ` (${g.why})` : ""}`}
            className="absolute top-2 h-4 bg-red-300"
            style={{ left: `${pos(g.from, from, to)}%`, width: `${Math.max(0.5, pos(g.until, from, to) - pos(g.from, from, to))}%` }}
          />
        ))}
        {timeline.backups.map((b) => (
          <div
            key={b.execution_id}
            data-testid="timeline-backup"
            title={`${b.backup_type} backup ${b.started_at}${b.is_base ? " (a base of continuous protection)" : ""}`}
            className={`absolute top-1 h-6 w-1.5 rounded ${b.is_base ? "bg-slate-900" : "bg-slate-500"}`}
            style={{ left: `calc(${pos(b.started_at, from, to)}% - 3px)` }}
          />
        ))}
      </div>
      <div className="flex justify-between text-xs text-slate-500 mt-1">
        <span>{new Date(from).toISOString()}</span>
        <span>{new Date(to).toISOString()}</span>
      </div>
    </div>
  );
}

function PlanSummary({ outcome }: { outcome: SecondOutcome }) {
  const p = outcome.plan;
  return (
    <div className="text-sm space-y-1" data-testid="second-plan">
      <p>
        Base backup {p.base_id.slice(0, 8)} (taken {p.base_taken}), {p.segments} segments: {formatCount(p.transactions)} transactions ({formatCount(p.changes)} changes)
        replayed{p.last_commit ? `, the last committed at ${p.last_commit}` : ""}.
      </p>
      {outcome.tables.length > 0 && (
        <ul className="text-xs text-slate-600">
          {outcome.tables.map((t) => (
            <li key={t.table}>
              {t.table}: {t.inserted} inserted, {t.updated} updated, {t.deleted} deleted
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function SecondRestore({ timeline }: { timeline: Timeline }) {
  const [at, setAt] = useState(timeline.recovery_point ?? "");
  const [mode, setMode] = useState<Mode>("tenant");
  const [tenant, setTenant] = useState("");
  const [database, setDatabase] = useState("");
  const [confirm, setConfirm] = useState(false);
  const request = (dryRun: boolean) => ({
    configuration_id: timeline.configuration_id,
    at: at.trim(),
    tenant_id: mode === "tenant" ? tenant.trim() : null,
    into_database: mode === "database" ? database.trim() : null,
    dry_run: dryRun,
  });
  const plan = useMutation({ mutationFn: () => api.restoreToSecond(request(true)) });
  const run = useMutation({ mutationFn: () => api.restoreToSecond(request(false)), onSuccess: () => setConfirm(false) });
  const ready = at.trim() !== "" && (mode === "tenant" ? tenant.trim() !== "" : database.trim() !== "");
  const reset = () => {
    plan.reset();
    run.reset();
    setConfirm(false);
  };
  return (
    <div className="space-y-3">
      <TimelineBar timeline={timeline} onPick={(t) => { setAt(t); reset(); }} />
      <p className="text-xs text-slate-600" data-testid="timeline-summary">
        {timeline.recovery_point ? `Recovery point ${timeline.recovery_point}` : "No second covered yet"} · {timeline.segments} change segments ({formatFileSize(timeline.segment_bytes)})
        {timeline.state ? ` · ${timeline.state}` : ""}
      </p>
      {timeline.last_warning && <p className="text-xs text-amber-700">{timeline.last_warning}</p>}
      {timeline.last_error && <p className="text-xs text-red-700">{timeline.last_error}</p>}
      <label className="block text-sm">
        Second (UTC, RFC 3339)
        <input className="mt-1 w-full rounded border px-2 py-1 font-mono text-sm" value={at} onChange={(e) => { setAt(e.target.value); reset(); }} placeholder="2026-12-04T14:31:59Z" />
      </label>
      <div className="flex gap-4 text-sm">
        <label className="flex items-center gap-1">
          <input type="radio" name="second-mode" checked={mode === "tenant"} onChange={() => { setMode("tenant"); reset(); }} /> One tenant, in place
        </label>
        <label className="flex items-center gap-1">
          <input type="radio" name="second-mode" checked={mode === "database"} onChange={() => { setMode("database"); reset(); }} /> Whole database, into a new database
        </label>
      </div>
      {mode === "tenant" ? (
        <label className="block text-sm">
          Tenant
          <input className="mt-1 w-full rounded border px-2 py-1 text-sm" value={tenant} onChange={(e) => { setTenant(e.target.value); reset(); }} />
        </label>
      ) : (
        <label className="block text-sm">
          New database
          <input className="mt-1 w-full rounded border px-2 py-1 text-sm" value={database} onChange={(e) => { setDatabase(e.target.value); reset(); }} placeholder="app_then" />
        </label>
      )}
      <div className="flex gap-2">
        <Button size="sm" variant="outline" disabled={!ready || plan.isPending} onClick={() => plan.mutate()} data-testid="second-plan-button">
          {plan.isPending ? "Planning…" : "Plan"}
        </Button>
        {plan.isSuccess && !confirm && !run.isSuccess && (
          <Button size="sm" onClick={() => setConfirm(true)} data-testid="second-restore-button">
            Restore to this second
          </Button>
        )}
        {confirm && (
          <Button size="sm" variant="destructive" disabled={run.isPending} onClick={() => run.mutate()} data-testid="second-confirm-button">
            {run.isPending ? "Restoring…" : mode === "tenant" ? `Replace tenant ${tenant.trim()}'s rows` : `Create ${database.trim()}`}
          </Button>
        )}
      </div>
      {(plan.isPending || run.isPending) && (
        <Button size="sm" variant="outline" onClick={() => api.cancelRestoreToSecond(timeline.configuration_id)} data-testid="second-cancel-button">
          Cancel
        </Button>
      )}
      {plan.isError && <ErrorBox error={plan.error} />}
      {run.isError && <ErrorBox error={run.error} />}
      {plan.data && !run.data && <PlanSummary outcome={plan.data} />}
      {run.data && (
        <div data-testid="second-done" className="text-sm text-emerald-700">
          {run.data.database ? `The database as it was at ${at.trim()} is in ${run.data.database}.` : `Tenant ${tenant.trim()} is back as it was at ${at.trim()}.`}
          <PlanSummary outcome={run.data} />
        </div>
      )}
    </div>
  );
}

/** The card's body: the configurations with continuous protection, one chosen. */
export function ContinuousTimeline() {
  const configs = useQuery({ queryKey: queryKeys.configurations, queryFn: () => api.listConfigurations() });
  const protectedOnes = useMemo(() => (configs.data ?? []).filter((c) => c.continuous_protection), [configs.data]);
  const [chosen, setChosen] = useState<string | null>(null);
  const id = chosen ?? protectedOnes[0]?.id ?? null;
  const timeline = useQuery({ queryKey: ["protection-timeline", id], queryFn: () => api.protectionTimeline(id as string), enabled: id != null, refetchInterval: 5000 });
  if (configs.isSuccess && protectedOnes.length === 0) {
    return (
      <Empty>
        No configuration has continuous protection. Turn it on in a configuration of a PostgreSQL connection to put the database, or one tenant, back to any second.
      </Empty>
    );
  }
  return (
    <div className="space-y-3" data-testid="continuous-timeline">
      {protectedOnes.length > 1 && (
        <select className="rounded border px-2 py-1 text-sm" value={id ?? ""} onChange={(e) => setChosen(e.target.value)} aria-label="Configuration">
          {protectedOnes.map((c) => (
            <option key={c.id} value={c.id}>
              {c.configuration_name}
            </option>
          ))}
        </select>
      )}
      {id && (
        <QueryView query={timeline} what="the timeline">
          {(t) => <SecondRestore key={t.configuration_id} timeline={t} />}
        </QueryView>
      )}
    </div>
  );
}
