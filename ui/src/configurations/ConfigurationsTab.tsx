import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Calendar, Plus } from "lucide-react";
import { api, type BackupConfiguration, type ConfigurationStatus } from "../api";
import { Badge, Button, Card, CardContent, CardHeader } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { ConfigurationForm } from "./ConfigurationForm";
import { RetentionPanel } from "./RetentionPanel";
import { useSession } from "../session/Session";
import { queryKeys } from "../api/queries";
import { When } from "../components/When";
import { RunBanner } from "../backups/RunBanner";

/** When the configuration runs next, and how its last backup went. */
function RunStatus({ status }: { status: ConfigurationStatus }) {
  return (
    <div className="text-sm text-slate-500" data-testid="configuration-status">
      Next run: <When at={status.next_run} fallback="not scheduled (inactive)" />
      {" | "}Last backup:{" "}
      {status.last_status ? (
        <span className={status.last_status === "failed" ? "text-red-600" : status.last_status === "completed" ? "text-green-700" : ""}>
          {status.last_status} <When at={status.last_started_at} />
          {status.last_error && ` — ${status.last_error}`}
        </span>
      ) : (
        "none yet"
      )}
    </div>
  );
}

function ConfigurationRow({ config, onEdit, status }: { config: BackupConfiguration; onEdit: () => void; status?: ConfigurationStatus }) {
  const queryClient = useQueryClient();
  const { may } = useSession();
  const manage = may("backup:manage_all");
  const [confirming, setConfirming] = useState(false);
  const [retention, setRetention] = useState(false);
  const refresh = () => queryClient.invalidateQueries({ queryKey: queryKeys.configurations });
  const toggle = useMutation({ mutationFn: () => api.setConfigurationActive(config.id, !config.is_active), onSuccess: refresh });
  const remove = useMutation({ mutationFn: () => api.deleteConfiguration(config.id), onSuccess: refresh });
  const run = useMutation({
    mutationFn: () => api.runBackupNow(config.id),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: queryKeys.executions }),
  });
  // The last Run Now's message, until the next click or Dismiss.
  const [shown, setShown] = useState(true);
  const startRun = () => {
    setShown(true);
    run.mutate();
  };
  return (
    <div className="p-4 border rounded-lg" data-testid="configuration" data-name={config.configuration_name}>
      <div className="flex items-center justify-between">
        <div className="flex items-center gap-4">
          <Calendar className="w-5 h-5 text-blue-500" />
          <div>
            <div className="font-medium">{config.configuration_name}</div>
            <div className="text-sm text-slate-500">
              Schedule: <span className="font-mono">{config.schedule_cron}</span> ({config.schedule_description}) | Retention:{" "}
              {config.retention_days} days
            </div>
            <div className="text-sm text-slate-500">
              Type: {config.backup_type} | Storage: {config.storage_location}
              {config.includes_tenant_data && " | tenant data"}
              {config.includes_system_data && " | system data"}
              {config.includes_logs && " | logs"}
              {!config.compression_enabled && " | not compressed"}
              {!config.encryption_enabled && " | not encrypted"}
            </div>
            {status && <RunStatus status={status} />}
          </div>
        </div>
        <div className="flex items-center gap-2">
          <Badge variant={config.is_active ? "default" : "secondary"}>{config.is_active ? "Active" : "Inactive"}</Badge>
          {config.whole_server && (
            <span title={`Every database of the server and its roles, one server backup per run${config.exclude_databases ? ` (except ${config.exclude_databases})` : ""}`}>
              <Badge variant="secondary">Whole server</Badge>
            </span>
          )}
          {config.continuous_protection && (
            <span title="Every committed change is streamed into the storage: the database can be put back to any second (safehold protect status)">
              <Badge variant="secondary">Continuous</Badge>
            </span>
          )}
          {may("backup:trigger_manual") && (
            <Button size="sm" className="whitespace-nowrap shrink-0" onClick={startRun} disabled={!config.is_active || run.isPending}
              data-testid="run-now">
              Run Now
            </Button>
          )}
          {manage && <Button size="sm" variant="outline" onClick={onEdit}>Edit</Button>}
          <Button size="sm" variant="outline" data-testid="retention" onClick={() => setRetention((r) => !r)}>Retention</Button>
          {manage && (
            <Button size="sm" variant="outline" onClick={() => toggle.mutate()} disabled={toggle.isPending}>
              {config.is_active ? "Deactivate" : "Activate"}
            </Button>
          )}
          {!manage ? null : confirming ? (
            <>
              <Button size="sm" variant="destructive" onClick={() => remove.mutate()} disabled={remove.isPending}>Confirm delete</Button>
              <Button size="sm" variant="ghost" onClick={() => setConfirming(false)}>Keep</Button>
            </>
          ) : (
            <Button size="sm" variant="ghost" onClick={() => setConfirming(true)}>Delete</Button>
          )}
        </div>
      </div>
      {retention && <RetentionPanel configurationId={config.id} onClose={() => setRetention(false)} />}
      {shown && run.isSuccess && <RunBanner executionId={run.data} onDismiss={() => setShown(false)} />}
      {shown && run.isError && <ErrorBox error={run.error} />}
      {toggle.isError && <ErrorBox error={toggle.error} />}
      {remove.isError && <ErrorBox error={remove.error} />}
    </div>
  );
}

export function ConfigurationsTab({ creating, onCreatingChange }: { creating: boolean; onCreatingChange: (v: boolean) => void }) {
  const queryClient = useQueryClient();
  const query = useQuery({ queryKey: queryKeys.configurations, queryFn: api.listConfigurations });
  // Next runs move with the clock and last backups with every run: refreshed every few seconds.
  const overview = useQuery({ queryKey: queryKeys.configurationOverview, queryFn: api.configurationOverview, refetchInterval: 10_000 });
  const { may } = useSession();
  const [editing, setEditing] = useState<BackupConfiguration | null>(null);
  const formOpen = creating || editing !== null;
  const close = (saved: BackupConfiguration | null) => {
    onCreatingChange(false);
    setEditing(null);
    if (saved) queryClient.invalidateQueries({ queryKey: queryKeys.configurations });
  };
  return (
    <div className="space-y-4">
      {formOpen && <ConfigurationForm key={editing?.id ?? "new"} editing={editing} onDone={close} />}
      <Card>
        <CardHeader
          title="Backup Configurations"
          description="Manage automated backup schedules and settings"
          action={
            !formOpen && may("backup:manage_all") && (
              <Button size="sm" onClick={() => onCreatingChange(true)} data-testid="new-configuration">
                <Plus className="w-4 h-4" /> New configuration
              </Button>
            )
          }
        />
        <CardContent>
          <QueryView query={query} what="configurations">
            {(configs) =>
              configs.length === 0 ? (
                <Empty>No backup configurations yet. Create one to schedule backups.</Empty>
              ) : (
                <div className="space-y-4">
                  {configs.map((c) => (
                    <ConfigurationRow key={c.id} config={c} onEdit={() => setEditing(c)} status={overview.data?.find((o) => o.configuration_id === c.id)} />
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
