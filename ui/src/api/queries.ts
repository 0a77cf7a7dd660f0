// Every query key of the app in one place, and what each kind of job's events make stale. A key
// renamed here is renamed for every reader and every invalidation; a new `JobKind` in the engine
// fails the type check until `staleAfter` says what its events refresh.
import type { JobEvent, JobKind } from "./bindings";

export const queryKeys = {
  startup: ["startup"] as const,
  session: ["session"] as const,
  storage: ["storage"] as const,
  connections: ["connections"] as const,
  configurations: ["configurations"] as const,
  operators: ["operators"] as const,
  restores: ["restores"] as const,
  migrations: ["migrations"] as const,
  /** Every list of backup executions (the prefix of the keys below). */
  executions: ["executions"] as const,
  executionsCompleted: ["executions", "completed"] as const,
  executionsRecent: (limit: number, status: unknown) => ["executions", "recent", limit, status] as const,
  configurationOverview: ["executions", "configuration-overview"] as const,
  retention: (configurationId: string) => ["retention", configurationId] as const,
  audit: (filter: unknown) => ["audit", filter] as const,
  tenants: (connection: string | null | undefined) => ["tenants", connection] as const,
  storageWriters: (storageId: string) => ["storage-writers", storageId] as const,
  storageSamples: (storageId: string) => ["storage-samples", storageId] as const,
  storageCustody: (storageId: string) => ["storage-custody", storageId] as const,
};

/** The queries a job's progress or end makes stale, per kind of job. */
export const staleAfter: Record<JobKind, readonly (readonly unknown[])[]> = {
  backup: [queryKeys.executions],
  // A restore may take a safety backup first.
  restore: [queryKeys.restores, queryKeys.executions],
  migration: [queryKeys.migrations],
};

/** The keys to invalidate for one job event. */
export function staleAfterEvent(e: JobEvent): readonly (readonly unknown[])[] {
  return staleAfter[e.kind];
}
