import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { Button, Card, CardContent, CardHeader } from "../components/ui";
import { ErrorBox } from "../components/states";
import { queryKeys } from "../api/queries";

/** "New Backup": back up one of the active configurations now, or set up a new one. */
export function NewBackup({ onClose, onNewConfiguration }: { onClose: () => void; onNewConfiguration: () => void }) {
  const queryClient = useQueryClient();
  const configs = useQuery({ queryKey: queryKeys.configurations, queryFn: api.listConfigurations });
  const active = (configs.data ?? []).filter((c) => c.is_active);
  const [chosen, setChosen] = useState<string>("");
  const id = chosen || active[0]?.id || "";
  const run = useMutation({
    mutationFn: () => api.runBackupNow(id),
    onSuccess: () => {
      queryClient.invalidateQueries({ queryKey: queryKeys.executions });
      onClose();
    },
  });
  return (
    <Card data-testid="new-backup-panel">
      <CardHeader title="Back up now" description="Run one of your configurations immediately" />
      <CardContent className="space-y-3">
        {active.length === 0 ? (
          <p className="text-sm text-slate-500">No active configuration yet.</p>
        ) : (
          <select className="w-full rounded-md border border-slate-300 px-3 py-2 text-sm" aria-label="Configuration"
            value={id} onChange={(e) => setChosen(e.target.value)}>
            {active.map((c) => (
              <option key={c.id} value={c.id}>{c.configuration_name} ({c.backup_type})</option>
            ))}
          </select>
        )}
        {run.isError && <ErrorBox error={run.error} />}
        <div className="flex justify-between">
          <Button variant="outline" onClick={onNewConfiguration} data-testid="setup-configuration">Set up a new configuration…</Button>
          <div className="flex gap-2">
            <Button variant="outline" onClick={onClose}>Close</Button>
            <Button onClick={() => run.mutate()} disabled={!id || run.isPending} data-testid="start-backup">Start backup</Button>
          </div>
        </div>
      </CardContent>
    </Card>
  );
}
