// What "Run Now" says, for as long as it is true: started and running, then how it ended. The
// message belongs to that run: the next click, or closing it, replaces it.
import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { queryKeys } from "../api/queries";
import { formatCount } from "../components/format";

export function RunBanner({ executionId, onDismiss }: { executionId: string; onDismiss: () => void }) {
  const query = useQuery({
    queryKey: [...queryKeys.executions, "one", executionId],
    queryFn: async () => (await api.listExecutions(50, null)).find((b) => b.id === executionId) ?? null,
    refetchInterval: (q) => (q.state.data && q.state.data.status !== "running" && q.state.data.status !== "pending" ? false : 1000),
  });
  const b = query.data;
  const close = <button className="ml-2 underline" onClick={onDismiss}>Dismiss</button>;
  if (!b || b.status === "running" || b.status === "pending") {
    return <p className="text-sm text-green-700 mt-2" data-testid="run-banner" data-status="running">Backup started — follow it in Recent Backups.{close}</p>;
  }
  if (b.status === "completed") {
    return <p className="text-sm text-green-700 mt-2" data-testid="run-banner" data-status="completed">Backup completed: {formatCount(b.record_count)} rows.{close}</p>;
  }
  return (
    <p role="alert" className="text-sm text-red-700 mt-2" data-testid="run-banner" data-status={b.status}>
      Backup {b.status === "cancelled" ? "cancelled" : "failed"}{b.error_message ? `: ${b.error_message}` : ""}.{close}
    </p>
  );
}
