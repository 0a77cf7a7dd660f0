import { useState } from "react";
import { useMutation, useQuery } from "@tanstack/react-query";
import { api, type MigrationJob } from "../api";
import { Button, Card, CardContent, CardHeader } from "../components/ui";
import { JobRow } from "../components/JobRow";
import { Empty, QueryView } from "../components/states";
import { MigrationWizard, type WizardKind } from "./MigrationWizard";
import { useSession } from "../session/Session";
import { queryKeys } from "../api/queries";
import { When } from "../components/When";

const active = (j: MigrationJob) => j.status === "pending" || j.status === "running";

/** The spec's Data Migration Tools card: Import Data, Export Data, Migrate Tenant (each opens the
 * wizard), and the migration jobs recorded in the catalog, followed live. */
export function MigrationTab() {
  const { may, why } = useSession();
  const allowed = may("backup:restore_data");
  const [wizard, setWizard] = useState<WizardKind | null>(null);
  const jobs = useQuery({
    queryKey: queryKeys.migrations,
    queryFn: api.listMigrations,
    refetchInterval: (q) => (q.state.data?.some(active) ? 1000 : 5000),
  });
  return (
    <Card>
      <CardHeader title="Data Migration Tools" description="Import, export, and migrate tenant data" />
      <CardContent className="space-y-4">
        <div className="flex flex-wrap gap-2">
          <Button variant="outline" data-testid="mig-import" disabled={!allowed} title={allowed ? undefined : why("backup:restore_data")} onClick={() => setWizard("import")}>Import Data</Button>
          <Button variant="outline" data-testid="mig-export" disabled={!allowed} title={allowed ? undefined : why("backup:restore_data")} onClick={() => setWizard("export")}>Export Data</Button>
          <Button variant="outline" data-testid="mig-migrate" disabled={!allowed} title={allowed ? undefined : why("backup:restore_data")} onClick={() => setWizard("migrate")}>Migrate Tenant</Button>
        </div>
        {!allowed && <p className="text-sm text-slate-600" data-testid="migration-denied">{why("backup:restore_data")}</p>}
        {wizard && <MigrationWizard key={wizard} kind={wizard} onClose={() => setWizard(null)} />}
        <QueryView query={jobs} what="migration jobs">
          {(list) =>
            list.length === 0 ? (
              <Empty>No migration jobs yet. Copy a tenant into staging, merge two tenants, or export a tenant's data for a customer.</Empty>
            ) : (
              <div className="space-y-3">
                {list.map((j) => <MigrationRow key={j.id} job={j} />)}
              </div>
            )
          }
        </QueryView>
      </CardContent>
    </Card>
  );
}

function MigrationRow({ job }: { job: MigrationJob }) {
  const cancel = useMutation({ mutationFn: () => api.cancelMigration(job.id) });
  const target = job.target_tenant_id ? ` → tenant ${job.target_tenant_id}` : job.target_file_path ? ` → ${job.target_file_path}` : "";
  return (
    <div className="space-y-1">
      <JobRow testId="migration-job" kind="migration" title={job.migration_name} status={job.status}
        progress={job.progress_percentage} error={job.error_message}
        detail={<>{`${job.migration_type}${job.source_tenant_id ? ` of tenant ${job.source_tenant_id}` : ""}${target} · ${job.records_processed}/${job.records_total} records · `}<When at={job.started_at} /></>} />
      {active(job) && (
        <Button variant="outline" data-testid="mig-cancel" onClick={() => cancel.mutate()} disabled={cancel.isPending}>Cancel</Button>
      )}
    </div>
  );
}
