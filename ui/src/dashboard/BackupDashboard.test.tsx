// The dashboard: its header, the recent backups list, New Backup, and job events.
import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { ApiError } from "../api";
import { mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";
import { staleAfterEvent } from "../api/queries";

beforeEach(() => setDefaults());

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
    expect(await screen.findByText("Full backup")).toBeInTheDocument();
    expect(screen.getByText("Incremental backup")).toBeInTheDocument();
    expect(screen.getByText("1 MB → 390.63 KB")).toBeInTheDocument();
    expect(screen.getByText(`5 tables · ${(1200).toLocaleString()} rows · 3 tenants`, { exact: false })).toBeInTheDocument();
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

  it("New Backup starts a backup of the chosen configuration", async () => {
    mocked.runBackupNow.mockResolvedValue("exec-2");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByTestId("new-backup"));
    await userEvent.click(await screen.findByTestId("start-backup"));
    await waitFor(() => expect(mocked.runBackupNow).toHaveBeenCalledWith("c1"));
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
});
