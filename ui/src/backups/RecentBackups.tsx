import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { CheckCircle, Clock, RefreshCw, XCircle } from "lucide-react";
import { api, type BackupCheck, type BackupExecution, type JobStatus } from "../api";
import { Badge, Button, Card, CardContent, CardHeader, Progress } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { useSession } from "../session/Session";
import { formatCount, formatDate, formatDuration, formatFileSize } from "../components/format";
import { queryKeys } from "../api/queries";
import { When } from "../components/When";

export function StatusIcon({ status }: { status: string }) {
  switch (status) {
    case "completed":
      return <CheckCircle className="w-4 h-4 text-green-500" aria-label="completed" />;
    case "failed":
      return <XCircle className="w-4 h-4 text-red-500" aria-label="failed" />;
    case "running":
      return <RefreshCw className="w-4 h-4 text-blue-500 animate-spin" aria-label="running" />;
    default:
      return <Clock className="w-4 h-4 text-slate-500" aria-label={status} />;
  }
}

export function statusVariant(status: string) {
  return status === "completed" ? "default" : status === "failed" ? "destructive" : "secondary";
}

type ProgressInfo = { table?: string; tables_done?: number; tables_total?: number; rows?: number };

/** The writer whose key signed the archive (name and public key), as the run recorded it. */
function writer(b: BackupExecution): { name: string; key: string } | null {
  const m = (b.metadata ?? {}) as { writer?: string; writer_key?: string };
  return m.writer ? { name: m.writer, key: m.writer_key ?? "" } : null;
}

/** How a backup was started: by its schedule, as a catch-up of missed runs, or by hand. */
function trigger(b: BackupExecution): string | null {
  const t = (b.metadata as { trigger?: string })?.trigger;
  return t === "schedule" ? "scheduled" : t === "catch_up" ? "caught up after a missed run" : t === "manual" ? "run now" : null;
}

/** When the backup was last proven readable, or what its last check found wrong. */
function LastCheck({ check }: { check: BackupCheck }) {
  const kind = check.deep ? "deep check" : "quick check";
  return check.ok ? (
    <div className="text-xs text-green-700" data-testid="last-check">
      Verified <When at={check.at} /> ({kind}): {check.message}
    </div>
  ) : (
    <div className="text-sm text-red-600" data-testid="last-check">
      Check failed <When at={check.at} /> ({kind}): {check.message}
    </div>
  );
}

