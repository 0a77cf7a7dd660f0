import { useQuery } from "@tanstack/react-query";
import { HardDrive } from "lucide-react";
import { api, type BackupStorage } from "../api";
import { Badge, Card, CardContent, CardHeader, Progress } from "../components/ui";
import { Empty, QueryView } from "../components/states";
import { formatDate, formatFileSize } from "../components/format";
import { DisasterRecovery } from "./DisasterRecovery";

function where(s: BackupStorage): string {
  const cfg = (s.storage_config ?? {}) as Record<string, unknown>;
  if (typeof cfg.path === "string") return cfg.path;
  if (typeof cfg.bucket === "string") return `${s.storage_type}://${cfg.bucket}`;
  return s.storage_type;
}

export function StorageTab() {
  const query = useQuery({ queryKey: ["storage"], queryFn: api.listStorage });
  return (
    <div className="space-y-6">
    <Card>
      <CardHeader title="Storage Management" description="Monitor backup storage usage and health" />
      <CardContent>
        <QueryView query={query} what="storage">
          {(list) =>
            list.length === 0 ? (
              <Empty>No storage configured.</Empty>
            ) : (
              <div className="space-y-4">
                {list.map((s) => {
                  const pct = s.total_capacity ? Math.round((s.used_space / s.total_capacity) * 100) : 0;
                  return (
                    <div key={s.id} className="flex items-center justify-between p-4 border rounded-lg" data-testid="storage">
                      <div className="flex items-center gap-4">
                        <HardDrive className="w-5 h-5 text-blue-500" />
                        <div>
                          <div className="font-medium">
                            {s.storage_name} {s.is_default && <Badge>default</Badge>} {!s.is_active && <Badge variant="secondary">inactive</Badge>}
                          </div>
                          <div className="text-sm text-slate-500">
                            {s.storage_type === "local" ? "Local filesystem" : s.storage_type.toUpperCase()} · {where(s)}
                          </div>
                          <div className="text-xs text-slate-500">Last health check: {formatDate(s.last_health_check)}</div>
                        </div>
                      </div>
                      <div className="text-right">
                        <div className="text-sm font-medium">
                          {formatFileSize(s.used_space)}
                          {s.total_capacity ? ` / ${formatFileSize(s.total_capacity)}` : " used"}
                        </div>
                        {s.total_capacity ? <Progress value={pct} label="storage used" /> : null}
                      </div>
                    </div>
                  );
                })}
              </div>
            )
          }
        </QueryView>
      </CardContent>
    </Card>
    <DisasterRecovery />
    </div>
  );
}
