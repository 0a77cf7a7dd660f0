// The first launch's offer of the demo on PostgreSQL: shown when a server answers, taken or
// dismissed, and only to whoever manages the platform.
import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { mocked, renderWithClient, setDefaults } from "../test/harness";
import { BackupDashboard } from "./BackupDashboard";

beforeEach(() => setDefaults());

describe("The demo on PostgreSQL", () => {
  it("is offered when a server answers, and taking it says what was made", async () => {
    mocked.demoPostgresOffer.mockResolvedValue({ server: "localhost:5432", database: "safehold_demo" });
    mocked.putDemoOnPostgres.mockResolvedValue({ database: "postgres://postgres@localhost:5432/safehold_demo", rows: 35012, connection: "Demo platform (PostgreSQL)", configuration: "Daily demo backup (PostgreSQL)" });
    renderWithClient(<BackupDashboard />);
    const offer = await screen.findByTestId("demo-postgres-offer");
    expect(offer).toHaveTextContent("A PostgreSQL server answers on localhost:5432");
    expect(offer).toHaveTextContent("to try every action on PostgreSQL too");
    await userEvent.click(screen.getByTestId("demo-postgres-put"));
    await waitFor(() => expect(mocked.putDemoOnPostgres).toHaveBeenCalled());
    const done = await screen.findByTestId("demo-postgres-done");
    expect(done).toHaveTextContent(`${(35012).toLocaleString()} rows`);
    expect(done).toHaveTextContent("“Demo platform (PostgreSQL)” with the backup configuration “Daily demo backup (PostgreSQL)”");
  });

  it("goes with Not now, and is not offered when no server answers", async () => {
    mocked.demoPostgresOffer.mockResolvedValueOnce({ server: "localhost:5432", database: "safehold_demo" }).mockResolvedValue(null);
    mocked.dismissDemoPostgresOffer.mockResolvedValue(null);
    renderWithClient(<BackupDashboard />);
    await userEvent.click(await screen.findByTestId("demo-postgres-dismiss"));
    await waitFor(() => expect(mocked.dismissDemoPostgresOffer).toHaveBeenCalled());
    await waitFor(() => expect(screen.queryByTestId("demo-postgres-offer")).toBeNull());
  });
});
