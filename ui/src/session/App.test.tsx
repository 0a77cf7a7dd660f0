// The app shell: start-up failures.
import { screen } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";

// The API module mocked (see src/test/apiMock.ts); vi.mock is hoisted above the imports.
vi.mock("../api", async () => (await import("../test/apiMock")).apiModule());

import { ApiError } from "../api";
import { mocked, renderWithClient, setDefaults } from "../test/harness";
import { App } from "../App";

beforeEach(() => setDefaults());

describe("App", () => {
  it("says why when the engine could not start", async () => {
    mocked.startupStatus.mockRejectedValue(new ApiError("keychain", "no OS keychain is available"));
    renderWithClient(<App />);
    expect(await screen.findByText("Safehold could not start")).toBeInTheDocument();
    expect(screen.getByRole("alert")).toHaveTextContent("no OS keychain is available");
  });
});
