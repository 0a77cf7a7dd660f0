// The only module that talks to the Tauri backend. Components call these typed functions;
// nothing else imports @tauri-apps/*.
import { invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import { open, save } from "@tauri-apps/plugin-dialog";
import type {
  Acting,
  AuditEntry,
  BackupCheck,
  AuditFilter,
  BackupConfiguration,
  BackupExecution,
  BackupStorage,
  ConfigurationInput,
  ConfigurationStatus,
  Connection,
  ConnectionInput,
  ConnectionReport,
  CronPreview,
  DemoReport,
  ErrorCode,
  FieldError,
  HealthCheck,
  JobEvent,
  JobStatus,
  KeyCustody,
  KeychainWait,
  PostgresDemo,
  PostgresOffer,
  WriterInfo,
  MigrationJob,
  MigrationReport,
  MigrationSpec,
  Operator,
  RebuildReport,
  RemoteStorageInput,
  RestoreForm,
  RestoreOperation,
  RestorePlan,
  RestoreTestReport,
  RetentionPlan,
  SecondOutcome,
  SecondRequest,
  Timeline,
  Role,
  SessionInfo,
  StorageChange,
  StorageUsage,
  TenantRow,
  UsageSample,
} from "./bindings";
import type { Command } from "./commands";

export type * from "./bindings";
export { DEFAULT_CONFIGURATION_INPUT } from "./bindings";

/** An engine error as it crossed the boundary: a closed code, a message, invalid fields. */
export class ApiError extends Error {
  constructor(
    public code: ErrorCode,
    message: string,
    public fields: FieldError[] = [],
  ) {
    super(message);
    this.name = "ApiError";
  }
}

function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e && typeof e === "object" && "code" in e && "message" in e) {
    const err = e as { code: ErrorCode; message: string; fields?: FieldError[] };
    return new ApiError(err.code, err.message, err.fields ?? []);
  }
  return new ApiError("internal", typeof e === "string" ? e : String(e));
}

/** The one way to the shell: only a command it registers type-checks (`commands.ts`, generated). */
async function call<T>(command: Command, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    throw toApiError(e);
  }
}

