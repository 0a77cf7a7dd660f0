// The Migration wizard, step by step.
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Connection, MigrationReport } from "../api/bindings";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { connections, mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";

beforeEach(() => setDefaults());

describe("Migration wizard", () => {
  const pg: Connection = { ...connections[0], id: "k2", name: "Platform", kind: "postgres", sqlite_path: null, host: "db", port: 5432, database_name: "app", username: "u" };
  const table = (t: string, problems: MigrationReport["tables"][number]["problems"] = []) => ({
    table: t, source_table: t, rows_read: 4, rows_written: problems.length ? 0 : 4, rows_updated: 0, rows_merged: 0, rows_renamed: 0,
    rows_rejected: problems.length ? 1 : 0, problems, notes: [],
  });
  const report = (tables: MigrationReport["tables"]): MigrationReport => ({
    migration_type: "tenant_copy", committed: false, source_tenant_ids: ["acme"], target_tenant_id: "acme-staging", tables, warnings: [],
    mapping: [{ source: "public.users", target: "public.users", columns: { email: "email", id: "id" }, drop: [], defaults: {} }],
    target_file: null, files: [], rows_read: 8, rows_written: 4, rows_rejected: 0, rows_removed: 0, references: [], inferred: [],
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
    inferred.inferred = ["public.store.manager_staff_id=public.staff.staff_id"];
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

  it("migrates the demo's SQLite tenants: its connection is a source, and a copy's target is of the source's engine", async () => {
    const other: Connection = { ...connections[0], id: "k3", name: "Second file", sqlite_path: "/second.db" };
    mocked.listConnections.mockResolvedValue([...connections, other, pg]);
    mocked.listTenants.mockResolvedValue([{ id: "t-1", name: "Acme Corp" }]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Migration" }));
    await userEvent.click(await screen.findByTestId("mig-migrate"));
    const source = (await screen.findByTestId("mig-source")) as HTMLSelectElement;
    expect(within(source).getAllByRole("option").map((o) => o.textContent)).toEqual(["Platform", "Demo platform", "Second file"]);
    await userEvent.selectOptions(source, "k1");
    await waitFor(() => expect(mocked.listTenants).toHaveBeenCalledWith("k1"));
    await userEvent.selectOptions(screen.getByTestId("mig-tenant"), await screen.findByRole("option", { name: "Acme Corp (t-1)" }));
    await userEvent.click(screen.getByTestId("mig-next"));
    const target = (await screen.findByTestId("mig-target")) as HTMLSelectElement;
    expect(within(target).getAllByRole("option").map((o) => o.textContent)).toEqual(["Demo platform", "Second file"]);
    expect(target.value).toBe("k1");
    expect(screen.queryByText(/work on PostgreSQL connections/)).not.toBeInTheDocument();
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
