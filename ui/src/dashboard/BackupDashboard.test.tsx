// The spec's dashboard tests, against the typed API module (the Tauri boundary) replaced by
// fixtures. The real backend is exercised by the end-to-end suite (tests/e2e).
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { BackupConfiguration, BackupExecution, BackupStorage, Connection, KeyCustody, MigrationReport } from "../api/bindings";

vi.mock("../api", async () => {
  const actual = await vi.importActual<typeof import("../api")>("../api");
  return {
    ...actual,
    api: {
      startupStatus: vi.fn(),
      listExecutions: vi.fn(),
      listConfigurations: vi.fn(),
      configurationOverview: vi.fn(),
      listRestores: vi.fn(),
      listMigrations: vi.fn(),
      listStorage: vi.fn(),
      listConnections: vi.fn(),
      validateConfiguration: vi.fn(),
      cronPreview: vi.fn(),
      createConfiguration: vi.fn(),
      setConfigurationActive: vi.fn(),
      deleteConfiguration: vi.fn(),
      runBackupNow: vi.fn(),
      cancelBackup: vi.fn(),
      checkBackup: vi.fn(),
      planRestore: vi.fn(),
      startRestore: vi.fn(),
      cancelRestore: vi.fn(),
      verifyByRestoring: vi.fn(),
      cancelVerify: vi.fn(),
      cancelRetention: vi.fn(),
      previewRetention: vi.fn(),
      onJobEvent: vi.fn(),
      pickDirectory: vi.fn(),
      checkStorage: vi.fn(),
      addLocalStorage: vi.fn(),
      addRemoteStorage: vi.fn(),
      removeStorage: vi.fn(),
      updateStorage: vi.fn(),
      refreshStorageUsage: vi.fn(),
      storageSamples: vi.fn(),
      storageKeyCustody: vi.fn(),
      rebuildCatalog: vi.fn(),
      rebuildCatalogFromStorage: vi.fn(),
      applyRetention: vi.fn(),
      listTenants: vi.fn(),
      proposeMigration: vi.fn(),
      validateMigration: vi.fn(),
      startMigration: vi.fn(),
      cancelMigration: vi.fn(),
      pickImportFiles: vi.fn(),
      pickExportFile: vi.fn(),
      sessionInfo: vi.fn(),
      touchSession: vi.fn(),
      signIn: vi.fn(),
      signOut: vi.fn(),
      createFirstOperator: vi.fn(),
      listOperators: vi.fn(),
      addOperator: vi.fn(),
      setOperatorRole: vi.fn(),
      setOperatorActive: vi.fn(),
      removeOperator: vi.fn(),
      changePassword: vi.fn(),
      resetOperatorPassword: vi.fn(),
      listAudit: vi.fn(),
      exportAudit: vi.fn(),
      pickCsvFile: vi.fn(),
      pickKitFile: vi.fn(),
      pickNewDatabaseFile: vi.fn(),
      exportRecoveryKit: vi.fn(),
      storageWriters: vi.fn(),
      approveWriter: vi.fn(),
    },
  };
});

import { api, ApiError } from "../api";
import { BackupDashboard } from "./BackupDashboard";
import { App } from "../App";
import { SessionProvider } from "../session/Session";
import type { Acting, Permission, Role, SessionInfo } from "../api/bindings";
import { staleAfterEvent } from "../api/queries";

const mocked = vi.mocked(api, true);

const executions: BackupExecution[] = [
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

const configurations: BackupConfiguration[] = [
  {
    id: "c1", configuration_name: "Daily Full Backup", backup_type: "full", schedule_cron: "0 2 * * *",
    schedule_description: "At 02:00, every day", retention_days: 30, compression_enabled: true, encryption_enabled: true,
    storage_location: "Local backups", secondary_storage: null, missed_runs: "run_once", time_zone: null, includes_tenant_data: true, includes_system_data: true, includes_logs: false,
    is_active: true, connection_id: "k1", created_by: "op", created_at: "2025-01-01T00:00:00Z", updated_at: "2025-01-01T00:00:00Z",
  },
];

const storage: BackupStorage[] = [
  {
    id: "s1", storage_name: "Local backups", storage_type: "local", storage_config: { path: "/backups" }, is_default: true,
    is_active: true, total_capacity: null, used_space: 0, created_at: "2025-01-01T00:00:00Z", last_health_check: null,
    last_health_ok: null, last_health_latency_ms: null, last_health_message: null,
  },
];

const connections: Connection[] = [
  {
    id: "k1", name: "Demo platform", kind: "sqlite", host: null, port: null, database_name: null, username: null, tls_mode: null,
    sqlite_path: "/demo.db", has_password: false, tenant_column: "tenant_id", tenants_table: "tenants", references: [],
    created_at: "2025-01-01T00:00:00Z", updated_at: "2025-01-01T00:00:00Z",
  },
];

const superPermissions: Permission[] = ["backup:manage_all", "backup:manage_storage", "backup:restore_data", "backup:trigger_manual"];
const localAdmin: Acting = { id: "local", name: "local administrator", role: "super_admin", permissions: superPermissions };
const acting = (name: string, role: Role, permissions: Permission[]): SessionInfo => ({ needs_setup: false, operator: { id: name, name, role, permissions }, ended: null });

function renderWithClient(ui: React.ReactElement) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(<QueryClientProvider client={client}>{ui}</QueryClientProvider>);
}

beforeEach(() => {
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
  mocked.storageKeyCustody.mockResolvedValue({ storage_id: "s1", has_repository: false, in_keychain: false, password: false, super_admins: [], pending: [], former: [], recovery_exported: false, problem: null });
  mocked.storageWriters.mockResolvedValue([]);
  mocked.onJobEvent.mockResolvedValue(() => {});
  mocked.validateConfiguration.mockResolvedValue([]);
  mocked.cronPreview.mockResolvedValue({ description: "At 02:00, every day", next_runs: [], time_zone: "Europe/Berlin, UTC+01:00" });
});

