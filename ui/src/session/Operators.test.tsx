// Operators, sign-in and permissions, and the audit log.
import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { SessionInfo } from "../api/bindings";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { ApiError } from "../api";
import { acting, mocked, renderWithClient, setDefaults, superPermissions } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";
import { App } from "../App";
import { SessionProvider } from "../session/Session";

beforeEach(() => setDefaults());

describe("Operators and permissions", () => {
  const renderAs = (info: SessionInfo) =>
    renderWithClient(
      <SessionProvider info={info}>
        <BackupDashboard />
      </SessionProvider>,
    );

  it("a read-only admin sees history and configurations but no Run Now, Restore or storage changes", async () => {
    renderAs(acting("rita", "read_only_admin", ["backup:view_history"]));
    expect(await screen.findByText("Full backup")).toBeInTheDocument();
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
    // Dates: the user's locale, UTC and the time zone on hover; a day range that includes its last day.
    const when = screen.getByTestId("audit-when");
    expect(when).toHaveTextContent(new Date("2026-12-01T10:00:00.000Z").toLocaleString());
    expect(when.querySelector("time")?.getAttribute("title")).toMatch(/^2026-12-01 10:00:00 UTC · shown in /);
    expect(screen.getByTestId("audit-table")).toHaveClass("table-fixed");
    fireEvent.change(screen.getByTestId("audit-since"), { target: { value: "2026-12-01" } });
    fireEvent.change(screen.getByTestId("audit-until"), { target: { value: "2026-12-01" } });
    await waitFor(() => expect(mocked.listAudit).toHaveBeenLastCalledWith(expect.objectContaining({ since: "2026-12-01", until: "2026-12-02" })));
    await userEvent.click(screen.getByTestId("audit-export"));
    await waitFor(() => expect(mocked.exportAudit).toHaveBeenCalledWith(expect.objectContaining({ outcome: "denied", limit: null }), "/home/me/audit.csv"));
    expect(await screen.findByText("1 entries exported.")).toBeInTheDocument();
  });
});
