// "Recover from storage" and the in-app disaster recovery runbook (docs/disaster-recovery.md).
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { Button, Card, CardContent, CardHeader } from "../components/ui";
import { ErrorBox } from "../components/states";
import { queryKeys } from "../api/queries";

export function DisasterRecovery() {
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);
  const storages = useQuery({ queryKey: queryKeys.storage, queryFn: api.listStorage });
  const [from, setFrom] = useState("");
  const recover = useMutation({
    mutationFn: async (storageId: string | null) => {
      if (storageId) return api.rebuildCatalogFromStorage(storageId);
      const dir = await api.pickDirectory("Choose the repository directory (it holds safehold-repository.json)");
      return dir ? api.rebuildCatalog(dir) : null;
    },
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: queryKeys.executions });
      void queryClient.invalidateQueries({ queryKey: queryKeys.storage });
    },
  });
  return (
    <Card>
      <CardHeader
        title="Disaster recovery"
        description="Rebuild the catalog from a repository when this workstation's catalog is lost"
        action={
          <div className="flex items-center gap-2">
            <select aria-label="Recover from" data-testid="recover-source" className="rounded-md border border-slate-300 px-2 py-1 text-sm" value={from} onChange={(e) => setFrom(e.target.value)}>
              <option value="">a folder…</option>
              {(storages.data ?? []).map((s) => (
                <option key={s.id} value={s.id}>{s.storage_name}</option>
              ))}
            </select>
            <Button size="sm" variant="outline" data-testid="recover-from-storage" disabled={recover.isPending} onClick={() => recover.mutate(from || null)}>
              {recover.isPending ? "Reading the repository…" : "Recover from storage"}
            </Button>
          </div>
        }
      />
      <CardContent className="space-y-2 text-sm">
        <p className="text-slate-500">
          From a folder, or from a storage of this list: to recover from a cloud bucket, add it with its credentials (Add storage) first,
          then choose it here.
        </p>
        {recover.isError && <ErrorBox error={recover.error} />}
        {recover.data && (
          <p className="text-green-700" data-testid="recover-report">
            {recover.data.added} backups recorded from {recover.data.repository} ({recover.data.already_known} already known)
            {recover.data.storage_added ? `; registered as the storage "${recover.data.storage_name}"` : ""}. Restore them from the Restore tab,
            or with the recovery kit: <code>safehold restore --from … --recovery-key-file kit.txt</code>.
            {recover.data.unreadable.length > 0 && ` ${recover.data.unreadable.length} files are not readable archives.`}
          </p>
        )}
        <button className="text-blue-700 underline" onClick={() => setOpen((o) => !o)} data-testid="runbook-toggle">
          {open ? "Hide" : "Show"} the disaster recovery runbook
        </button>
        {open && (
          <ol className="list-decimal pl-5 space-y-1" data-testid="runbook">
            <li>Install Safehold on a new machine; its catalog starts empty.</li>
            <li>Mount or copy the repository directory (it holds <code>safehold-repository.json</code> and <code>archives/</code>). Check it without a key: <code>safehold verify REPO</code>, <code>safehold ls REPO</code>.</li>
            <li>Click <b>Recover from storage</b> above and choose the repository (or <code>safehold catalog rebuild --from REPO</code>). Every archive is recorded from its plaintext header; running it twice adds nothing twice.</li>
            <li>Restore with the printed recovery kit: <code>safehold restore --from REPO --recovery-key-file kit.txt --target postgres://…/platform --create</code> (add <code>--dry-run</code> first to see the plan, <code>--at TIME</code> for a point in time).</li>
            <li>Check: <code>safehold verify --restore-test REPO --scratch postgres://…/postgres --recovery-key-file kit.txt</code>.</li>
            <li>Add the new database as a connection, re-create the configurations, and print a new recovery kit for any new repository.</li>
          </ol>
        )}
      </CardContent>
    </Card>
  );
}
