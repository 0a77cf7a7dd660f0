import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { Card, CardContent, CardHeader } from "../components/ui";
import { JobRow } from "../components/JobRow";
import { Empty, QueryView } from "../components/states";
import { formatDate } from "../components/format";

/** The spec's restore cards. Restoring itself arrives with the restore engine; until then the
 * tab shows the completed backups a restore could start from and the recorded operations. */
export function RestoreTab() {
  const backups = useQuery({ queryKey: ["executions"], queryFn: api.listExecutions });
  const restores = useQuery({ queryKey: ["restores"], queryFn: api.listRestores });
  return (
    <div className="grid grid-cols-1 md:grid-cols-2 gap-6">
      <Card>
        <CardHeader title="Point-in-Time Recovery" description="Restore data to a specific point in time" />
        <CardContent className="space-y-3">
          <QueryView query={backups} what="backups">
            {(list) => {
              const completed = list.filter((b) => b.status === "completed");
              return completed.length === 0 ? (
                <Empty>No completed backup to restore from yet.</Empty>
              ) : (
                <ul className="text-sm space-y-1" data-testid="restorable-backups">
                  {completed.map((b) => (
                    <li key={b.id}>
                      {b.backup_type} — {formatDate(b.started_at)}
                    </li>
                  ))}
                </ul>
              );
            }}
          </QueryView>
          <p className="text-xs text-slate-500">
            Restoring from the app (full, selective, tenant only, point in time) is not available in this version yet. A whole
            backup restores from the command line: <code>safehold restore --from &lt;repository&gt; --target &lt;database&gt;</code>.
          </p>
        </CardContent>
      </Card>
      <Card>
        <CardHeader title="Active Restore Operations" description="Currently running restore operations" />
        <CardContent>
          <QueryView query={restores} what="restore operations">
            {(list) =>
              list.length === 0 ? (
                <Empty>No active restore operations</Empty>
              ) : (
                <div className="space-y-3">
                  {list.map((r) => (
                    <JobRow key={r.id} testId="restore-operation" kind="restore" title={`${r.restore_type} restore`} status={r.status}
                      progress={r.progress_percentage} error={r.error_message} detail={`Started: ${formatDate(r.started_at)}`} />
                  ))}
                </div>
              )
            }
          </QueryView>
        </CardContent>
      </Card>
    </div>
  );
}
