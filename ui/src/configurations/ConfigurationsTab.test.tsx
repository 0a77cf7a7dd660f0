// The Configurations tab: the form, Run Now, each configuration's status, retention.
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { ApiError } from "../api";
import { configurations, executions, mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";

beforeEach(() => setDefaults());

describe("Configurations", () => {
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

  it("turns continuous protection on from the form, shows its refusal inline, and marks the configuration", async () => {
    mocked.validateConfiguration.mockImplementation(async (input) =>
      input.continuous_protection && input.configuration_name === "On SQLite"
        ? [{ field: "continuous_protection", message: "continuous protection follows PostgreSQL databases" }]
        : [],
    );
    mocked.createConfiguration.mockResolvedValue({ ...configurations[0], id: "c2", configuration_name: "Streamed", continuous_protection: true });
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    await userEvent.click(await screen.findByTestId("new-configuration"));
    const form = await screen.findByTestId("configuration-form");
    const box = within(form).getByLabelText(/Continuous protection/);
    expect(box).not.toBeChecked();
    await userEvent.click(box);
    await userEvent.type(within(form).getByLabelText("Name"), "On SQLite");
    expect(await within(form).findByTestId("error-continuous_protection")).toHaveTextContent("PostgreSQL");
    await userEvent.clear(within(form).getByLabelText("Name"));
    await userEvent.type(within(form).getByLabelText("Name"), "Streamed");
    await waitFor(() => expect(within(form).queryByTestId("error-continuous_protection")).toBeNull());
    await userEvent.click(within(form).getByTestId("save-configuration"));
    await waitFor(() => expect(mocked.createConfiguration).toHaveBeenCalledTimes(1));
    expect(mocked.createConfiguration.mock.calls[0][0]).toMatchObject({ configuration_name: "Streamed", continuous_protection: true });
  });

  it("backs up a whole server from the form: databases left out by pattern, the refusal inline, and a badge", async () => {
    mocked.validateConfiguration.mockImplementation(async (input) =>
      input.whole_server && input.backup_type !== "full"
        ? [{ field: "backup_type", message: "a server backup is full each time" }]
        : [],
    );
    mocked.createConfiguration.mockResolvedValue({ ...configurations[0], id: "c3", configuration_name: "Server", whole_server: true, exclude_databases: "scratch_*" });
    mocked.listConfigurations.mockResolvedValue([{ ...configurations[0], id: "c3", configuration_name: "Server", whole_server: true, exclude_databases: "scratch_*" }]);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    expect(await screen.findByText("Whole server")).toBeInTheDocument();
    await userEvent.click(await screen.findByTestId("new-configuration"));
    const form = await screen.findByTestId("configuration-form");
    expect(within(form).queryByLabelText("Except the databases")).toBeNull();
    await userEvent.click(within(form).getByLabelText(/Every database of the server/));
    await userEvent.type(within(form).getByLabelText("Except the databases"), "scratch_*");
    await userEvent.selectOptions(within(form).getByLabelText("Backup type"), "incremental");
    await userEvent.type(within(form).getByLabelText("Name"), "Server");
    expect(await within(form).findByTestId("error-backup_type")).toHaveTextContent("full each time");
    await userEvent.selectOptions(within(form).getByLabelText("Backup type"), "full");
    await waitFor(() => expect(within(form).queryByTestId("error-backup_type")).toBeNull());
    await userEvent.click(within(form).getByTestId("save-configuration"));
    await waitFor(() => expect(mocked.createConfiguration).toHaveBeenCalledTimes(1));
    expect(mocked.createConfiguration.mock.calls[0][0]).toMatchObject({ configuration_name: "Server", whole_server: true, exclude_databases: "scratch_*", backup_type: "full" });
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

  it("Run Now's message follows its backup to the end and goes with Dismiss or the next click", async () => {
    const running = { ...executions[1], id: "exec-1", status: "running" as const };
    mocked.listExecutions.mockResolvedValue([running]);
    mocked.runBackupNow.mockResolvedValue("exec-1");
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Configurations" }));
    const row = (await screen.findAllByTestId("configuration"))[0];
    await userEvent.click(within(row).getByTestId("run-now"));
    expect(await within(row).findByTestId("run-banner")).toHaveAttribute("data-status", "running");
    // The backup fails: the success message is replaced by the failure, not left beside it.
    mocked.listExecutions.mockResolvedValue([{ ...running, status: "failed", error_message: "cannot connect to postgres://db/app" }]);
    await waitFor(() => expect(within(row).getByTestId("run-banner")).toHaveAttribute("data-status", "failed"), { timeout: 3000 });
    expect(within(row).getByTestId("run-banner")).toHaveTextContent("Backup failed: cannot connect to postgres://db/app");
    expect(within(row).queryByText(/Backup started/)).toBeNull();
    await userEvent.click(within(row).getByText("Dismiss"));
    expect(within(row).queryByTestId("run-banner")).toBeNull();
    // The next click starts a new message that belongs to the new run.
    mocked.runBackupNow.mockResolvedValue("exec-2");
    mocked.listExecutions.mockResolvedValue([{ ...running, id: "exec-2", status: "completed", record_count: 1200 }]);
    await userEvent.click(within(row).getByTestId("run-now"));
    await waitFor(() => expect(within(row).getByTestId("run-banner")).toHaveAttribute("data-status", "completed"));
    expect(within(row).getByTestId("run-banner")).toHaveTextContent(`Backup completed: ${(1200).toLocaleString()} rows.`);
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
});
