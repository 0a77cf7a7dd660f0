// Recent Backups: progress, checks, who wrote what, filters and labels.
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { acting, executions, mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";
import { SessionProvider } from "../session/Session";

beforeEach(() => setDefaults());

describe("Recent backups", () => {
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
      { ...executions[0], initiated_by: "olga", metadata: { writer: "backup@server-7", writer_key: "ab12cd34ef56", warnings: ["session 42 (user app) has been idle in transaction since 2025-01-05T08:00:00Z (150 min)"] }, second_copy: { storage_name: "Offsite", status: "completed", file_path: "s3://b/p/archives/1.shar", error_message: null, created_at: "2025-01-05T10:31:00Z" } },
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
    expect(within(rows[0]).getByTestId("backup-warning")).toHaveTextContent("session 42 (user app) has been idle in transaction");
    expect(within(rows[1]).queryByTestId("backup-warning")).toBeNull();
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

  it("charts each configuration's backups: duration and size over time, one configuration at a time", async () => {
    const run = (id: string, conf: string, name: string, start: string, minutes: number, size: number) => ({
      ...executions[0], id, configuration_id: conf, configuration_name: name, started_at: start,
      completed_at: new Date(new Date(start).getTime() + minutes * 60_000).toISOString(), file_size: size,
    });
    mocked.listExecutions.mockImplementation(async (_limit?: number, status?: string | null) =>
      status === "completed"
        ? [run("a3", "c1", "Daily Full Backup", "2025-01-03T02:00:00Z", 12, 3 * 1024 * 1024), run("a1", "c1", "Daily Full Backup", "2025-01-01T02:00:00Z", 10, 1024 * 1024),
           run("a2", "c1", "Daily Full Backup", "2025-01-02T02:00:00Z", 11, 2 * 1024 * 1024), run("b1", "c2", "Hourly", "2025-01-03T05:00:00Z", 1, 2048),
           { ...executions[0], id: "x", configuration_id: null, configuration_name: null }]
        : executions);
    renderWithClient(<BackupDashboard />);
    // The configuration that ran last is shown first: one backup, so no trend yet.
    expect(await screen.findByTestId("trends-one")).toHaveTextContent("One backup so far (60 s, 2 KB)");
    await userEvent.selectOptions(screen.getByTestId("trends-configuration"), "c1");
    const chart = await screen.findByTestId("trends-chart");
    expect(chart).toHaveAttribute("aria-label", "3 backups: the last took 12 min and is 3 MB");
    // Dated ticks, durations on one axis and sizes on the other.
    expect(chart).toHaveTextContent(new Date("2025-01-02T02:00:00Z").toLocaleDateString(undefined, { month: "short", day: "numeric" }));
    expect(chart.textContent).toMatch(/min/);
    expect(chart.textContent).toMatch(/MB/);
    expect(chart.querySelectorAll(".recharts-bar-rectangle").length).toBe(3);
    // Dates: the user's locale, with UTC and the time zone on hover.
    const started = (await screen.findAllByTestId("execution"))[0].querySelector("time");
    expect(started?.getAttribute("title")).toMatch(/UTC · shown in /);
  });
});