describe("BackupDashboard", () => {
  it("renders the backup management interface", async () => {
    renderWithClient(<BackupDashboard />);
    expect(await screen.findByText("Backup Management")).toBeInTheDocument();
    for (const tab of ["Recent Backups", "Configurations", "Restore", "Migration", "Storage"]) {
      expect(screen.getByRole("tab", { name: tab })).toBeInTheDocument();
    }
  });

  it("displays backup executions with their status and size", async () => {
    renderWithClient(<BackupDashboard />);
    expect(await screen.findByText("full Backup")).toBeInTheDocument();
    expect(screen.getByText("incremental Backup")).toBeInTheDocument();
    expect(screen.getByText("1 MB → 390.63 KB")).toBeInTheDocument();
    expect(screen.getByText(/5 tables · 1200 rows · 3 tenants/)).toBeInTheDocument();
    expect(screen.getByText("completed")).toBeInTheDocument();
  });

  it("shows an empty state when no backup has run", async () => {
    mocked.listExecutions.mockResolvedValue([]);
    renderWithClient(<BackupDashboard />);
    expect(await screen.findByText(/No backups have run yet/)).toBeInTheDocument();
  });

  it("shows the engine's error message when executions cannot be read", async () => {
    mocked.listExecutions.mockRejectedValue(new ApiError("database", "the catalog could not list the backup executions: disk I/O error"));
    renderWithClient(<BackupDashboard />);
    expect(await screen.findByRole("alert")).toHaveTextContent("disk I/O error");
  });

  it("switches to Configurations and displays them", async () => {
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    expect(await screen.findByText("Daily Full Backup", { selector: ".font-medium" })).toBeInTheDocument();
    expect(screen.getByText(/At 02:00, every day/)).toBeInTheDocument();
    expect(screen.getByText("Active")).toBeInTheDocument();
  });

  it("shows an invalid cron line's error inline and does not save", async () => {
    mocked.validateConfiguration.mockImplementation(async (input) =>
      input.schedule_cron === "not a cron"
        ? [{ field: "schedule_cron", message: "invalid cron line \"not a cron\": it has 3 field(s)" }]
        : [],
    );
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("new-configuration"));
    const form = await screen.findByTestId("configuration-form");
    const cron = within(form).getByLabelText("Schedule (cron)");
    await userEvent.clear(cron);
    await userEvent.type(cron, "not a cron");
    expect(await within(form).findByTestId("error-schedule_cron")).toHaveTextContent("invalid cron line");
    expect(within(form).getByTestId("save-configuration")).toBeDisabled();
    expect(mocked.createConfiguration).not.toHaveBeenCalled();
  });

  it("states the time zone schedules run in next to the cron line", async () => {
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("new-configuration"));
    expect(await screen.findByTestId("cron-time-zone")).toHaveTextContent("Time zone: Europe/Berlin, UTC+01:00");
    await userEvent.type(screen.getByLabelText("Time zone"), "America/New_York");
    await waitFor(() => expect(mocked.cronPreview).toHaveBeenLastCalledWith("0 2 * * *", "America/New_York"));
  });

  it("creates a configuration from the form with the default storage and connection", async () => {
    mocked.createConfiguration.mockResolvedValue({ ...configurations[0], id: "c2", configuration_name: "Hourly" });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("new-configuration"));
    const form = await screen.findByTestId("configuration-form");
    await userEvent.type(within(form).getByLabelText("Name"), "Hourly");
    await waitFor(() => expect(within(form).getByLabelText("Storage")).toHaveValue("Local backups"));
    await userEvent.click(within(form).getByTestId("save-configuration"));
    await waitFor(() => expect(mocked.createConfiguration).toHaveBeenCalledTimes(1));
    const input = mocked.createConfiguration.mock.calls[0][0];
    expect(input).toMatchObject({ configuration_name: "Hourly", storage_location: "Local backups", connection_id: "k1", schedule_cron: "0 2 * * *" });
  });

  it("shows a duplicate name refused by the engine next to the name", async () => {
    mocked.createConfiguration.mockRejectedValue(
      new ApiError("validation", "a configuration named \"Daily Full Backup\" already exists", [
        { field: "configuration_name", message: "a configuration named \"Daily Full Backup\" already exists; choose another name" },
      ]),
    );
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("new-configuration"));
    const form = await screen.findByTestId("configuration-form");
    await userEvent.type(within(form).getByLabelText("Name"), "Daily Full Backup");
    await userEvent.click(within(form).getByTestId("save-configuration"));
    expect(await within(form).findByTestId("error-configuration_name")).toHaveTextContent("already exists");
  });

  it("Run Now calls the trigger command with the configuration's id", async () => {
    mocked.runBackupNow.mockResolvedValue("exec-1");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("run-now"));
    await waitFor(() => expect(mocked.runBackupNow).toHaveBeenCalledWith("c1"));
    expect(await screen.findByText(/Backup started/)).toBeInTheDocument();
  });

  it("shows each configuration's next run and how its last backup went", async () => {
    mocked.listConfigurations.mockResolvedValue([configurations[0], { ...configurations[0], id: "c2", configuration_name: "Weekly", is_active: false, encryption_enabled: false }]);
    mocked.configurationOverview.mockResolvedValue([
      { configuration_id: "c1", next_run: "2025-01-06T02:00:00+01:00", last_status: "failed", last_started_at: "2025-01-05T02:00:00Z", last_error: "cannot connect to postgres://db/app" },
      { configuration_id: "c2", next_run: null, last_status: null, last_started_at: null, last_error: null },
    ]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    const rows = await screen.findAllByTestId("configuration");
    const status = await within(rows[0]).findByTestId("configuration-status");
    expect(status).toHaveTextContent("Next run:");
    expect(status).not.toHaveTextContent("not scheduled");
    expect(status).toHaveTextContent("Last backup: failed");
    expect(status).toHaveTextContent("cannot connect to postgres://db/app");
    expect(await within(rows[1]).findByTestId("configuration-status")).toHaveTextContent("Next run: not scheduled (inactive) | Last backup: none yet");
    expect(rows[1]).toHaveTextContent("not encrypted");
  });

  it("Run Now is disabled for an inactive configuration", async () => {
    mocked.listConfigurations.mockResolvedValue([{ ...configurations[0], is_active: false }]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    expect(await screen.findByTestId("run-now")).toBeDisabled();
  });

  it("New Backup starts a backup of the chosen configuration", async () => {
    mocked.runBackupNow.mockResolvedValue("exec-2");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByTestId("new-backup"));
    await userEvent.click(await screen.findByTestId("start-backup"));
    await waitFor(() => expect(mocked.runBackupNow).toHaveBeenCalledWith("c1"));
  });

  it("shows a running backup's progress and cancels it", async () => {
    mocked.listExecutions.mockResolvedValue([{ ...executions[1], metadata: { progress: { table: "users", tables_done: 1, tables_total: 4, rows: 10 } } }]);
    mocked.cancelBackup.mockResolvedValue(true);
    renderWithClient(<BackupDashboard />);
    expect(await screen.findByText(/users · 10 rows/)).toBeInTheDocument();
    await userEvent.click(screen.getByTestId("cancel-backup"));
    await waitFor(() => expect(mocked.cancelBackup).toHaveBeenCalledWith("2"));
  });

  it("verifies a completed backup quickly or deeply and shows the last check, failed ones in red", async () => {
    const quick = { execution_id: "1", deep: false, ok: true, message: "the archive's SHA-256 matches its trailer and the catalog (400000 bytes)", at: "2025-01-06T09:00:00Z", archives: 1, rows: 0 };
    const deep = { execution_id: "1", deep: true, ok: false, message: "the archive /b/1 is damaged or was altered: section \"public.users\", chunk 2 of 3 failed authentication", at: "2025-01-06T09:05:00Z", archives: 0, rows: 0 };
    mocked.checkBackup.mockResolvedValueOnce(quick).mockResolvedValueOnce(deep);
    renderWithClient(<BackupDashboard />);
    const rows = await screen.findAllByTestId("execution");
    expect(within(rows[1]).queryByTestId("verify-backup")).toBeNull();
    await userEvent.click(within(rows[0]).getByTestId("verify-backup"));
    await waitFor(() => expect(mocked.checkBackup).toHaveBeenCalledWith("1", false));
    expect(await within(rows[0]).findByTestId("last-check")).toHaveTextContent("(quick check): the archive's SHA-256 matches its trailer and the catalog");
    await userEvent.click(within(rows[0]).getByTestId("deep-verify-backup"));
    await waitFor(() => expect(mocked.checkBackup).toHaveBeenCalledWith("1", true));
    await waitFor(() => expect(within(rows[0]).getByTestId("last-check")).toHaveTextContent('Check failed'));
    expect(within(rows[0]).getByTestId("last-check")).toHaveTextContent('(deep check): the archive /b/1 is damaged or was altered: section "public.users", chunk 2 of 3');
    expect(within(rows[0]).getByTestId("last-check")).toHaveClass("text-red-600");
  });

  it("shows who started a backup, whose key signed it, where its archive is, and its second copy (verified or failed)", async () => {
    mocked.listExecutions.mockResolvedValue([
      { ...executions[0], initiated_by: "olga", metadata: { writer: "backup@server-7", writer_key: "ab12cd34ef56" }, second_copy: { storage_name: "Offsite", status: "completed", file_path: "s3://b/p/archives/1.shar", error_message: null, created_at: "2025-01-05T10:31:00Z" } },
      { ...executions[0], id: "3", second_copy: { storage_name: "USB disk", status: "failed", file_path: null, error_message: "/mnt/usb does not exist", created_at: "2025-01-05T10:31:00Z" } },
    ]);
    renderWithClient(<BackupDashboard />);
    const rows = await screen.findAllByTestId("execution");
    expect(within(rows[0]).getByTestId("initiated-by")).toHaveTextContent("by olga");
    expect(within(rows[0]).getByTestId("archive-path")).toHaveTextContent("/b/1");
    expect(within(rows[0]).getByTestId("second-copy")).toHaveTextContent("Second copy on Offsite: copied and verified");
    expect(within(rows[1]).getByTestId("second-copy")).toHaveTextContent("Second copy on USB disk failed: /mnt/usb does not exist");
    expect(within(rows[1]).queryByTestId("initiated-by")).toBeNull();
    expect(within(rows[0]).getByTestId("signed-by")).toHaveTextContent("Signed by backup@server-7");
    expect(within(rows[0]).getByTestId("signed-by")).toHaveAttribute("title", "writer key ab12cd34ef56");
    expect(within(rows[1]).queryByTestId("signed-by")).toBeNull();
  });

  it("shows the last check recorded with a backup, and no Verify, Deep verify or Cancel to a read-only admin", async () => {
    const recorded = { execution_id: "1", deep: true, ok: true, message: "every section of the backup decrypts", at: "2025-01-06T09:00:00Z", archives: 1, rows: 1200 };
    mocked.listExecutions.mockResolvedValue([{ ...executions[0], metadata: { last_check: recorded } }, executions[1]]);
    renderWithClient(
      <SessionProvider info={acting("rita", "read_only_admin", ["backup:view_history", "backup:view_status"])}>
        <BackupDashboard />
      </SessionProvider>,
    );
    const rows = await screen.findAllByTestId("execution");
    expect(within(rows[0]).getByTestId("last-check")).toHaveTextContent("(deep check): every section of the backup decrypts");
    expect(screen.queryByTestId("verify-backup")).toBeNull();
    expect(screen.queryByTestId("deep-verify-backup")).toBeNull();
    expect(screen.queryByTestId("cancel-backup")).toBeNull();
  });

  it("filters the backups by status and shows older ones on request; the Restore tab offers every completed backup", async () => {
    const many = Array.from({ length: 50 }, (_, i) => ({ ...executions[0], id: `f${i}`, status: "failed" as const, error_message: `failure ${i}` }));
    mocked.listExecutions.mockImplementation(async (limit?: number, status?: string | null) => (status === "failed" ? many.slice(0, limit) : executions));
    renderWithClient(<BackupDashboard />);
    await screen.findAllByTestId("execution");
    expect(mocked.listExecutions).toHaveBeenCalledWith(50, null);
    expect(screen.queryByTestId("executions-more")).toBeNull();
    await userEvent.selectOptions(screen.getByTestId("executions-status"), "failed");
    await waitFor(() => expect(mocked.listExecutions).toHaveBeenCalledWith(50, "failed"));
    expect(await screen.findByText("failure 49")).toBeInTheDocument();
    await userEvent.click(screen.getByTestId("executions-more"));
    await waitFor(() => expect(mocked.listExecutions).toHaveBeenCalledWith(100, "failed"));
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await waitFor(() => expect(mocked.listExecutions).toHaveBeenCalledWith(1_000_000, "completed"));
  });

  it("refreshes the backups at once when the engine pushes a job event", async () => {
    let push: ((e: import("../api").JobEvent) => void) | undefined;
    mocked.onJobEvent.mockImplementation(async (handler) => {
      push = handler;
      return () => {};
    });
    renderWithClient(<BackupDashboard />);
    await screen.findAllByTestId("execution");
    await waitFor(() => expect(push).toBeDefined());
    const before = mocked.listExecutions.mock.calls.length;
    push?.({ kind: "backup", id: "2", status: "completed", table: null, tables_done: 5, tables_total: 5, rows: 10 });
    await waitFor(() => expect(mocked.listExecutions.mock.calls.length).toBeGreaterThan(before));
  });

  it("refreshes what each kind of job changes, and only that", () => {
    // A migration's events refresh the migrations, not the backups (they once did); a restore's
    // also the backups (its safety backup); every kind the engine has is mapped.
    const keys = (kind: import("../api").JobKind) => staleAfterEvent({ kind, id: "1", status: null, table: null, tables_done: 0, tables_total: 0, rows: 0 }).map((k) => k[0]);
    expect(keys("migration")).toEqual(["migrations"]);
    expect(keys("backup")).toEqual(["executions"]);
    expect(keys("restore")).toEqual(["restores", "executions"]);
  });

  it("labels scheduled runs and runs skipped because the previous one was still running", async () => {
    mocked.listExecutions.mockResolvedValue([
      { ...executions[0], id: "s1", status: "cancelled", error_message: "skipped: the previous run (x) of \"Daily Full Backup\" was still running", metadata: { skipped: true, trigger: "schedule" } },
      { ...executions[0], id: "s2", metadata: { trigger: "schedule" } },
    ]);
    renderWithClient(<BackupDashboard />);
    const rows = await screen.findAllByTestId("execution");
    expect(rows[0]).toHaveTextContent("skipped");
    expect(rows[0]).toHaveTextContent("was still running");
    expect(rows[1]).toHaveTextContent("Daily Full Backup· scheduled");
  });

  it("lists recorded restore operations and migration jobs with status, progress and errors", async () => {
    mocked.listRestores.mockResolvedValue([{
      id: "r1", backup_execution_id: "1", restore_type: "tenant_only", target_tenant_id: "t", restore_point: null, status: "failed",
      progress_percentage: 40, tables_to_restore: null, exclude_tables: null, preserve_ids: false, started_at: "2025-01-05T12:00:00Z",
      completed_at: null, initiated_by: "op", error_message: "the target is not empty", restored_records: {},
      target: "postgres://db/app", source_archive: "/b/1", safety_backup_id: null, new_tenant_id: null, current_table: null,
    }]);
    mocked.listMigrations.mockResolvedValue([{
      id: "m1", migration_name: "Copy Acme", migration_type: "tenant_copy", source_tenant_id: null, target_tenant_id: null,
      source_file_path: null, target_file_path: null, status: "running", progress_percentage: 75, records_processed: 3, records_total: 4,
      started_at: "2025-01-05T12:00:00Z", completed_at: null, initiated_by: "op", error_message: null,
    }]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    const restore = await screen.findByTestId("restore-operation");
    expect(restore).toHaveTextContent("Restore: tenant t (as a copy)");
    expect(restore).toHaveTextContent("the target is not empty");
    expect(within(restore).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "40");
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    const job = await screen.findByTestId("migration-job");
    expect(job).toHaveTextContent("tenant_copy · 3/4 records");
    expect(within(job).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "75");
  });

  it("a running verify by restoring can be cancelled and says so", async () => {
    let reject: (e: unknown) => void = () => {};
    mocked.verifyByRestoring.mockReturnValue(new Promise((_, r) => { reject = r; }));
    mocked.cancelVerify.mockImplementation(async () => {
      reject(new ApiError("cancelled", "cancelled; nothing was kept"));
      return true;
    });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await userEvent.click(await screen.findByTestId("verify-by-restoring"));
    await userEvent.click(await screen.findByTestId("verify-cancel"));
    await waitFor(() => expect(mocked.cancelVerify).toHaveBeenCalledWith("1"));
    expect(await screen.findByRole("alert")).toHaveTextContent("cancelled; nothing was kept");
    expect(screen.queryByTestId("verify-cancel")).not.toBeInTheDocument();
  });

  it("plans a tenant restore, asks for the database's name, then starts it; a running restore can be cancelled", async () => {
    mocked.listRestores.mockResolvedValue([{
      id: "r2", backup_execution_id: "1", restore_type: "tenant_only", target_tenant_id: "acme", restore_point: null, status: "running",
      progress_percentage: 50, tables_to_restore: null, exclude_tables: null, preserve_ids: true, started_at: "2025-01-05T12:00:00Z",
      completed_at: null, initiated_by: "op", error_message: null, restored_records: {},
      target: "postgres://db/app", source_archive: "/b/1", safety_backup_id: null, new_tenant_id: null, current_table: "public.projects",
    }]);
    mocked.planRestore.mockResolvedValue({
      restore_type: "tenant_only", chain: [{ id: "abcdef123456", backup_type: "full", snapshot_time: "2025-01-05T10:00:00Z", source_name: "Demo platform", file: "/b/1" }],
      point_in_time: null, target: "postgres://db/app", target_database: "app", create: false, clean: false, tenant_id: "acme", preserve_ids: true,
      new_tenant_id: null, tables: [{ table: "public.projects", rows_in_backup: 12, inserted: 1, updated: 2, deleted: 3 }], rows: 12,
      replaced_objects: 0, destructive: true, safety_backup: true, warnings: ["x references the tenant table y but is not in the backup"],
      exact: true, estimated_bytes: 1000, estimated_seconds: 1,
    });
    mocked.startRestore.mockResolvedValue("r3");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    const running = await screen.findByTestId("restore-operation");
    expect(running).toHaveTextContent("now: public.projects");
    expect(running).toHaveTextContent("from /b/1");
    expect(running).toHaveTextContent("by op");
    await userEvent.click(screen.getByTestId("restore-cancel"));
    await waitFor(() => expect(mocked.cancelRestore).toHaveBeenCalledWith("r2"));

    await userEvent.type(await screen.findByTestId("restore-tenant"), "acme");
    await userEvent.click(screen.getByTestId("restore-review"));
    const plan = await screen.findByTestId("restore-plan");
    expect(mocked.planRestore).toHaveBeenCalledWith(expect.objectContaining({
      backup_execution_id: "1", connection_id: "k1", restore_type: "tenant_only", tenant_id: "acme", preserve_ids: true, safety_backup: true,
    }));
    expect(within(plan).getByTestId("restore-plan-table")).toHaveTextContent("public.projects1212");
    expect(within(plan).getByTestId("restore-plan-warning")).toHaveTextContent("not in the backup");
    expect(plan).toHaveTextContent("A safety backup of what is replaced is taken first.");
    const start = screen.getByTestId("restore-start");
    expect(start).toBeDisabled();
    await userEvent.type(screen.getByTestId("restore-confirm"), "ap");
    expect(start).toBeDisabled();
    await userEvent.type(screen.getByTestId("restore-confirm"), "p");
    expect(start).toBeEnabled();
    await userEvent.click(start);
    await waitFor(() => expect(mocked.startRestore).toHaveBeenCalledTimes(1));
    expect(await screen.findByTestId("restore-started")).toBeInTheDocument();
  });

  it("restores a backup whole into a new SQLite file chosen in a save dialog", async () => {
    mocked.pickNewDatabaseFile.mockResolvedValue("/home/me/restored.db");
    mocked.planRestore.mockResolvedValue({
      restore_type: "full", chain: [{ id: "abcdef123456", backup_type: "full", snapshot_time: "2025-01-05T10:00:00Z", source_name: "Demo platform", file: "/b/1" }],
      point_in_time: null, target: "sqlite:///home/me/restored.db", target_database: "/home/me/restored.db", create: false, clean: false, tenant_id: null, preserve_ids: true,
      new_tenant_id: null, tables: [{ table: "tenants", rows_in_backup: 50, inserted: 50, updated: 0, deleted: 0 }], rows: 50,
      replaced_objects: 0, destructive: false, safety_backup: false, warnings: [], exact: false, estimated_bytes: 1000, estimated_seconds: 1,
    });
    mocked.startRestore.mockResolvedValue("r9");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await userEvent.selectOptions(await screen.findByTestId("restore-target"), "A new SQLite file…");
    expect(screen.getByTestId("restore-type")).toHaveValue("full");
    expect(screen.getByTestId("restore-new-file")).toHaveTextContent("no file chosen yet");
    expect(screen.getByTestId("restore-review")).toBeDisabled();
    await userEvent.click(screen.getByTestId("choose-new-file"));
    expect(await screen.findByTestId("restore-new-file")).toHaveTextContent("/home/me/restored.db");
    await userEvent.click(screen.getByTestId("restore-review"));
    await waitFor(() => expect(mocked.planRestore).toHaveBeenCalledWith(expect.objectContaining({ backup_execution_id: "1", restore_type: "full", target_file: "/home/me/restored.db" })));
    await userEvent.click(await screen.findByTestId("restore-start"));
    await waitFor(() => expect(mocked.startRestore).toHaveBeenCalledWith(expect.objectContaining({ target_file: "/home/me/restored.db" })));
  });

  it("suggests the target's tenants for a tenant restore", async () => {
    mocked.listConnections.mockResolvedValue([{ ...connections[0], id: "pg", name: "Platform", kind: "postgres", sqlite_path: null, host: "db" }]);
    mocked.listTenants.mockResolvedValue([{ id: "acme", name: "Acme Corp" }, { id: "beta", name: null }]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await waitFor(() => expect(mocked.listTenants).toHaveBeenCalledWith("pg"));
    const options = await screen.findByTestId("restore-tenant-options");
    await waitFor(() => expect(options.querySelectorAll("option")).toHaveLength(2));
    expect(options.querySelector("option[value=acme]")).toHaveTextContent("Acme Corp");
    expect(screen.getByTestId("restore-tenant")).toHaveAttribute("list", "restore-tenant-options");
  });

  it("asks for a point in time only when chosen, and sends it as UTC", async () => {
    mocked.planRestore.mockRejectedValue(new ApiError("not_found", "no backup was taken at or before that time"));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await userEvent.type(await screen.findByTestId("restore-tenant"), "acme");
    expect(screen.queryByTestId("restore-point")).not.toBeInTheDocument();
    await userEvent.click(screen.getByTestId("restore-at-point"));
    fireEvent.change(screen.getByTestId("restore-point"), { target: { value: "2025-01-05T10:15:00" } });
    await userEvent.click(screen.getByTestId("restore-review"));
    await waitFor(() => expect(mocked.planRestore).toHaveBeenCalledWith(expect.objectContaining({
      restore_point: new Date("2025-01-05T10:15:00").toISOString(),
    })));
    expect(await screen.findByRole("alert")).toHaveTextContent("no backup was taken at or before");
  });

  it("previews retention with a reason per backup and applies it on request", async () => {
    const plan = {
      configuration_id: "c1", configuration_name: "Daily Full Backup", retention_days: 30, cutoff: "2025-01-01T00:00:00Z",
      items: [
        { execution_id: "1", archive_id: "a1", backup_type: "full", started_at: "2024-11-01T00:00:00Z", file_path: "/b/1", bytes: 2048, action: "delete" as const, reason: "older than 30 days" },
        { execution_id: "2", archive_id: "a2", backup_type: "full", started_at: "2024-12-01T00:00:00Z", file_path: "/b/2", bytes: 2048, action: "keep" as const, reason: "the last completed full backup is always kept" },
      ],
      delete_count: 1, bytes_freed: 2048,
    };
    mocked.previewRetention.mockResolvedValue(plan);
    mocked.applyRetention.mockResolvedValue(plan);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("retention"));
    const items = await screen.findAllByTestId("retention-item");
    expect(items[0]).toHaveTextContent("delete");
    expect(items[0]).toHaveTextContent("older than 30 days");
    expect(items[1]).toHaveTextContent("the last completed full backup is always kept");
    expect(mocked.applyRetention).not.toHaveBeenCalled();
    await userEvent.click(screen.getByTestId("retention-apply"));
    await waitFor(() => expect(mocked.applyRetention).toHaveBeenCalledWith("c1"));
    expect(await screen.findByTestId("retention-done")).toHaveTextContent("Deleted 1 backups");

    // Applying again, and cancelling while it runs.
    let reject: (e: unknown) => void = () => {};
    mocked.applyRetention.mockReturnValue(new Promise((_, r) => { reject = r; }));
    mocked.cancelRetention.mockImplementation(async () => {
      reject(new ApiError("cancelled", "retention cancelled: 0 of 1 backups were deleted before the cancel; the others are kept"));
      return true;
    });
    await userEvent.click(screen.getByTestId("retention-apply"));
    await userEvent.click(await screen.findByTestId("retention-cancel"));
    await waitFor(() => expect(mocked.cancelRetention).toHaveBeenCalledWith("c1"));
    expect(await screen.findByRole("alert")).toHaveTextContent("retention cancelled");
  });

  it("shows why a plan is refused", async () => {
    mocked.planRestore.mockRejectedValue(new ApiError("validation", "the target's table public.projects has no column title that the backup has"));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await userEvent.type(await screen.findByTestId("restore-tenant"), "acme");
    await userEvent.click(screen.getByTestId("restore-review"));
    expect(await screen.findByRole("alert")).toHaveTextContent("has no column title");
    expect(screen.queryByTestId("restore-start")).not.toBeInTheDocument();
  });

  it("recovers the catalog from a repository chosen with the folder picker, and shows the runbook", async () => {
    mocked.pickDirectory.mockResolvedValue("/mnt/backups/platform");
    mocked.rebuildCatalog.mockResolvedValue({
      repository: "/mnt/backups/platform", repository_id: "r", archives: 3, added: 3, already_known: 0, unreadable: [],
      storage_name: "Recovered platform", storage_added: true,
    });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    await userEvent.click(await screen.findByTestId("recover-from-storage"));
    await waitFor(() => expect(mocked.rebuildCatalog).toHaveBeenCalledWith("/mnt/backups/platform"));
    expect(await screen.findByTestId("recover-report")).toHaveTextContent('3 backups recorded from /mnt/backups/platform (0 already known); registered as the storage "Recovered platform"');
    await userEvent.click(screen.getByTestId("runbook-toggle"));
    expect(screen.getByTestId("runbook")).toHaveTextContent("recovery kit");
    // From a registered (cloud) storage, without a folder picker.
    mocked.rebuildCatalogFromStorage.mockResolvedValue({
      repository: "s3://bucket/platform", repository_id: "r", archives: 2, added: 2, already_known: 0, unreadable: [], storage_name: "Local backups", storage_added: false,
    });
    await userEvent.selectOptions(screen.getByTestId("recover-source"), "Local backups");
    await userEvent.click(screen.getByTestId("recover-from-storage"));
    await waitFor(() => expect(mocked.rebuildCatalogFromStorage).toHaveBeenCalledWith("s1"));
    expect(await screen.findByText(/2 backups recorded from s3:\/\/bucket\/platform/)).toBeInTheDocument();
    expect(mocked.pickDirectory).toHaveBeenCalledTimes(1);
  });

  it("shows used space, capacity, growth and health per storage; Check now probes it; a failing storage is flagged", async () => {
    mocked.listStorage.mockResolvedValue([
      { ...storage[0], used_space: 500 * 1024 * 1024, total_capacity: 1000 * 1024 * 1024, last_health_check: "2025-01-05T10:00:00Z", last_health_ok: true, last_health_latency_ms: 3, last_health_message: "wrote, read back and deleted a probe in 3 ms" },
      { ...storage[0], id: "s2", storage_name: "USB disk", is_default: false, last_health_check: "2025-01-05T10:00:00Z", last_health_ok: false, last_health_latency_ms: 0, last_health_message: "/mnt/usb does not exist or is not a directory" },
    ]);
    mocked.storageSamples.mockResolvedValue([
      { at: "2025-01-01T00:00:00Z", used_space: 100, total_capacity: 1000, archives: 1 },
      { at: "2025-01-03T00:00:00Z", used_space: 500, total_capacity: 1000, archives: 3 },
    ]);
    mocked.checkStorage.mockResolvedValue({ storage_name: "Local backups", ok: true, latency_ms: 2, message: "ok", at: "2025-01-05T11:00:00Z" });
    mocked.refreshStorageUsage.mockResolvedValue({ storage_name: "Local backups", used_space: 1, archives: 1, total_capacity: 2, available: 1, at: "2025-01-05T11:00:00Z" });
    renderWithClient(<BackupDashboard />);
    expect(await screen.findByTestId("storage-failing")).toHaveTextContent("Storage “USB disk” is failing its health check: /mnt/usb does not exist");
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    const rows = await screen.findAllByTestId("storage");
    expect(rows[0]).toHaveTextContent("500 MB / 1000 MB");
    expect(within(rows[0]).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "50");
    expect(rows[0]).toHaveTextContent("healthy");
    expect(rows[1]).toHaveTextContent("failing");
    expect((await within(rows[0]).findAllByTestId("growth-chart"))[0]).toHaveAttribute("aria-label", "used space over time: 100 Bytes to 500 Bytes");
    await userEvent.click(within(rows[0]).getByTestId("check-storage"));
    await waitFor(() => expect(mocked.checkStorage).toHaveBeenCalledWith("s1"));
    await waitFor(() => expect(mocked.refreshStorageUsage).toHaveBeenCalledWith("s1"));
  });

  it("says per storage who can open its backups and whether the recovery kit was printed", async () => {
    mocked.listStorage.mockResolvedValue([
      storage[0],
      { ...storage[0], id: "s2", storage_name: "Offsite", is_default: false },
      { ...storage[0], id: "s3", storage_name: "New disk", is_default: false },
      { ...storage[0], id: "s4", storage_name: "USB disk", is_default: false },
      { ...storage[0], id: "s5", storage_name: "Headless", is_default: false },
    ]);
    const none = { has_repository: true, in_keychain: false, password: true, super_admins: [], pending: [], former: [], recovery_exported: false, problem: null };
    const custody: Record<string, KeyCustody> = {
      s1: { ...none, storage_id: "s1", in_keychain: true },
      s2: { ...none, storage_id: "s2", super_admins: ["alice", "bob"], pending: ["carol"], former: ["dave"], recovery_exported: true },
      s3: { ...none, storage_id: "s3", has_repository: false },
      s4: { ...none, storage_id: "s4", problem: "/mnt/usb does not exist" },
      s5: { ...none, storage_id: "s5" },
    };
    mocked.storageKeyCustody.mockImplementation(async (id: string) => custody[id]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    const rows = await screen.findAllByTestId("storage");
    const holders = async (i: number) => (await within(rows[i]).findByTestId("key-holders")).textContent;
    expect(await holders(0)).toContain("Backups open with: this workstation's keychain (anyone using Safehold here can restore)");
    expect(await holders(0)).toContain("Recovery kit: not exported yet — without it, a lost key loses every backup");
    expect(await holders(1)).toContain("Backups open with: the super admins alice, bob");
    expect(await holders(1)).toContain("Not yet sealed to carol");
    expect(await holders(1)).toContain("Still sealed to former super admin dave");
    expect(await holders(1)).toContain("Recovery kit: exported");
    expect(await holders(1)).not.toContain("keychain");
    expect(await holders(2)).toContain("Keys: none yet");
    expect(await holders(3)).toContain("Keys: not known — /mnt/usb does not exist");
    expect(await holders(4)).toContain("Backups open with: its repository password (given with --password-file; not kept on this workstation)");
    expect(mocked.storageKeyCustody).toHaveBeenCalledWith("s2");
    expect(within(rows[1]).queryByTestId("save-recovery-kit")).toBeNull();
  });

  it("saves a storage's recovery kit to the file chosen, shows it once, and asks nothing when the dialog is cancelled", async () => {
    let exported = false;
    mocked.storageKeyCustody.mockImplementation(async () => ({ storage_id: "s1", has_repository: true, in_keychain: true, password: true, super_admins: [], pending: [], former: [], recovery_exported: exported, problem: null }));
    mocked.pickKitFile.mockResolvedValueOnce(null).mockResolvedValueOnce("/home/me/kit.txt");
    mocked.exportRecoveryKit.mockImplementation(async () => {
      exported = true;
      return "SAFEHOLD RECOVERY KIT\n\nRecovery key:\n\n    SHRK-0123-4567\n";
    });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    await userEvent.click(await screen.findByTestId("save-recovery-kit"));
    await waitFor(() => expect(mocked.pickKitFile).toHaveBeenCalledWith("safehold-recovery-kit-Local-backups.txt"));
    expect(mocked.exportRecoveryKit).not.toHaveBeenCalled();
    await userEvent.click(screen.getByTestId("save-recovery-kit"));
    await waitFor(() => expect(mocked.exportRecoveryKit).toHaveBeenCalledWith("s1", "/home/me/kit.txt"));
    const kit = await screen.findByTestId("recovery-kit");
    expect(kit).toHaveTextContent("Saved to /home/me/kit.txt");
    expect(kit).toHaveTextContent("SHRK-0123-4567");
    expect(await screen.findByText(/Recovery kit: exported/)).toBeInTheDocument();
    expect(screen.queryByTestId("save-recovery-kit")).toBeNull();
  });

  it("lists whose keys signed a storage's backups and approves a writer after asking", async () => {
    mocked.storageKeyCustody.mockResolvedValue({ storage_id: "s1", has_repository: true, in_keychain: true, password: true, super_admins: [], pending: [], former: [], recovery_exported: true, problem: null });
    let approved = false;
    mocked.storageWriters.mockImplementation(async () => [
      { public_key: "aa".repeat(32), name: "olga@workstation", approved: true, approved_at: "2026-12-01T10:00:00Z", backups: 12 },
      { public_key: "bb".repeat(32), name: "backup@server-7", approved, approved_at: approved ? "2026-12-06T10:00:00Z" : null, backups: 1 },
    ]);
    mocked.approveWriter.mockImplementation(async (_id: string, key: string) => {
      approved = true;
      return { public_key: key, name: "backup@server-7", approved: true, approved_at: "2026-12-06T10:00:00Z", backups: 1 };
    });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    const writers = await screen.findAllByTestId("writer");
    expect(writers[0]).toHaveTextContent("olga@workstation (12 backups, approved)");
    expect(writers[1]).toHaveTextContent("backup@server-7 (1 backup, not approved: its backups do not restore)");
    expect(within(writers[0]).queryByTestId("approve-writer")).toBeNull();
    await userEvent.click(within(writers[1]).getByTestId("approve-writer"));
    expect(mocked.approveWriter).not.toHaveBeenCalled();
    expect(screen.getByTestId("approve-writer-confirm")).toHaveTextContent("Approve backup@server-7 (key bbbbbbbbbbbbbbbb…)?");
    await userEvent.click(screen.getByTestId("approve-writer-yes"));
    await waitFor(() => expect(mocked.approveWriter).toHaveBeenCalledWith("s1", "bb".repeat(32)));
    await waitFor(() => expect(screen.getAllByTestId("writer")[1]).toHaveTextContent("backup@server-7 (1 backup, approved)"));
    expect(screen.queryByTestId("approve-writer-confirm")).toBeNull();
  });

  it("offers the recovery kit and the approval of writers only to those who may read backups", async () => {
    mocked.storageWriters.mockResolvedValue([{ public_key: "cc".repeat(32), name: "backup@server-9", approved: false, approved_at: null, backups: 2 }]);
    mocked.storageKeyCustody.mockResolvedValue({ storage_id: "s1", has_repository: true, in_keychain: false, password: true, super_admins: ["alice"], pending: [], former: [], recovery_exported: false, problem: null });
    renderWithClient(
      <SessionProvider info={acting("olga", "platform_operator", ["backup:view_history", "backup:view_status", "backup:trigger_manual"])}>
        <BackupDashboard />
      </SessionProvider>,
    );
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    expect(await screen.findByTestId("key-holders")).toHaveTextContent("a super admin saves it here");
    expect(screen.queryByTestId("save-recovery-kit")).toBeNull();
    expect(await screen.findByTestId("writer")).toHaveTextContent("not approved");
    expect(screen.queryByTestId("approve-writer")).toBeNull();
  });

  it("makes a storage the default, deactivates it, changes a cloud storage's quota and keys, and asks before removing", async () => {
    const offsite = { ...storage[0], id: "s2", storage_name: "Offsite", storage_type: "s3" as const, is_default: false, storage_config: { url: "s3://b/p" } };
    mocked.listStorage.mockResolvedValue([storage[0], offsite]);
    mocked.updateStorage.mockResolvedValue(offsite);
    mocked.removeStorage.mockResolvedValue(null);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    const rows = await screen.findAllByTestId("storage");
    expect(within(rows[0]).queryByTestId("make-default")).toBeNull();
    expect(within(rows[0]).queryByTestId("edit-storage")).toBeNull();
    await userEvent.click(within(rows[1]).getByTestId("make-default"));
    await waitFor(() => expect(mocked.updateStorage).toHaveBeenLastCalledWith("s2", { make_default: true, is_active: null, quota_bytes: null, credentials: null }));
    await userEvent.click(within(rows[1]).getByTestId("toggle-storage"));
    await waitFor(() => expect(mocked.updateStorage).toHaveBeenLastCalledWith("s2", { make_default: false, is_active: false, quota_bytes: null, credentials: null }));
    await userEvent.click(within(rows[1]).getByTestId("edit-storage"));
    await userEvent.type(within(rows[1]).getByTestId("storage-quota"), "2");
    await userEvent.type(within(rows[1]).getByTestId("storage-key-id"), "AKIANEW");
    await userEvent.type(within(rows[1]).getByTestId("storage-secret"), "new secret");
    await userEvent.click(within(rows[1]).getByTestId("storage-save"));
    await waitFor(() => expect(mocked.updateStorage).toHaveBeenLastCalledWith("s2", {
      make_default: false, is_active: null, quota_bytes: 2 * 1024 ** 3, credentials: { access_key_id: "AKIANEW", secret_access_key: "new secret", service_account_key: null },
    }));
    await userEvent.click(within(rows[1]).getByTestId("remove-storage"));
    expect(mocked.removeStorage).not.toHaveBeenCalled();
    await userEvent.click(within(rows[1]).getByTestId("remove-storage-confirm"));
    await waitFor(() => expect(mocked.removeStorage).toHaveBeenCalledWith("s2"));
  });

  it("adds an S3-compatible storage with its key kept for the keychain", async () => {
    mocked.addRemoteStorage.mockResolvedValue({ ...storage[0], id: "s9", storage_name: "Offsite", storage_type: "s3", storage_config: { url: "s3://b/p" } });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    await userEvent.click(await screen.findByTestId("add-storage"));
    await userEvent.selectOptions(screen.getByLabelText("Kind"), "s3");
    await userEvent.type(screen.getByLabelText("Name"), "Offsite");
    await userEvent.type(screen.getByLabelText("Location"), "s3://b/p");
    await userEvent.type(screen.getByLabelText("Endpoint"), "http://minio:9000");
    await userEvent.type(screen.getByLabelText("Quota in GB"), "2");
    await userEvent.type(screen.getByLabelText("Access key id"), "AKIA1");
    await userEvent.type(screen.getByLabelText("Secret"), "s3cret");
    await userEvent.click(screen.getByTestId("save-storage"));
    await waitFor(() => expect(mocked.addRemoteStorage).toHaveBeenCalledWith({
      name: "Offsite", url: "s3://b/p", endpoint: "http://minio:9000", region: null, quota_bytes: 2 * 1024 ** 3,
      credentials: { access_key_id: "AKIA1", secret_access_key: "s3cret", service_account_key: null }, is_default: false,
    }));
    await waitFor(() => expect(screen.queryByTestId("add-storage-form")).not.toBeInTheDocument());
  });

  it("lists storage with its location", async () => {
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    expect(await screen.findByText(/\/backups/)).toBeInTheDocument();
  });
});

describe("Migration wizard", () => {
  const pg: Connection = { ...connections[0], id: "k2", name: "Platform", kind: "postgres", sqlite_path: null, host: "db", port: 5432, database_name: "app", username: "u" };
  const table = (t: string, problems: MigrationReport["tables"][number]["problems"] = []) => ({
    table: t, source_table: t, rows_read: 4, rows_written: problems.length ? 0 : 4, rows_updated: 0, rows_merged: 0, rows_renamed: 0,
    rows_rejected: problems.length ? 1 : 0, problems, notes: [],
  });
  const report = (tables: MigrationReport["tables"]): MigrationReport => ({
    migration_type: "tenant_copy", committed: false, source_tenant_ids: ["acme"], target_tenant_id: "acme-staging", tables, warnings: [],
    mapping: [{ source: "public.users", target: "public.users", columns: { email: "email", id: "id" }, drop: [], defaults: {} }],
    target_file: null, files: [], rows_read: 8, rows_written: 4, rows_rejected: 0, rows_removed: 0, references: [],
  });

  it("walks source, target, mapping, rules and validation; a conflict needs a rule and a new validation before Run", async () => {
    mocked.listConnections.mockResolvedValue([...connections, pg]);
    mocked.listTenants.mockResolvedValue([{ id: "acme", name: "Acme" }, { id: "beta", name: "Beta" }]);
    mocked.proposeMigration.mockResolvedValue(report([]));
    mocked.validateMigration
      .mockResolvedValueOnce(report([table("public.tenants", [{ kind: "unique_conflict", message: "1 rows equal a target row on public.tenants (slug)", count: 1, samples: ["(acme)"], columns: ["slug"] }]), table("public.users")]))
      .mockResolvedValueOnce(report([table("public.tenants"), table("public.users")]));
    mocked.startMigration.mockResolvedValue("m9");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    await userEvent.click(await screen.findByTestId("mig-migrate"));
    const next = screen.getByTestId("mig-next");
    expect(next).toBeDisabled();
    await waitFor(() => expect(mocked.listTenants).toHaveBeenCalledWith("k2"));
    await userEvent.selectOptions(await screen.findByTestId("mig-tenant"), await screen.findByRole("option", { name: "Acme (acme)" }));
    await userEvent.click(next);
    await userEvent.type(screen.getByTestId("mig-new-tenant"), "acme-staging");
    await userEvent.click(screen.getByTestId("mig-next"));
    expect(await screen.findByTestId("mig-mapping")).toHaveTextContent("public.users → public.users");
    await userEvent.click(screen.getByTestId("mig-next"));
    await userEvent.click(screen.getByTestId("mig-add-rule"));
    await userEvent.type(screen.getByRole("textbox", { name: "Column" }), "email");
    await userEvent.click(screen.getByTestId("mig-next"));
    const problem = await screen.findByTestId("mig-problem");
    expect(problem).toHaveTextContent("unique_conflict");
    expect(problem).toHaveTextContent("e.g. (acme)");
    expect(screen.getByTestId("mig-next")).toBeDisabled();
    await userEvent.selectOptions(screen.getByTestId("mig-conflict-public.tenants"), "keep_both");
    expect(screen.getByTestId("mig-next")).toBeDisabled();
    await userEvent.click(screen.getByTestId("mig-revalidate"));
    expect(await screen.findByTestId("mig-valid")).toHaveTextContent("Validation passed");
    expect(mocked.validateMigration).toHaveBeenLastCalledWith(expect.objectContaining({ conflicts: { "public.tenants": "keep_both" } }));
    await userEvent.click(screen.getByTestId("mig-next"));
    expect(screen.getByTestId("mig-summary")).toHaveTextContent("Copy tenant acme of Platform into Platform as acme-staging");
    await userEvent.click(screen.getByTestId("mig-run"));
    await waitFor(() => expect(mocked.startMigration).toHaveBeenCalledTimes(1));
    expect(mocked.startMigration).toHaveBeenCalledWith(expect.objectContaining({
      migration_type: "tenant_copy", source: "k2", target: "k2", source_tenant_ids: ["acme"], target_tenant_id: "acme-staging",
      rules: [{ table: "public.users", column: "email", action: { rule: "mask" } }], conflicts: { "public.tenants": "keep_both" },
    }));
    expect(await screen.findByTestId("mig-started")).toBeInTheDocument();
  });

  it("lists the references validation infers; a confirmed one is declared and validated again", async () => {
    mocked.listConnections.mockResolvedValue([...connections, pg]);
    mocked.listTenants.mockResolvedValue([{ id: "acme", name: "Acme" }]);
    mocked.proposeMigration.mockResolvedValue(report([]));
    const inferred = { ...report([table("public.store", [{ kind: "unique_conflict", message: "1 rows equal a target row on public.store (manager_staff_id)", count: 1, samples: ["(2)"], columns: ["manager_staff_id"] }])]) };
    inferred.warnings = ["inferred: public.store.manager_staff_id=public.staff.staff_id looks like a reference that no foreign key declares (every value is found there): a copy keeps its values; confirm it with --reference public.store.manager_staff_id=public.staff.staff_id"];
    mocked.validateMigration.mockResolvedValueOnce(inferred).mockResolvedValueOnce(report([table("public.store")]));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    await userEvent.click(await screen.findByTestId("mig-migrate"));
    await userEvent.selectOptions(await screen.findByTestId("mig-tenant"), await screen.findByRole("option", { name: "Acme (acme)" }));
    await userEvent.click(screen.getByTestId("mig-next"));
    await userEvent.click(screen.getByTestId("mig-next"));
    await userEvent.click(screen.getByTestId("mig-next"));
    await userEvent.click(screen.getByTestId("mig-next"));
    const proposal = await screen.findByTestId("mig-inferred-reference");
    expect(proposal).toHaveTextContent("public.store.manager_staff_id=public.staff.staff_id");
    await userEvent.click(within(proposal).getByRole("button", { name: "Confirm" }));
    expect(screen.getByTestId("mig-declared-reference")).toHaveTextContent("public.store.manager_staff_id=public.staff.staff_id");
    await userEvent.click(screen.getByTestId("mig-revalidate"));
    expect(await screen.findByTestId("mig-valid")).toHaveTextContent("Validation passed");
    expect(mocked.validateMigration).toHaveBeenLastCalledWith(expect.objectContaining({ references: ["public.store.manager_staff_id=public.staff.staff_id"] }));
  });

  it("exports to a file chosen with the save dialog and imports files chosen with the open dialog", async () => {
    mocked.listConnections.mockResolvedValue([pg]);
    mocked.listTenants.mockResolvedValue([{ id: "acme", name: null }]);
    mocked.pickExportFile.mockResolvedValue("/home/me/acme.zip");
    mocked.pickImportFiles.mockResolvedValue(["/home/me/users.csv"]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    await userEvent.click(await screen.findByTestId("mig-export"));
    await userEvent.selectOptions(await screen.findByTestId("mig-tenant"), await screen.findByRole("option", { name: "acme" }));
    await userEvent.click(screen.getByTestId("mig-next"));
    await userEvent.click(screen.getByRole("button", { name: "Save as…" }));
    await waitFor(() => expect(screen.getByTestId("mig-target-file")).toHaveValue("/home/me/acme.zip"));
    await userEvent.click(screen.getByTestId("mig-close"));
    await userEvent.click(screen.getByTestId("mig-import"));
    await userEvent.click(await screen.findByTestId("mig-pick-files"));
    await waitFor(() => expect(screen.getByTestId("mig-files")).toHaveValue("/home/me/users.csv"));
    expect(screen.getByTestId("mig-next")).toBeEnabled();
  });

  it("exports a tenant as an encrypted archive: no rules step, a storage key, a .shar file", async () => {
    mocked.listConnections.mockResolvedValue([pg]);
    mocked.listTenants.mockResolvedValue([{ id: "acme", name: null }]);
    mocked.pickExportFile.mockResolvedValue("/home/me/acme.shar");
    mocked.validateMigration.mockResolvedValue({ ...report([table("public.users")]), migration_type: "data_export" });
    mocked.startMigration.mockResolvedValue("m7");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    await userEvent.click(await screen.findByTestId("mig-export"));
    await userEvent.selectOptions(await screen.findByTestId("mig-tenant"), await screen.findByRole("option", { name: "acme" }));
    await userEvent.click(screen.getByTestId("mig-next"));
    await userEvent.selectOptions(screen.getByTestId("mig-export-format"), "archive");
    expect(screen.getByTestId("mig-archive-repo")).toHaveValue("");
    await userEvent.click(screen.getByRole("button", { name: "Save as…" }));
    expect(mocked.pickExportFile).toHaveBeenCalledWith("tenant-acme.shar");
    await waitFor(() => expect(screen.getByTestId("mig-target-file")).toHaveValue("/home/me/acme.shar"));
    await userEvent.click(screen.getByTestId("mig-next"));
    // Straight to validation: an archive holds the rows as they are.
    expect(screen.queryByTestId("mig-add-rule")).not.toBeInTheDocument();
    expect(await screen.findByTestId("mig-valid")).toHaveTextContent("Validation passed");
    await userEvent.click(screen.getByTestId("mig-next"));
    expect(screen.getByTestId("mig-summary")).toHaveTextContent("as an encrypted Safehold archive");
    await userEvent.click(screen.getByTestId("mig-run"));
    await waitFor(() => expect(mocked.startMigration).toHaveBeenCalledWith(expect.objectContaining({
      migration_type: "data_export", export_format: "archive", archive_repository: null, target_file: "/home/me/acme.shar", rules: [],
    })));
  });

  it("a queued or running migration can be cancelled", async () => {
    mocked.listMigrations.mockResolvedValue([{
      id: "m1", migration_name: "Copy Acme", migration_type: "tenant_copy", source_tenant_id: "acme", target_tenant_id: "acme-2",
      source_file_path: null, target_file_path: null, status: "pending", progress_percentage: 0, records_processed: 0, records_total: 0,
      started_at: "2025-01-05T12:00:00Z", completed_at: null, initiated_by: "op", error_message: null,
    }]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    expect(await screen.findByTestId("migration-job")).toHaveTextContent("tenant_copy of tenant acme → tenant acme-2");
    await userEvent.click(screen.getByTestId("mig-cancel"));
    await waitFor(() => expect(mocked.cancelMigration).toHaveBeenCalledWith("m1"));
  });
});

describe("App", () => {
  it("says why when the engine could not start", async () => {
    mocked.startupStatus.mockRejectedValue(new ApiError("keychain", "no OS keychain is available"));
    renderWithClient(<App />);
    expect(await screen.findByText("Safehold could not start")).toBeInTheDocument();
    expect(screen.getByRole("alert")).toHaveTextContent("no OS keychain is available");
  });
});

describe("Operators and permissions", () => {
  const renderAs = (info: SessionInfo) =>
    renderWithClient(
      <SessionProvider info={info}>
        <BackupDashboard />
      </SessionProvider>,
    );

  it("a read-only admin sees history and configurations but no Run Now, Restore or storage changes", async () => {
    renderAs(acting("rita", "read_only_admin", ["backup:view_history"]));
    expect(await screen.findByText("full Backup")).toBeInTheDocument();
    expect(screen.queryByTestId("new-backup")).not.toBeInTheDocument();
    expect(screen.queryByTestId("open-settings")).not.toBeInTheDocument();
    expect(screen.getByRole("tab", { name: "Audit Log" })).toBeInTheDocument();
    expect(screen.queryByRole("tab", { name: "Operators" })).not.toBeInTheDocument();
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    expect(await screen.findByText("Daily Full Backup", { selector: ".font-medium" })).toBeInTheDocument();
    expect(screen.queryByTestId("run-now")).not.toBeInTheDocument();
    expect(screen.queryByTestId("new-configuration")).not.toBeInTheDocument();
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    expect(await screen.findByTestId("restore-denied")).toHaveTextContent("rita (read_only_admin) may not do this: it needs backup:restore_data");
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    expect(screen.getByTestId("mig-migrate")).toBeDisabled();
    await userEvent.click(screen.getByRole("tab", { name: "Storage" }));
    expect(await screen.findByText(/\/backups/)).toBeInTheDocument();
    expect(screen.queryByTestId("add-storage")).not.toBeInTheDocument();
    expect(screen.queryByTestId("remove-storage")).not.toBeInTheDocument();
  });

  it("a platform operator can Run Now but not restore", async () => {
    mocked.runBackupNow.mockResolvedValue("e9");
    renderAs(acting("olga", "platform_operator", ["backup:trigger_manual", "backup:view_status"]));
    expect(await screen.findByTestId("new-backup")).toBeInTheDocument();
    expect(screen.getByTestId("session-operator")).toHaveTextContent("olga");
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("run-now"));
    await waitFor(() => expect(mocked.runBackupNow).toHaveBeenCalledWith("c1"));
    expect(mocked.touchSession).toHaveBeenCalledTimes(1);
    expect(mocked.touchSession).toHaveBeenCalledTimes(1);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    expect(await screen.findByTestId("restore-denied")).toBeInTheDocument();
  });

  it("asks to sign in once operators exist, says why the last session ended, and signs in", async () => {
    mocked.sessionInfo
      .mockResolvedValueOnce({ needs_setup: false, operator: null, ended: "the session of alice ended after 15 minutes idle; sign in again" })
      .mockResolvedValue(acting("alice", "super_admin", superPermissions));
    mocked.signIn.mockRejectedValueOnce(new ApiError("auth_failed", 'wrong operator name or password for "alice"'));
    mocked.signIn.mockResolvedValue({ id: "alice", name: "alice", role: "super_admin", permissions: superPermissions });
    renderWithClient(<App />);
    expect(await screen.findByTestId("session-ended")).toHaveTextContent("ended after 15 minutes idle");
    await userEvent.type(screen.getByTestId("sign-in-name"), "alice");
    await userEvent.type(screen.getByTestId("sign-in-password"), "wrong one");
    await userEvent.click(screen.getByTestId("sign-in-submit"));
    expect(await screen.findByRole("alert")).toHaveTextContent("wrong operator name or password");
    await userEvent.clear(screen.getByTestId("sign-in-password"));
    await userEvent.type(screen.getByTestId("sign-in-password"), "correct horse battery");
    await userEvent.click(screen.getByTestId("sign-in-submit"));
    await waitFor(() => expect(mocked.signIn).toHaveBeenLastCalledWith("alice", "correct horse battery"));
    expect(await screen.findByText("Backup Management")).toBeInTheDocument();
    expect(screen.getByTestId("session-operator")).toHaveTextContent("alice");
  });

  it("offers to create the first super admin on the first start", async () => {
    mocked.createFirstOperator.mockResolvedValue({ id: "a", name: "alice", role: "super_admin", permissions: superPermissions });
    renderWithClient(<App />);
    await userEvent.click(await screen.findByTestId("first-operator-open"));
    await userEvent.type(screen.getByTestId("first-name"), "alice");
    await userEvent.type(screen.getByTestId("first-password"), "correct horse battery");
    await userEvent.type(screen.getByTestId("first-again"), "correct horse batterx");
    expect(screen.getByText("The passwords differ.")).toBeInTheDocument();
    expect(screen.getByTestId("first-create")).toBeDisabled();
    await userEvent.clear(screen.getByTestId("first-again"));
    await userEvent.type(screen.getByTestId("first-again"), "correct horse battery");
    await userEvent.click(screen.getByTestId("first-create"));
    await waitFor(() => expect(mocked.createFirstOperator).toHaveBeenCalledWith("alice", "correct horse battery"));
  });

  it("an operator changes their own password (current one checked, new one twice)", async () => {
    mocked.changePassword.mockRejectedValueOnce(new ApiError("auth_failed", "the current password is wrong; nothing was changed")).mockResolvedValue(null);
    renderAs(acting("olga", "platform_operator", ["backup:trigger_manual", "backup:view_status"]));
    await userEvent.click(await screen.findByTestId("change-password-open"));
    await userEvent.type(screen.getByTestId("password-current"), "not it");
    await userEvent.type(screen.getByTestId("password-new"), "a new long password");
    await userEvent.type(screen.getByTestId("password-again"), "a new long passworx");
    expect(screen.getByTestId("password-save")).toBeDisabled();
    await userEvent.clear(screen.getByTestId("password-again"));
    await userEvent.type(screen.getByTestId("password-again"), "a new long password");
    await userEvent.click(screen.getByTestId("password-save"));
    expect(await screen.findByRole("alert")).toHaveTextContent("the current password is wrong");
    await userEvent.clear(screen.getByTestId("password-current"));
    await userEvent.type(screen.getByTestId("password-current"), "my old password");
    await userEvent.click(screen.getByTestId("password-save"));
    await waitFor(() => expect(mocked.changePassword).toHaveBeenLastCalledWith("my old password", "a new long password"));
    expect(await screen.findByTestId("password-changed")).toHaveTextContent("Password changed.");
    expect(screen.queryByTestId("change-password")).toBeNull();
  });

  it("a super admin resets another operator's forgotten password", async () => {
    const olga = { id: "o", name: "olga", role: "platform_operator", is_active: true, created_at: "2026-01-01T00:00:00Z", last_sign_in: null, locked_until: "2999-01-01T00:00:00Z", failed_attempts: 5 };
    const alice = { ...olga, id: "alice", name: "alice", role: "super_admin", locked_until: null, failed_attempts: 0 };
    mocked.listOperators.mockResolvedValue([alice, olga]);
    mocked.resetOperatorPassword.mockResolvedValue({ ...olga, locked_until: null, failed_attempts: 0 });
    renderAs(acting("alice", "super_admin", superPermissions));
    await userEvent.click(await screen.findByRole("tab", { name: "Operators" }));
    const [own, row] = await screen.findAllByTestId("operator");
    expect(within(own).queryByTestId("reset-password")).toBeNull();
    expect(row).toHaveTextContent("Locked");
    await userEvent.click(within(row).getByTestId("reset-password"));
    await userEvent.type(within(row).getByTestId("reset-password-value"), "olga's new password");
    await userEvent.click(within(row).getByTestId("reset-password-save"));
    await waitFor(() => expect(mocked.resetOperatorPassword).toHaveBeenCalledWith("o", "olga's new password"));
    expect(await within(row).findByTestId("reset-password-done")).toHaveTextContent("Password of olga set");
  });

  it("a super admin adds operators and filters and exports the audit log", async () => {
    mocked.listOperators.mockResolvedValue([
      { id: "a", name: "alice", role: "super_admin", is_active: true, created_at: "2026-01-01T00:00:00Z", last_sign_in: null, locked_until: null, failed_attempts: 0 },
    ]);
    mocked.addOperator.mockResolvedValue({ id: "o", name: "olga", role: "platform_operator", is_active: true, created_at: "2026-01-01T00:00:00Z", last_sign_in: null, locked_until: null, failed_attempts: 0 });
    mocked.listAudit.mockResolvedValue([
      { id: 7, at: "2026-12-01T10:00:00.000Z", operator_id: "r", operator: "rita", action: "backup.start", target: "c1", outcome: "denied", detail: "needs backup:trigger_manual" },
    ]);
    mocked.pickCsvFile.mockResolvedValue("/home/me/audit.csv");
    mocked.exportAudit.mockResolvedValue(1);
    renderAs(acting("alice", "super_admin", superPermissions));
    await userEvent.click(await screen.findByRole("tab", { name: "Operators" }));
    expect(await screen.findByTestId("operator")).toHaveTextContent("alice");
    await userEvent.type(screen.getByTestId("operator-name"), "olga");
    await userEvent.selectOptions(screen.getByTestId("operator-role"), "platform_operator");
    await userEvent.type(screen.getByTestId("operator-password"), "another long password");
    await userEvent.click(screen.getByTestId("operator-add"));
    await waitFor(() => expect(mocked.addOperator).toHaveBeenCalledWith("olga", "platform_operator", "another long password"));
    await userEvent.click(screen.getByRole("tab", { name: "Audit Log" }));
    expect(await screen.findByTestId("audit-row")).toHaveTextContent("backup.start");
    await userEvent.selectOptions(screen.getByTestId("audit-outcome"), "denied");
    await waitFor(() => expect(mocked.listAudit).toHaveBeenLastCalledWith(expect.objectContaining({ outcome: "denied" })));
    await userEvent.click(screen.getByTestId("audit-export"));
    await waitFor(() => expect(mocked.exportAudit).toHaveBeenCalledWith(expect.objectContaining({ outcome: "denied", limit: null }), "/home/me/audit.csv"));
    expect(await screen.findByText("1 entries exported.")).toBeInTheDocument();
  });
});
