// What the component tests share: fixtures, a query client per render, and the answers the
// mocked API gives unless a test says otherwise. Import it after `vi.mock("../api", apiModule)`.
import { render } from "@testing-library/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { vi } from "vitest";
import { api } from "../api";
import type { Acting, BackupConfiguration, BackupExecution, BackupStorage, Connection, Permission, Role, SessionInfo } from "../api/bindings";

export const mocked = vi.mocked(api, true);

export const executions: BackupExecution[] = [
  {
    id: "1", configuration_id: "c1", configuration_name: "Daily Full Backup", backup_type: "full", status: "completed",
    started_at: "2025-01-05T10:00:00Z", completed_at: "2025-01-05T10:30:00Z", file_path: "/b/1", file_size: 1048576,
    compressed_size: 400000, tenant_count: 3, table_count: 5, record_count: 1200, checksum: "ab", error_message: null, metadata: {}, deleted_at: null,
    initiated_by: null, second_copy: null,
  },
  {
    id: "2", configuration_id: "c1", configuration_name: "Daily Full Backup", backup_type: "incremental", status: "running",
    started_at: "2025-01-05T11:00:00Z", completed_at: null, file_path: null, file_size: null, compressed_size: null,
    tenant_count: null, table_count: null, record_count: null, checksum: null, error_message: null, metadata: {}, deleted_at: null,
    initiated_by: null, second_copy: null,
  },
];

export const configurations: BackupConfiguration[] = [
  {
    id: "c1", configuration_name: "Daily Full Backup", backup_type: "full", schedule_cron: "0 2 * * *",
    schedule_description: "At 02:00, every day", retention_days: 30, compression_enabled: true, encryption_enabled: true,
    storage_location: "Local backups", secondary_storage: null, missed_runs: "run_once", time_zone: null, includes_tenant_data: true, includes_system_data: true, includes_logs: false,
    is_active: true, continuous_protection: false, whole_server: false, exclude_databases: null, server_passwords: false, connection_id: "k1", created_by: "op", created_at: "2025-01-01T00:00:00Z", updated_at: "2025-01-01T00:00:00Z",
  },
];

export const storage: BackupStorage[] = [
  {
    id: "s1", storage_name: "Local backups", storage_type: "local", storage_config: { path: "/backups" }, is_default: true,
    is_active: true, total_capacity: null, used_space: 0, created_at: "2025-01-01T00:00:00Z", last_health_check: null,
    last_health_ok: null, last_health_latency_ms: null, last_health_message: null,
  },
];

export const connections: Connection[] = [
  {
    id: "k1", name: "Demo platform", kind: "sqlite", host: null, port: null, database_name: null, username: null, tls_mode: null,
    sqlite_path: "/demo.db", has_password: false, tenant_column: "tenant_id", tenants_table: "tenants", references: [],
    created_at: "2025-01-01T00:00:00Z", updated_at: "2025-01-01T00:00:00Z",
  },
];

export const superPermissions: Permission[] = ["backup:manage_all", "backup:manage_storage", "backup:restore_data", "backup:trigger_manual"];
export const localAdmin: Acting = { id: "local", name: "local administrator", role: "super_admin", permissions: superPermissions };
export const acting = (name: string, role: Role, permissions: Permission[]): SessionInfo => ({ needs_setup: false, operator: { id: name, name, role, permissions }, ended: null });

export function renderWithClient(ui: React.ReactElement) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(<QueryClientProvider client={client}>{ui}</QueryClientProvider>);
}

/** The answers every test starts from. */
export function setDefaults() {
  vi.clearAllMocks();
  mocked.startupStatus.mockResolvedValue("/home");
  mocked.sessionInfo.mockResolvedValue({ needs_setup: true, operator: localAdmin, ended: null });
  mocked.touchSession.mockResolvedValue(null);
  mocked.listExecutions.mockResolvedValue(executions);
  mocked.listConfigurations.mockResolvedValue(configurations);
  mocked.configurationOverview.mockResolvedValue([]);
  mocked.listRestores.mockResolvedValue([]);
  mocked.listMigrations.mockResolvedValue([]);
  mocked.listStorage.mockResolvedValue(storage);
  mocked.listConnections.mockResolvedValue(connections);
  mocked.storageSamples.mockResolvedValue([]);
  mocked.keychainWaits.mockResolvedValue([]);
  mocked.demoPostgresOffer.mockResolvedValue(null);
  mocked.storageKeyCustody.mockResolvedValue({ storage_id: "s1", has_repository: false, in_keychain: false, password: false, super_admins: [], pending: [], former: [], recovery_exported: false, problem: null });
  mocked.storageWriters.mockResolvedValue([]);
  mocked.onJobEvent.mockResolvedValue(() => {});
  mocked.validateConfiguration.mockResolvedValue([]);
  mocked.cronPreview.mockResolvedValue({ description: "At 02:00, every day", next_runs: [], time_zone: "Europe/Berlin, UTC+01:00" });
}
