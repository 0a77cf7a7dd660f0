import { useEffect, useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import * as Tabs from "@radix-ui/react-tabs";
import { Database, RefreshCw, Settings } from "lucide-react";
import { Button } from "../components/ui";
import { RecentBackups } from "../backups/RecentBackups";
import { BackupTrends } from "../backups/BackupTrends";
import { ConfigurationsTab } from "../configurations/ConfigurationsTab";
import { RestoreTab } from "../restore/RestoreTab";
import { MigrationTab } from "../migration/MigrationTab";
import { StorageTab } from "../storage/StorageTab";
import { ConnectionsSettings } from "../settings/ConnectionsSettings";
import { NewBackup } from "./NewBackup";
import { DemoOnPostgres } from "./DemoOnPostgres";
import { KeychainWaitBanner } from "../session/KeychainWait";
import { FirstOperator, SessionBar, useSession } from "../session/Session";
import { OperatorsTab } from "../session/OperatorsTab";
import { AuditTab } from "../session/AuditTab";
import type { Permission } from "../api";
import { queryKeys, staleAfterEvent } from "../api/queries";

const TABS: { value: string; label: string; needs?: Permission }[] = [
  { value: "executions", label: "Recent Backups" },
  { value: "configurations", label: "Configurations" },
  { value: "restore", label: "Restore" },
  { value: "migration", label: "Migration" },
  { value: "storage", label: "Storage" },
  { value: "operators", label: "Operators", needs: "backup:manage_all" },
  { value: "audit", label: "Audit Log", needs: "backup:view_history" },
];

/** The spec's Backup Management dashboard: a header and seven tabs (Operators and Audit Log by permission), all on the real catalog. */
export function BackupDashboard() {
  const queryClient = useQueryClient();
  const { info, may } = useSession();
  const tabs = TABS.filter((t) => !t.needs || may(t.needs));
  const [tab, setTab] = useState<string>("executions");
  const [creating, setCreating] = useState(false);
  const [settings, setSettings] = useState(false);
  const [newBackup, setNewBackup] = useState(false);

  const storage = useQuery({ queryKey: queryKeys.storage, queryFn: api.listStorage });

  // Progress pushed by the engine: refresh the job lists at once (at most every 300 ms).
  useEffect(() => {
    let last = 0;
    let stop: (() => void) | undefined;
    let cancelled = false;
    api.onJobEvent((e) => {
      const now = Date.now();
      if (e.status === null && now - last < 300) return;
      last = now;
      for (const queryKey of staleAfterEvent(e)) void queryClient.invalidateQueries({ queryKey });
    }).then((unlisten) => {
      if (cancelled) unlisten();
      else stop = unlisten;
    }, () => {});
    return () => {
      cancelled = true;
      stop?.();
    };
  }, [queryClient]);
  const failing = (storage.data ?? []).filter((s) => s.is_active && s.last_health_ok === false);

  if (settings) return <ConnectionsSettings onClose={() => setSettings(false)} />;

  return (
    <div className="space-y-6">
      <SessionBar />
      <div className="flex flex-wrap items-center justify-between gap-x-6 gap-y-3" data-testid="header">
        <div className="min-w-0">
          <h1 className="text-3xl font-bold whitespace-nowrap">Backup Management</h1>
          <p className="text-slate-600">Manage platform backups, restore operations, and data migrations</p>
        </div>
        <div className="flex flex-wrap gap-2 items-center justify-end ml-auto">
          <Button variant="outline" onClick={() => queryClient.invalidateQueries()} data-testid="refresh">
            <RefreshCw className="w-4 h-4" />
            Refresh
          </Button>
          {may("backup:manage_all") && (
            <Button variant="outline" onClick={() => setSettings(true)} data-testid="open-settings">
              <Settings className="w-4 h-4" />
              Connections
            </Button>
          )}
          {may("backup:trigger_manual") && (
            <Button
              onClick={() => setNewBackup(true)}
              title="Back up now, or set up a new backup configuration"
              data-testid="new-backup"
            >
              <Database className="w-4 h-4" />
              New Backup
            </Button>
          )}
        </div>
      </div>

      <KeychainWaitBanner />

      {info?.needs_setup && <FirstOperator />}

      {may("backup:manage_all") && <DemoOnPostgres />}

      {failing.length > 0 && (
        <div role="alert" className="rounded-md border border-red-200 bg-red-50 p-3 text-sm text-red-800" data-testid="storage-failing">
          {failing.map((s) => (
            <div key={s.id}>
              Storage “{s.storage_name}” is failing its health check: {s.last_health_message}.{" "}
              <button className="underline" onClick={() => setTab("storage")}>Open Storage</button>
            </div>
          ))}
        </div>
      )}

      {newBackup && (
        <NewBackup
          onClose={() => {
            setNewBackup(false);
            setTab("executions");
          }}
          onNewConfiguration={() => {
            setNewBackup(false);
            setTab("configurations");
            setCreating(true);
          }}
        />
      )}

      <Tabs.Root value={tab} onValueChange={setTab}>
        <Tabs.List className="flex w-full rounded-lg bg-slate-100 p-1" aria-label="Dashboard sections">
          {tabs.map((t) => (
            <Tabs.Trigger
              key={t.value}
              value={t.value}
              data-testid={`tab-${t.value}`}
              className="flex-1 rounded-md px-3 py-1.5 text-sm font-medium text-slate-600 data-[state=active]:bg-white data-[state=active]:text-slate-900 data-[state=active]:shadow"
            >
              {t.label}
            </Tabs.Trigger>
          ))}
        </Tabs.List>
        <div className="mt-4">
          <Tabs.Content value="executions" className="space-y-6">
            <RecentBackups />
            <BackupTrends />
          </Tabs.Content>
          <Tabs.Content value="configurations">
            <ConfigurationsTab creating={creating} onCreatingChange={setCreating} />
          </Tabs.Content>
          <Tabs.Content value="restore">
            <RestoreTab />
          </Tabs.Content>
          <Tabs.Content value="migration">
            <MigrationTab />
          </Tabs.Content>
          <Tabs.Content value="storage">
            <StorageTab />
          </Tabs.Content>
          {may("backup:manage_all") && (
            <Tabs.Content value="operators">
              <OperatorsTab />
            </Tabs.Content>
          )}
          {may("backup:view_history") && (
            <Tabs.Content value="audit">
              <AuditTab />
            </Tabs.Content>
          )}
        </div>
      </Tabs.Root>
    </div>
  );
}
