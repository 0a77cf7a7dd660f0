// A keychain call that waits is said in the window with a Cancel; short calls are not.
import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "../dashboard/BackupDashboard";

beforeEach(() => setDefaults());

describe("Keychain waits", () => {
  it("says what waits for the keychain and how long, and Cancel ends the wait", async () => {
    const wait = { what: "read a secret", since: "2026-12-06T10:00:00Z", waited_seconds: 12.4, deadline_seconds: 120 };
    mocked.keychainWaits.mockResolvedValue([wait]);
    mocked.cancelKeychainWaits.mockResolvedValue(1);
    renderWithClient(<BackupDashboard />);
    const banner = await screen.findByTestId("keychain-wait");
    expect(banner).toHaveTextContent("Waiting for the OS keychain to be unlocked (to read a secret, 12 s so far)");
    expect(banner).toHaveTextContent("unlock the “Login” keyring");
    expect(banner).toHaveTextContent("It gives up in 108 s.");
    mocked.keychainWaits.mockResolvedValue([]);
    await userEvent.click(screen.getByTestId("keychain-wait-cancel"));
    await waitFor(() => expect(mocked.cancelKeychainWaits).toHaveBeenCalled());
    await waitFor(() => expect(screen.queryByTestId("keychain-wait")).toBeNull());
  });

  it("does not show an ordinary call that answers at once", async () => {
    mocked.keychainWaits.mockResolvedValue([{ what: "read a secret", since: "2026-12-06T10:00:00Z", waited_seconds: 0.2, deadline_seconds: 120 }]);
    renderWithClient(<BackupDashboard />);
    await waitFor(() => expect(mocked.keychainWaits).toHaveBeenCalled());
    await screen.findAllByTestId("execution");
    expect(screen.queryByTestId("keychain-wait")).toBeNull();
  });
});