function ExecutionRow({ backup }: { backup: BackupExecution }) {
  const duration = formatDuration(backup.started_at, backup.completed_at);
  const { may } = useSession();
  const queryClient = useQueryClient();
  const cancel = useMutation({ mutationFn: () => api.cancelBackup(backup.id) });
  const check = useMutation({
    mutationFn: (deep: boolean) => api.checkBackup(backup.id, deep),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: queryKeys.executions }),
  });
  // The newer of this row's own check and the one recorded (another window or the CLI may have checked since).
  const recorded = (backup.metadata as { last_check?: BackupCheck })?.last_check;
  const lastCheck = check.data && (!recorded || check.data.at >= recorded.at) ? check.data : recorded;
  const checkable = backup.status === "completed" && !backup.deleted_at && !!backup.file_path;
  const meta = (backup.metadata ?? {}) as { progress?: ProgressInfo };
  const progress = meta.progress;
  const active = backup.status === "running" || backup.status === "pending";
  const pct = progress?.tables_total ? Math.round(((progress.tables_done ?? 0) / progress.tables_total) * 100) : 0;
  return (
    <div className="flex items-center justify-between p-4 border rounded-lg" data-testid="execution">
      <div className="flex items-center gap-4">
        <StatusIcon status={backup.status} />
        <div>
          <div className="font-medium">{backup.backup_type.charAt(0).toUpperCase() + backup.backup_type.slice(1)} backup</div>
          {backup.configuration_name && (
            <div className="text-sm text-slate-500">
              {backup.configuration_name}
              {trigger(backup) && <span className="ml-1 text-xs text-slate-400">· {trigger(backup)}</span>}
            </div>
          )}
          <div className="text-sm text-slate-500">
            Started: <When at={backup.started_at} />
            {backup.initiated_by && <span data-testid="initiated-by"> by {backup.initiated_by}</span>}
          </div>
          {duration && <div className="text-sm text-slate-500">Duration: {duration}</div>}
          {backup.error_message && <div className="text-sm text-red-600">{backup.error_message}</div>}
          {backup.second_copy ? (
            backup.second_copy.status === "completed" ? (
              <div className="text-xs text-slate-500" data-testid="second-copy" title={backup.second_copy.file_path ?? undefined}>
                Second copy on {backup.second_copy.storage_name}: copied and verified <When at={backup.second_copy.created_at} />
              </div>
            ) : (
              <div className="text-sm text-amber-700" data-testid="second-copy">
                Second copy on {backup.second_copy.storage_name} failed: {backup.second_copy.error_message}
              </div>
            )
          ) : (
            (backup.metadata as { copy_error?: string })?.copy_error && (
              <div className="text-sm text-amber-700">Second copy failed: {(backup.metadata as { copy_error?: string }).copy_error}</div>
            )
          )}
          {((backup.metadata as { warnings?: string[] })?.warnings ?? []).map((w) => (
            <div key={w} className="text-sm text-amber-700" data-testid="backup-warning">{w}</div>
          ))}
          {backup.file_path && !backup.deleted_at && (
            <div className="text-xs text-slate-400 truncate max-w-md" title={backup.file_path} data-testid="archive-path">{backup.file_path}</div>
          )}
          {backup.deleted_at && <div className="text-sm text-slate-500" data-testid="deleted-by-retention">Archive deleted by retention on {formatDate(backup.deleted_at)}</div>}
          {!backup.configuration_id && (backup.metadata as { safety_for_restore?: string })?.safety_for_restore && (
            <div className="text-sm text-slate-500">Safety backup taken before a restore</div>
          )}
          {active && progress && (
            <div className="text-sm text-slate-500 flex items-center gap-2">
              <Progress value={pct} label="backup progress" /> {progress.table} · {formatCount(progress.rows)} rows
            </div>
          )}
          {backup.checksum && <div className="text-xs text-slate-400 font-mono" title="SHA-256 of the archive">sha256 {backup.checksum.slice(0, 16)}…</div>}
          {writer(backup) && (
            <div className="text-xs text-slate-500" data-testid="signed-by" title={`writer key ${writer(backup)?.key ?? ""}`}>
              Signed by {writer(backup)?.name}
            </div>
          )}
          {lastCheck && <LastCheck check={lastCheck} />}
          {check.isError && <ErrorBox error={check.error} />}
        </div>
      </div>
      <div className="text-right">
        <Badge variant={statusVariant(backup.status)}>{(backup.metadata as { skipped?: boolean })?.skipped ? "skipped" : backup.status}</Badge>
        {backup.file_size != null && (
          <div className="text-sm text-slate-500 mt-1">
            {formatFileSize(backup.file_size)}
            {backup.compressed_size != null && ` → ${formatFileSize(backup.compressed_size)}`}
          </div>
        )}
        {backup.record_count != null && (
          <div className="text-xs text-slate-500">
            {backup.table_count ?? 0} tables · {formatCount(backup.record_count)} rows
            {backup.tenant_count != null && ` · ${backup.tenant_count} tenants`}
          </div>
        )}
        {active && may("backup:trigger_manual") && (
          <Button size="sm" variant="outline" className="mt-1" onClick={() => cancel.mutate()} disabled={cancel.isPending} data-testid="cancel-backup">
            Cancel
          </Button>
        )}
        {checkable && (
          <div className="mt-1 flex gap-1 justify-end">
            {may("backup:trigger_manual") && (
              <Button size="sm" variant="outline" onClick={() => check.mutate(false)} disabled={check.isPending} data-testid="verify-backup" title="The archive's SHA-256 against its trailer and the catalog (no key needed)">
                {check.isPending && check.variables === false ? "Verifying…" : "Verify"}
              </Button>
            )}
            {may("backup:restore_data") && (
              <Button size="sm" variant="outline" onClick={() => check.mutate(true)} disabled={check.isPending} data-testid="deep-verify-backup" title="Read the backup and every backup it builds on with the key: every section authenticated, decompressed and hashed">
                {check.isPending && check.variables === true ? "Reading…" : "Deep verify"}
              </Button>
            )}
          </div>
        )}
      </div>
    </div>
  );
}

const PAGE = 50;

export function RecentBackups() {
  const [status, setStatus] = useState<JobStatus | "">("");
  const [limit, setLimit] = useState(PAGE);
  const query = useQuery({
    queryKey: queryKeys.executionsRecent(limit, status),
    queryFn: () => api.listExecutions(limit, status || null),
    // Follow running backups live.
    // Every second while a backup runs; every few seconds otherwise, so scheduled backups appear.
    refetchInterval: (q) => (q.state.data?.some((b) => b.status === "running" || b.status === "pending") ? 1000 : 4000),
  });
  return (
    <Card>
      <CardHeader
        title="Recent Backup Executions"
        description="Latest backup operations and their status"
        action={
          <select aria-label="Show backups" data-testid="executions-status" className="rounded-md border border-slate-300 px-2 py-1 text-sm" value={status}
            onChange={(e) => { setStatus(e.target.value as JobStatus | ""); setLimit(PAGE); }}>
            <option value="">All</option>
            <option value="completed">Completed</option>
            <option value="failed">Failed</option>
            <option value="running">Running</option>
            <option value="pending">Pending</option>
            <option value="cancelled">Cancelled</option>
          </select>
        }
      />
      <CardContent>
        <QueryView query={query} what="backups">
          {(backups) =>
            backups.length === 0 ? (
              <Empty>{status ? `No ${status} backups.` : "No backups have run yet. They appear here as soon as a configuration runs."}</Empty>
            ) : (
              <div className="space-y-4">
                {backups.map((b) => (
                  <ExecutionRow key={b.id} backup={b} />
                ))}
                {backups.length >= limit && (
                  <Button variant="outline" size="sm" data-testid="executions-more" onClick={() => setLimit((l) => l + PAGE)}>
                    Show older backups
                  </Button>
                )}
              </div>
            )
          }
        </QueryView>
      </CardContent>
    </Card>
  );
}
