// Retention for one configuration: the preview (what would be deleted and why), then Apply.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type RetentionPlan } from "../api";
import { Badge, Button } from "../components/ui";
import { ErrorBox, QueryView } from "../components/states";
import { formatFileSize } from "../components/format";
import { queryKeys } from "../api/queries";
import { When } from "../components/When";

export function RetentionPanel({ configurationId, onClose }: { configurationId: string; onClose: () => void }) {
  const queryClient = useQueryClient();
  const preview = useQuery({ queryKey: queryKeys.retention(configurationId), queryFn: () => api.previewRetention(configurationId) });
  const apply = useMutation({
    mutationFn: () => api.applyRetention(configurationId),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: queryKeys.executions });
      void queryClient.invalidateQueries({ queryKey: queryKeys.retention(configurationId) });
    },
  });
  return (
    <div className="mt-3 rounded-md border border-slate-200 bg-slate-50 p-3 text-sm" data-testid="retention-panel">
      <QueryView query={preview} what="the retention preview">
        {(plan: RetentionPlan) => (
          <div className="space-y-2">
            <div>
              Keeps {plan.retention_days} days: backups taken before <When at={plan.cutoff} /> are deleted unless a kept backup builds on
              them; the last full backup is always kept.
            </div>
            {plan.items.length === 0 ? (
              <div>No completed backups yet.</div>
            ) : (
              <ul className="space-y-1">
                {plan.items.map((i) => (
                  <li key={i.execution_id} data-testid="retention-item" className="flex gap-2">
                    <Badge variant={i.action === "delete" ? "destructive" : "secondary"}>{i.action}</Badge>
                    <span>{i.backup_type} · <When at={i.started_at} /> · {i.reason}</span>
                  </li>
                ))}
              </ul>
            )}
            <div className="flex items-center gap-2">
              <Button size="sm" variant="destructive" data-testid="retention-apply" disabled={plan.delete_count === 0 || apply.isPending}
                onClick={() => apply.mutate()}>
                {plan.delete_count === 0 ? "Nothing to delete" : `Delete ${plan.delete_count} backups (${formatFileSize(plan.bytes_freed)})`}
              </Button>
              {apply.isPending && (
                <Button size="sm" variant="outline" data-testid="retention-cancel" onClick={() => void api.cancelRetention(configurationId)}>Cancel</Button>
              )}
              <Button size="sm" variant="ghost" onClick={onClose}>Close</Button>
            </div>
            {apply.isSuccess && <div className="text-green-700" data-testid="retention-done">Deleted {apply.data.delete_count} backups.</div>}
            {apply.isError && <ErrorBox error={apply.error} />}
          </div>
        )}
      </QueryView>
    </div>
  );
}
