import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { Card, CardContent, CardHeader } from "../components/ui";
import { JobRow } from "../components/JobRow";
import { Empty, QueryView } from "../components/states";
import { formatDate } from "../components/format";

/** Migration jobs recorded in the catalog. The import/export/migrate wizard arrives with the
 * migration engine. */
export function MigrationTab() {
  const jobs = useQuery({ queryKey: ["migrations"], queryFn: api.listMigrations });
  return (
    <Card>
      <CardHeader title="Data Migration Tools" description="Import, export, and migrate tenant data" />
      <CardContent>
        <QueryView query={jobs} what="migration jobs">
          {(list) =>
            list.length === 0 ? (
              <Empty>No migration jobs yet. Tenant copy, merge, export and import are not available in this version yet.</Empty>
            ) : (
              <div className="space-y-3">
                {list.map((j) => (
                  <JobRow key={j.id} testId="migration-job" kind="migration" title={j.migration_name} status={j.status}
                    progress={j.progress_percentage} error={j.error_message}
                    detail={`${j.migration_type} · ${j.records_processed}/${j.records_total} records · ${formatDate(j.started_at)}`} />
                ))}
              </div>
            )
          }
        </QueryView>
      </CardContent>
    </Card>
  );
}
