import { useState } from "react";
import { keepPreviousData, useMutation, useQuery } from "@tanstack/react-query";
import { api, type RestoreOperation } from "../api";
import { Button, Card, CardContent, CardHeader } from "../components/ui";
import { JobRow } from "../components/JobRow";
import { Empty, QueryView } from "../components/states";
import { formatCount } from "../components/format";
import { RestorePlanner } from "./RestorePlanner";
import { ContinuousTimeline } from "./ContinuousTimeline";
import { useSession } from "../session/Session";
import { queryKeys } from "../api/queries";
import { Parts, When } from "../components/When";

const active = (r: RestoreOperation) => r.status === "running" || r.status === "pending";

/** How many restores the history shows at first, and how many more each "Load more" adds. */
export const RESTORE_PAGE = 50;

/** The spec's restore cards: Point-in-Time Recovery (plan, confirm, start), the restores running
 * now with live progress and Cancel, and the history of the finished ones, a page at a time. */
export function RestoreTab() {
  const { may, why } = useSession();
  const [limit, setLimit] = useState(RESTORE_PAGE);
  const restores = useQuery({
    queryKey: [...queryKeys.restores, limit],
    queryFn: () => api.listRestores(limit),
    placeholderData: keepPreviousData,
    refetchInterval: (q) => (q.state.data?.some(active) ? 1000 : 5000),
  });
  return (
    <div className="grid grid-cols-1 md:grid-cols-2 gap-6">
      <Card>
        <CardHeader title="Point-in-Time Recovery" description="Restore data to a specific point in time" />
        <CardContent>
          {may("backup:restore_data") ? (
            <RestorePlanner />
          ) : (
            <p className="text-sm text-slate-600" data-testid="restore-denied">{why("backup:restore_data")}</p>
          )}
        </CardContent>
      </Card>
      <Card>
        <CardHeader title="Active Restore Operations" description="Currently running restore operations" />
        <CardContent>
          <QueryView query={restores} what="restore operations">
            {(list) =>
              list.filter(active).length === 0 ? (
                <Empty>No active restore operations</Empty>
              ) : (
                <div className="space-y-3" data-testid="restores-active">
                  {list.filter(active).map((r) => (
                    <RestoreRow key={r.id} op={r} />
                  ))}
                </div>
              )
            }
          </QueryView>
        </CardContent>
      </Card>
      <Card className="md:col-span-2">
        <CardHeader title="Any Second" description="Continuous protection: backups as points, covered seconds as bars, gaps in red; pick a second" />
        <CardContent>
          {may("backup:restore_data") ? (
            <ContinuousTimeline />
          ) : (
            <p className="text-sm text-slate-600">{why("backup:restore_data")}</p>
          )}
        </CardContent>
      </Card>
      <Card className="md:col-span-2">
        <CardHeader title="Restore History" description="Finished restores, newest first" />
        <CardContent>
          <QueryView query={restores} what="restore operations">
            {(list) =>
              list.filter((r) => !active(r)).length === 0 ? (
                <Empty>No finished restores yet</Empty>
              ) : (
                <div className="space-y-3" data-testid="restores-history">
                  {list.filter((r) => !active(r)).map((r) => (
                    <RestoreRow key={r.id} op={r} />
                  ))}
                  {list.length >= limit && (
                    <Button size="sm" variant="outline" data-testid="restores-more" disabled={restores.isFetching} onClick={() => setLimit((n) => n + RESTORE_PAGE)}>
                      Load more
                    </Button>
                  )}
                </div>
              )
            }
          </QueryView>
        </CardContent>
      </Card>
    </div>
  );
}

function summary(r: RestoreOperation): string {
  const records = (r.restored_records ?? {}) as Record<string, unknown>;
  const tables = Object.entries(records).filter(([, v]) => typeof v === "object" && v !== null) as [string, { rows?: number }][];
  if (tables.length > 0) {
    const rows = tables.reduce((n, [, v]) => n + (v.rows ?? 0), 0);
    return `${formatCount(rows)} rows in ${tables.length} tables`;
  }
  return typeof records.rows === "number" ? `${formatCount(records.rows)} rows` : "";
}

function RestoreRow({ op }: { op: RestoreOperation }) {
  const cancel = useMutation({ mutationFn: () => api.cancelRestore(op.id) });
  const { may } = useSession();
  const what = op.restore_type === "tenant_only" ? `tenant ${op.target_tenant_id ?? ""}${op.preserve_ids ? "" : " (as a copy)"}` : op.restore_type;
  const detail = [
    op.target ? `into ${op.target}` : null,
    op.source_archive ? `from ${op.source_archive}` : null,
    op.restore_point ? <>point in time <When at={op.restore_point} /></> : null,
    op.tables_to_restore?.length ? `tables ${op.tables_to_restore.join(", ")}` : null,
    op.exclude_tables?.length ? `except ${op.exclude_tables.join(", ")}` : null,
    <>started <When at={op.started_at} /></>,
    op.initiated_by ? `by ${op.initiated_by}` : null,
    op.completed_at ? <>ended <When at={op.completed_at} /></> : null,
    active(op) && op.current_table ? `now: ${op.current_table}` : null,
    op.status === "completed" ? summary(op) : null,
    op.new_tenant_id ? `new tenant ${op.new_tenant_id}` : null,
    op.safety_backup_id ? "safety backup taken" : null,
  ];
  return (
    <div>
      <JobRow testId="restore-operation" kind="restore" title={`Restore: ${what}`} status={op.status} progress={op.progress_percentage}
        error={op.error_message} detail={<Parts parts={detail} />} />
      {active(op) && may("backup:restore_data") && (
        <Button size="sm" variant="outline" className="mt-1" data-testid="restore-cancel" disabled={cancel.isPending} onClick={() => cancel.mutate()}>
          Cancel
        </Button>
      )}
    </div>
  );
}
