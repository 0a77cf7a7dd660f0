// The Restore tab's "Any Second" card: the timeline of a configuration with continuous protection
// (backups as points, covered spans as bars, the gap between two spans marked), a second picked
// from a bar, its plan, then one tenant put back in place after a confirmation.
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { ApiError, type SecondOutcome, type Timeline } from "../api";
import { configurations, mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";

beforeEach(() => setDefaults());

const timeline: Timeline = {
  configuration_id: "c1", configuration_name: "Daily Full Backup", continuous_protection: true, state: "streaming",
  backups: [
    { execution_id: "e1", started_at: "2026-12-04T02:00:00Z", backup_type: "full", is_base: true },
    { execution_id: "e2", started_at: "2026-12-04T12:00:00Z", backup_type: "full", is_base: true },
  ],
  spans: [
    { from: "2026-12-04T02:00:05Z", until: "2026-12-04T11:59:50Z", base_id: "b1", ended_by: "a schema change" },
    { from: "2026-12-04T12:00:05Z", until: "2026-12-04T14:31:59Z", base_id: "b2", ended_by: "" },
  ],
  recovery_point: "2026-12-04T14:31:59Z", segments: 12, segment_bytes: 40960, last_warning: null, last_error: null,
};

const planned: SecondOutcome = {
  plan: { at: "2026-12-04T11:59:50Z", base_id: "b1b1b1b1-0000", base_taken: "2026-12-04T02:00:03Z", segments: 7, transactions: 3, changes: 9, last_commit: "2026-12-04T11:59:49Z" },
  tables: [{ table: "public.projects", rows_in_backup: 5, inserted: 5, updated: 0, deleted: 0 }],
  committed: false, database: null, operation_id: null,
};

describe("Any second", () => {
  it("says how to turn it on when no configuration has continuous protection", async () => {
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    expect(await screen.findByText(/No configuration has continuous protection/)).toBeInTheDocument();
    expect(mocked.protectionTimeline).not.toHaveBeenCalled();
  });

  it("draws the timeline, plans a second picked from a bar and puts one tenant back after a confirmation", async () => {
    mocked.listConfigurations.mockResolvedValue([{ ...configurations[0], continuous_protection: true }]);
    mocked.protectionTimeline.mockResolvedValue(timeline);
    mocked.restoreToSecond.mockImplementation(async (r) => ({ ...planned, committed: !r.dry_run }));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    const card = await screen.findByTestId("continuous-timeline");
    await waitFor(() => expect(within(card).getAllByTestId("timeline-span")).toHaveLength(2));
    expect(within(card).getAllByTestId("timeline-backup")).toHaveLength(2);
    const gap = within(card).getByTestId("timeline-gap");
    expect(gap.getAttribute("title")).toContain("a schema change");
    expect(within(card).getByTestId("timeline-summary")).toHaveTextContent("Recovery point 2026-12-04T14:31:59Z · 12 change segments");
    const second = within(card).getByLabelText(/Second/);
    expect(second).toHaveValue("2026-12-04T14:31:59Z");
    // The first bar's end picked.
    await userEvent.click(within(card).getAllByTestId("timeline-span")[0]);
    expect(second).toHaveValue("2026-12-04T11:59:50Z");
    expect(within(card).getByTestId("second-plan-button")).toBeDisabled();
    await userEvent.type(within(card).getByLabelText("Tenant"), "acme");
    await userEvent.click(within(card).getByTestId("second-plan-button"));
    expect(await within(card).findByTestId("second-plan")).toHaveTextContent("7 segments: 3 transactions (9 changes) replayed");
    expect(within(card).getByTestId("second-plan")).toHaveTextContent("public.projects: 5 inserted");
    expect(mocked.restoreToSecond).toHaveBeenLastCalledWith(expect.objectContaining({ configuration_id: "c1", at: "2026-12-04T11:59:50Z", tenant_id: "acme", into_database: null, dry_run: true }));
    await userEvent.click(within(card).getByTestId("second-restore-button"));
    expect(mocked.restoreToSecond).toHaveBeenCalledTimes(1);
    await userEvent.click(within(card).getByTestId("second-confirm-button"));
    expect(await within(card).findByTestId("second-done")).toHaveTextContent("Tenant acme is back as it was at 2026-12-04T11:59:50Z");
    expect(mocked.restoreToSecond).toHaveBeenLastCalledWith(expect.objectContaining({ dry_run: false, tenant_id: "acme" }));
  });

  it("offers Cancel while a restore to a second runs, and cancels that configuration's", async () => {
    mocked.listConfigurations.mockResolvedValue([{ ...configurations[0], continuous_protection: true }]);
    mocked.protectionTimeline.mockResolvedValue(timeline);
    mocked.restoreToSecond.mockImplementation(async (r) => (r.dry_run ? planned : new Promise(() => {})));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    const card = await screen.findByTestId("continuous-timeline");
    await userEvent.type(await within(card).findByLabelText("Tenant"), "acme");
    expect(within(card).queryByTestId("second-cancel-button")).toBeNull();
    await userEvent.click(within(card).getByTestId("second-plan-button"));
    await userEvent.click(await within(card).findByTestId("second-restore-button"));
    await userEvent.click(within(card).getByTestId("second-confirm-button"));
    await userEvent.click(await within(card).findByTestId("second-cancel-button"));
    expect(mocked.cancelRestoreToSecond).toHaveBeenCalledWith("c1");
  });

  it("shows a second that is not covered refused by the engine, and a whole restore into a new database", async () => {
    mocked.listConfigurations.mockResolvedValue([{ ...configurations[0], continuous_protection: true }]);
    mocked.protectionTimeline.mockResolvedValue(timeline);
    mocked.restoreToSecond.mockRejectedValueOnce(new ApiError("validation", "2026-12-04T12:00:00Z cannot be put back: it falls between two bases"));
    renderWithClient(<BackupDashboard />);
    await userEvent.click(screen.getByRole("tab", { name: "Restore" }));
    const card = await screen.findByTestId("continuous-timeline");
    const second = await within(card).findByLabelText(/Second/);
    await userEvent.clear(second);
    await userEvent.type(second, "2026-12-04T12:00:00Z");
    await userEvent.click(within(card).getByLabelText(/Whole database/));
    await userEvent.type(within(card).getByLabelText("New database"), "app_then");
    await userEvent.click(within(card).getByTestId("second-plan-button"));
    expect(await within(card).findByText(/falls between two bases/)).toBeInTheDocument();
    expect(within(card).queryByTestId("second-restore-button")).toBeNull();
    mocked.restoreToSecond.mockImplementation(async (r) => ({ ...planned, tables: [], committed: !r.dry_run, database: "app_then" }));
    await userEvent.click(within(card).getByTestId("second-plan-button"));
    await userEvent.click(await within(card).findByTestId("second-restore-button"));
    await userEvent.click(within(card).getByTestId("second-confirm-button"));
    expect(await within(card).findByTestId("second-done")).toHaveTextContent("is in app_then");
    expect(mocked.restoreToSecond).toHaveBeenLastCalledWith(expect.objectContaining({ into_database: "app_then", tenant_id: null, dry_run: false }));
  });
});
