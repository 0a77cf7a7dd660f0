import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { Badge, Card, CardContent, CardHeader, Progress } from "../components/ui";
import { Empty, QueryView } from "../components/states";
import { formatDate } from "../components/format";
import { statusVariant } from "../backups/RecentBackups";

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
                  <div key={j.id} className="flex items-center justify-between p-3 border rounded-lg" data-testid="migration-job">
                    <div>
                      <div className="font-medium">{j.migration_name}</div>
                      <div className="text-sm text-slate-500">
                        {j.migration_type} · {j.records_processed}/{j.records_total} records · {formatDate(j.started_at)}
                      </div>
                      {j.error_message && <div className="text-sm text-red-600">{j.error_message}</div>}
                    </div>
                    <div className="text-right space-y-1">
                      <Badge variant={statusVariant(j.status)}>{j.status}</Badge>
                      <Progress value={j.progress_percentage} label="migration progress" />
                    </div>
                  </div>
                ))}
              </div>
            )
          }
        </QueryView>
      </CardContent>
    </Card>
  );
}
