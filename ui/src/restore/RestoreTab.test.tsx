// The Restore tab: plans, confirmations, restores and test restores followed to their end.
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { ApiError } from "../api";
import { connections, mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";

beforeEach(() => setDefaults());

// A PostgreSQL target (a tenant restored as a copy needs one).
const postgres = { ...connections[0], id: "pg", name: "Platform", kind: "postgres" as const, sqlite_path: null, host: "db" };

describe("Restore", () => {
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

  it("keeps running restores apart from finished ones, and pages the history", async () => {
    const op = (id: string, status: "running" | "completed") => ({
      id, backup_execution_id: "1", restore_type: "full", target_tenant_id: null, restore_point: null, status,
      progress_percentage: status === "running" ? 10 : 100, tables_to_restore: null, exclude_tables: null, preserve_ids: true,
      started_at: "2025-01-05T12:00:00Z", completed_at: null, initiated_by: "op", error_message: null, restored_records: {},
      target: `postgres://db/${id}`, source_archive: "/b/1", safety_backup_id: null, new_tenant_id: null, current_table: null,
    });
    mocked.listRestores.mockImplementation(async (limit = 50) =>
      [op("now", "running"), ...Array.from({ length: limit - 1 }, (_, i) => op(`done${i}`, "completed"))]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    const activeList = await screen.findByTestId("restores-active");
    expect(within(activeList).getAllByTestId("restore-operation")).toHaveLength(1);
    expect(activeList).toHaveTextContent("postgres://db/now");
    const history = screen.getByTestId("restores-history");
    expect(within(history).getAllByTestId("restore-operation")).toHaveLength(49);
    expect(history).not.toHaveTextContent("postgres://db/now");
    await userEvent.click(screen.getByTestId("restores-more"));
    await waitFor(() => expect(mocked.listRestores).toHaveBeenCalledWith(100));
    await waitFor(() => expect(within(screen.getByTestId("restores-history")).getAllByTestId("restore-operation")).toHaveLength(99));
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
    mocked.listConnections.mockResolvedValue([postgres]);
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
      replaced_objects: 0, destructive: true, safety_backup: true, warnings: ["x references the tenant table y but is not in the backup"], unsupported: ["table public.t has a virtual generated column, which PostgreSQL has from version 18 on (the target runs 15)"],
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
      backup_execution_id: "1", connection_id: "pg", restore_type: "tenant_only", tenant_id: "acme", preserve_ids: true, safety_backup: true,
    }));
    expect(within(plan).getByTestId("restore-plan-table")).toHaveTextContent("public.projects1212");
    expect(within(plan).getByTestId("restore-plan-warning")).toHaveTextContent("not in the backup");
    expect(within(plan).getByTestId("restore-plan-unsupported")).toHaveTextContent("The target cannot hold: table public.t has a virtual generated column");
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
      replaced_objects: 0, destructive: false, safety_backup: false, warnings: [], unsupported: [], exact: false, estimated_bytes: 1000, estimated_seconds: 1,
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
    mocked.listConnections.mockResolvedValue([postgres]);
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

  it("opens in a state its own validation accepts, and says what is missing beside the field", async () => {
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    // The demo's SQLite connection: Full is chosen; chosen tables can be restored into it; a
    // tenant-only restore (PostgreSQL only) is not offered.
    const type = (await screen.findByTestId("restore-type")) as HTMLSelectElement;
    await waitFor(() => expect(type.value).toBe("full"));
    expect((within(type).getByRole("option", { name: "Tenant only" }) as HTMLOptionElement).disabled).toBe(false);
    expect((within(type).getByRole("option", { name: "Selective tables" }) as HTMLOptionElement).disabled).toBe(false);
    expect(screen.queryByTestId("restore-tenant")).not.toBeInTheDocument();
    expect(screen.getByTestId("restore-sqlite-note")).toHaveTextContent("chosen tables or one tenant into this file");
    await userEvent.selectOptions(type, "selective");
    expect(await screen.findByTestId("restore-tables")).toBeInTheDocument();
    // One tenant on SQLite, its tenants offered; in place, or as a copy whose unique values
    // (a slug) get a suffix unless another rule is chosen.
    mocked.listTenants.mockResolvedValue([{ id: "t-1", name: "Acme Corp" }]);
    await userEvent.selectOptions(type, "tenant_only");
    expect(await screen.findByTestId("restore-tenant")).toBeInTheDocument();
    await waitFor(() => expect(screen.getByTestId("restore-tenant-options").querySelectorAll("option")).toHaveLength(1));
    expect(screen.queryByTestId("restore-on-conflict")).not.toBeInTheDocument();
    await userEvent.click(screen.getByTestId("restore-as-copy"));
    expect((screen.getByTestId("restore-on-conflict") as HTMLSelectElement).value).toBe("keep_both");
    await userEvent.selectOptions(screen.getByTestId("restore-on-conflict"), "keep_target");
    await userEvent.type(screen.getByTestId("restore-tenant"), "t-1");
    await userEvent.click(screen.getByTestId("restore-review"));
    await waitFor(() => expect(mocked.planRestore).toHaveBeenCalledWith(expect.objectContaining({
      restore_type: "tenant_only", tenant_id: "t-1", preserve_ids: false, on_conflict: "keep_target",
    })));
  });

  it("a tenant restore without a tenant says so beside the field; engine errors leave out the command line's flags", async () => {
    mocked.listConnections.mockResolvedValue([postgres]);
    mocked.planRestore.mockRejectedValue(new ApiError("validation", "a tenant-only restore needs the tenant's id (--tenant)"));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    expect(await screen.findByTestId("restore-tenant-error")).toHaveTextContent("Choose a tenant");
    expect(screen.getByTestId("restore-review")).toBeDisabled();
    await userEvent.type(screen.getByTestId("restore-tenant"), " ");
    expect(screen.getByTestId("restore-review")).toBeDisabled();
    await userEvent.type(screen.getByTestId("restore-tenant"), "acme");
    expect(screen.queryByTestId("restore-tenant-error")).not.toBeInTheDocument();
    await userEvent.click(screen.getByTestId("restore-review"));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("a tenant-only restore needs the tenant's id");
    expect(alert).not.toHaveTextContent("--tenant");
    expect(alert).not.toHaveTextContent("(validation)");
    // Changing the form supersedes the error.
    await userEvent.type(screen.getByTestId("restore-tenant"), "-2");
    await waitFor(() => expect(screen.queryByRole("alert")).not.toBeInTheDocument());
  });

  it("a full restore into PostgreSQL can leave out what the target cannot hold, and give owners and grants", async () => {
    mocked.listConnections.mockResolvedValue([postgres]);
    mocked.planRestore.mockResolvedValue({
      restore_type: "full", chain: [{ id: "abcdef123456", backup_type: "full", snapshot_time: "2025-01-05T10:00:00Z", source_name: "Demo platform", file: "/b/1" }],
      point_in_time: null, target: "postgres://db/app", target_database: "app", create: false, clean: false, tenant_id: null, preserve_ids: true,
      new_tenant_id: null, tables: [], rows: 0, replaced_objects: 0, destructive: false, safety_backup: false, warnings: [],
      unsupported: ["tablespace fast holds table public.docs, and the target server has no such tablespace"], exact: false, estimated_bytes: 1, estimated_seconds: 1,
    });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await screen.findByTestId("restore-tenant");
    expect(screen.queryByTestId("restore-skip-unsupported")).not.toBeInTheDocument();
    await userEvent.selectOptions(screen.getByTestId("restore-type"), "full");
    await userEvent.click(screen.getByTestId("restore-review"));
    await waitFor(() => expect(mocked.planRestore).toHaveBeenLastCalledWith(expect.objectContaining({ restore_type: "full", skip_unsupported: false, owners_and_privileges: false })));
    expect(await screen.findByTestId("restore-plan-unsupported")).toHaveTextContent("tablespace fast");
    await userEvent.click(screen.getByTestId("restore-skip-unsupported"));
    await userEvent.click(screen.getByTestId("restore-owners"));
    await userEvent.click(screen.getByTestId("restore-review"));
    await waitFor(() => expect(mocked.planRestore).toHaveBeenLastCalledWith(expect.objectContaining({ restore_type: "full", skip_unsupported: true, owners_and_privileges: true })));
  });

  it("shows why a plan is refused", async () => {
    mocked.listConnections.mockResolvedValue([postgres]);
    mocked.planRestore.mockRejectedValue(new ApiError("validation", "the target's table public.projects has no column title that the backup has"));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    await userEvent.type(await screen.findByTestId("restore-tenant"), "acme");
    await userEvent.click(screen.getByTestId("restore-review"));
    expect(await screen.findByRole("alert")).toHaveTextContent("has no column title");
    expect(screen.queryByTestId("restore-start")).not.toBeInTheDocument();
  });
});
