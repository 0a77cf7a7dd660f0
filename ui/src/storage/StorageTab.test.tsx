// The Storage tab: usage, health, keys and writers, recovery, adding and changing storage.
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { KeyCustody } from "../api/bindings";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { acting, mocked, renderWithClient, setDefaults, storage } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";
import { SessionProvider } from "../session/Session";
import { UsageChart } from "../components/charts";

beforeEach(() => setDefaults());

describe("Storage", () => {
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
      { at: "2025-01-01T00:00:00Z", used_space: 100 * 1024 * 1024, total_capacity: 1000 * 1024 * 1024, archives: 1 },
      { at: "2025-01-03T00:00:00Z", used_space: 500 * 1024 * 1024, total_capacity: 1000 * 1024 * 1024, archives: 3 },
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
    // Growth: a chart with dated ticks, sizes on its axis and the capacity as a labelled line.
    const chart = (await within(rows[0]).findAllByTestId("growth-chart"))[0];
    expect(chart).toHaveAttribute("aria-label", "used space over time: 100 MB to 500 MB of 1000 MB");
    expect(chart).toHaveTextContent(new Date("2025-01-01T00:00:00Z").toLocaleDateString(undefined, { month: "short", day: "numeric" }));
    expect(chart).toHaveTextContent("capacity 1000 MB");
    expect(chart.querySelector(".recharts-line path")).not.toBeNull();

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

  it("says a capacity far above the used space in words instead of flattening the line under it", () => {
    const gb = 1024 * 1024 * 1024;
    render(<UsageChart points={[{ at: "2025-01-01T10:00:00Z", used: 5 * 1024 * 1024 }, { at: "2025-01-01T12:00:00Z", used: 6 * 1024 * 1024 }]} capacity={250 * gb} />);
    const chart = screen.getByTestId("growth-chart");
    expect(chart).not.toHaveTextContent("capacity 250 GB");
    expect(chart).toHaveTextContent("the capacity, 250 GB, is far above");
    // Within a day the ticks are times, not the same date twice.
    expect(chart).toHaveTextContent(new Date("2025-01-01T10:00:00Z").toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }));
  });
});