export const api = {
  startupStatus: () => call<string>("startup_status"),
  /** The newest `limit` backups, of one status or all. */
  listExecutions: (limit = 50, status: JobStatus | null = null) => call<BackupExecution[]>("list_executions", { limit, status }),
  /** The newest `limit` restores after skipping the `offset` newest. */
  listRestores: (limit = 50, offset = 0) => call<RestoreOperation[]>("list_restores", { limit, offset }),
  listMigrations: () => call<MigrationJob[]>("list_migrations"),
  listStorage: () => call<BackupStorage[]>("list_storage"),
  listConfigurations: () => call<BackupConfiguration[]>("list_configurations"),
  configurationOverview: () => call<ConfigurationStatus[]>("configuration_overview"),
  createConfiguration: (input: ConfigurationInput) => call<BackupConfiguration>("create_configuration", { input }),
  updateConfiguration: (id: string, input: ConfigurationInput) =>
    call<BackupConfiguration>("update_configuration", { id, input }),
  setConfigurationActive: (id: string, active: boolean) =>
    call<BackupConfiguration>("set_configuration_active", { id, active }),
  deleteConfiguration: (id: string) => call<null>("delete_configuration", { id }),
  validateConfiguration: (input: ConfigurationInput, editing: string | null) =>
    call<FieldError[]>("validate_configuration", { input, editing }),
  cronPreview: (line: string, timeZone: string | null = null) => call<CronPreview>("cron_preview", { line, timeZone }),
  listConnections: () => call<Connection[]>("list_connections"),
  addConnection: (input: ConnectionInput) => call<Connection>("add_connection", { input }),
  updateConnection: (id: string, input: ConnectionInput) => call<Connection>("update_connection", { id, input }),
  removeConnection: (id: string) => call<null>("remove_connection", { id }),
  testConnection: (id: string) => call<ConnectionReport>("test_connection", { id }),
  probeConnection: (input: ConnectionInput) => call<ConnectionReport>("probe_connection", { input }),
  setupDemo: () => call<DemoReport>("setup_demo"),
  /** Starts a backup of the configuration now; resolves with the execution's id. */
  runBackupNow: (configurationId: string) => call<string>("run_backup_now", { configurationId }),
  cancelBackup: (executionId: string) => call<boolean>("cancel_backup", { executionId }),
  /** What a restore would do; nothing is changed (a rolled-back trial run for tenant and selective restores). */
  planRestore: (form: RestoreForm) => call<RestorePlan>("plan_restore", { form }),
  /** A configuration's backups, continuously covered spans and recovery point. */
  protectionTimeline: (configurationId: string) => call<Timeline>("protection_timeline", { configurationId }),
  /** Plans (dry run) or runs a restore to a second: one tenant in place, or the database into a new one. */
  restoreToSecond: (request: SecondRequest) => call<SecondOutcome>("restore_to_second", { request }),
  cancelRestoreToSecond: (configurationId: string) => call<boolean>("cancel_restore_to_second", { configurationId }),
  /** Starts a restore; resolves with the restore operation's id. */
  startRestore: (form: RestoreForm) => call<string>("start_restore", { form }),
  cancelRestore: (restoreId: string) => call<boolean>("cancel_restore", { restoreId }),
  previewRetention: (configurationId: string) => call<RetentionPlan>("preview_retention", { configurationId }),
  applyRetention: (configurationId: string) => call<RetentionPlan>("apply_retention", { configurationId }),
  cancelRetention: (configurationId: string) => call<boolean>("cancel_retention", { configurationId }),
  /** Jobs' progress and ends as they happen; resolves with a function that stops listening. */
  onJobEvent: (handler: (e: JobEvent) => void): Promise<() => void> => listen<JobEvent>("job-event", (e) => handler(e.payload)),
  verifyByRestoring: (executionId: string) => call<RestoreTestReport>("verify_by_restoring", { executionId }),
  cancelVerify: (executionId: string) => call<boolean>("cancel_verify", { executionId }),
  checkStorage: (id: string) => call<HealthCheck>("check_storage", { id }),
  keychainWaits: () => call<KeychainWait[]>("keychain_waits"),
  demoPostgresOffer: () => call<PostgresOffer | null>("demo_postgres_offer"),
  putDemoOnPostgres: () => call<PostgresDemo>("put_demo_on_postgres"),
  dismissDemoPostgresOffer: () => call<null>("dismiss_demo_postgres_offer"),
  cancelKeychainWaits: () => call<number>("cancel_keychain_waits"),
  refreshStorageUsage: (id: string) => call<StorageUsage>("refresh_storage_usage", { id }),
  storageSamples: (id: string) => call<UsageSample[]>("storage_samples", { id }),
  checkBackup: (executionId: string, deep: boolean) => call<BackupCheck>("check_backup", { executionId, deep }),
  storageKeyCustody: (id: string) => call<KeyCustody>("storage_key_custody", { id }),
  exportRecoveryKit: (id: string, path: string) => call<string>("export_recovery_kit", { id, path }),
  storageWriters: (id: string) => call<WriterInfo[]>("storage_writers", { id }),
  approveWriter: (id: string, publicKey: string) => call<WriterInfo>("approve_writer", { id, publicKey }),
  /** The native save dialog for a new SQLite file to restore into; null when the user cancels. */
  pickNewDatabaseFile: async (suggested: string): Promise<string | null> => {
    const chosen = await save({ title: "Restore into a new SQLite file", defaultPath: suggested, filters: [{ name: "SQLite database", extensions: ["db", "sqlite", "sqlite3"] }] });
    return typeof chosen === "string" ? chosen : null;
  },
  /** The native save dialog for a recovery kit; null when the user cancels. */
  pickKitFile: async (suggested: string): Promise<string | null> => {
    const chosen = await save({ title: "Save the recovery kit", defaultPath: suggested, filters: [{ name: "Text", extensions: ["txt"] }] });
    return typeof chosen === "string" ? chosen : null;
  },
  addLocalStorage: (name: string, path: string, isDefault: boolean) => call<BackupStorage>("add_local_storage", { name, path, isDefault }),
  addRemoteStorage: (input: RemoteStorageInput) => call<BackupStorage>("add_remote_storage", { input }),
  removeStorage: (id: string) => call<null>("remove_storage", { id }),
  updateStorage: (id: string, change: StorageChange) => call<BackupStorage>("update_storage", { id, change }),
  rebuildCatalog: (path: string) => call<RebuildReport>("rebuild_catalog", { path }),
  rebuildCatalogFromStorage: (id: string) => call<RebuildReport>("rebuild_catalog_from_storage", { id }),
  listTenants: (connection: string) => call<TenantRow[]>("list_tenants", { connection }),
  /** The mapping proposed from names; nothing is changed. */
  proposeMigration: (spec: MigrationSpec) => call<MigrationReport>("propose_migration", { spec }),
  /** Validation: the whole migration run and rolled back. */
  validateMigration: (spec: MigrationSpec) => call<MigrationReport>("validate_migration", { spec }),
  /** Starts a migration; resolves with the migration job's id. */
  startMigration: (spec: MigrationSpec) => call<string>("start_migration", { spec }),
  cancelMigration: (migrationId: string) => call<boolean>("cancel_migration", { migrationId }),
  sessionInfo: () => call<SessionInfo>("session_info"),
  /** The operator clicked or typed: the session's idle clock starts again. */
  touchSession: () => call<null>("touch_session"),
  createFirstOperator: (name: string, password: string) => call<Acting>("create_first_operator", { name, password }),
  signIn: (name: string, password: string) => call<Acting>("sign_in", { name, password }),
  signOut: () => call<null>("sign_out"),
  listOperators: () => call<Operator[]>("list_operators"),
  addOperator: (name: string, role: Role, password: string) => call<Operator>("add_operator", { name, role, password }),
  setOperatorRole: (id: string, role: Role) => call<Operator>("set_operator_role", { id, role }),
  setOperatorActive: (id: string, active: boolean) => call<Operator>("set_operator_active", { id, active }),
  removeOperator: (id: string) => call<null>("remove_operator", { id }),
  changePassword: (current: string, password: string) => call<null>("change_password", { current, password }),
  resetOperatorPassword: (id: string, password: string) => call<Operator>("reset_operator_password", { id, password }),
  listAudit: (filter: AuditFilter) => call<AuditEntry[]>("list_audit", { filter }),
  exportAudit: (filter: AuditFilter, path: string) => call<number>("export_audit", { filter, path }),
  /** The native save dialog for the audit log's CSV; null when the user cancels. */
  pickCsvFile: async (suggested: string): Promise<string | null> => {
    const chosen = await save({ title: "Export the audit log", defaultPath: suggested, filters: [{ name: "CSV", extensions: ["csv"] }] });
    return typeof chosen === "string" ? chosen : null;
  },
  /** The native file picker for files to import; [] when the user cancels. */
  pickImportFiles: async (): Promise<string[]> => {
    const chosen = await open({
      multiple: true,
      directory: false,
      title: "Choose what to import",
      filters: [{ name: "Exports, archives, CSV, JSON Lines", extensions: ["zip", "shar", "csv", "jsonl", "ndjson", "json"] }],
    });
    if (Array.isArray(chosen)) return chosen;
    return typeof chosen === "string" ? [chosen] : [];
  },
  /** The native save dialog for an export; null when the user cancels. */
  pickExportFile: async (suggested: string): Promise<string | null> => {
    const filters = suggested.endsWith(".shar") ? [{ name: "Safehold archive", extensions: ["shar"] }] : [{ name: "Portable export", extensions: ["zip"] }];
    const chosen = await save({ title: "Save the export", defaultPath: suggested, filters });
    return typeof chosen === "string" ? chosen : null;
  },
  /** The native folder picker; null when the user cancels. */
  pickDirectory: async (title: string): Promise<string | null> => {
    const chosen = await open({ multiple: false, directory: true, title });
    return typeof chosen === "string" ? chosen : null;
  },
  /** The native file picker for a SQLite database; null when the user cancels. */
  pickSqliteFile: async (): Promise<string | null> => {
    const chosen = await open({
      multiple: false,
      directory: false,
      title: "Choose a SQLite database",
      filters: [{ name: "SQLite database", extensions: ["db", "sqlite", "sqlite3", "db3"] }],
    });
    return typeof chosen === "string" ? chosen : null;
  },
};

export type Api = typeof api;
