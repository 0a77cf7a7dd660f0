// The spec's "Point-in-Time Recovery" card: choose a backup, a target, a restore type, a tenant
// or tables and a time; review the engine's plan; confirm (typing the database's name for
// anything destructive); start. Also "Verify by restoring" for the chosen backup.
import { useEffect, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type RestoreForm, type RestorePlan, type RestoreTestReport, type RestoreType, type Resolution } from "../api";
import { Badge, Button } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { formatCount, formatDate, formatFileSize } from "../components/format";
import { queryKeys } from "../api/queries";
import { When } from "../components/When";

const field = "w-full rounded-md border border-slate-300 px-3 py-2 text-sm";
const label = "block text-sm font-medium mb-1";

export function emptyForm(): RestoreForm {
  return {
    backup_execution_id: "",
    connection_id: "",
    restore_type: "tenant_only",
    tables: [],
    exclude_tables: [],
    tenant_id: null,
    preserve_ids: true,
    new_tenant_id: null,
    new_tenant_name: null,
    restore_point: null,
    safety_backup: true,
    clean: false,
  };
}

/** The "Restore into" choice of a new SQLite file instead of a connection. */
const NEW_FILE = "__new_sqlite_file__";

const list = (s: string) => s.split(",").map((t) => t.trim()).filter(Boolean);

/** `datetime-local` value (local time, no zone) → RFC 3339 in UTC. */
function toRfc3339(local: string): string | null {
  if (!local) return null;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export function RestorePlanner() {
  const queryClient = useQueryClient();
  // Every completed backup can be restored, not only the newest few.
  const backups = useQuery({ queryKey: queryKeys.executionsCompleted, queryFn: () => api.listExecutions(1_000_000, "completed") });
  const connections = useQuery({ queryKey: queryKeys.connections, queryFn: api.listConnections });
  const [form, setForm] = useState<RestoreForm>(emptyForm);
  const [tables, setTables] = useState("");
  const [excluded, setExcluded] = useState("");
  const [point, setPoint] = useState("");
  const [atPoint, setAtPoint] = useState(false);
  const [asCopyChosen, setAsCopy] = useState(false);
  const [plan, setPlan] = useState<RestorePlan | null>(null);
  const [confirm, setConfirm] = useState("");
  const [started, setStarted] = useState<string | null>(null);
  const [verifyReport, setVerifyReport] = useState<RestoreTestReport | null>(null);

  const completed = (backups.data ?? []).filter((b) => b.status === "completed" && !b.deleted_at);
  // The target's tenants, offered as suggestions for a tenant restore (any id can be typed: a
  // tenant deleted since the backup is not in the target any more).
  const targetConnection = connections.data?.find((c) => c.id === form.connection_id);
  // A tenant restored as a copy (new ids) goes into a connection, not into a new file.
  const asCopy = asCopyChosen && form.target_file == null;
  // A copy's rows that equal the target's on a unique value (a slug): a copy is a second one.
  const [onConflict, setOnConflict] = useState<Resolution>("keep_both");
  // Said beside the field, in the form's words, before the engine is asked.
  const tenantMissing = form.restore_type === "tenant_only" && !(form.tenant_id ?? "").trim();
  const tenants = useQuery({
    queryKey: queryKeys.tenants(form.connection_id),
    queryFn: () => api.listTenants(form.connection_id),
    enabled: form.restore_type === "tenant_only" && form.target_file == null && targetConnection != null,
    retry: false,
  });
  useEffect(() => {
    setForm((f) => {
      const connection_id = f.connection_id || connections.data?.[0]?.id || "";
      // A form opens in a state its own validation accepts: a SQLite target restores whole.
      const sqlite = connections.data?.find((c) => c.id === connection_id)?.kind === "sqlite";
      return {
        ...f,
        backup_execution_id: f.backup_execution_id || completed[0]?.id || "",
        connection_id,
        restore_type: sqlite && !f.connection_id ? "full" : f.restore_type,
      };
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [backups.data, connections.data]);

  const request = (): RestoreForm => ({
    ...form,
    tables: form.restore_type === "selective" ? list(tables) : [],
    exclude_tables: form.restore_type === "selective" ? list(excluded) : [],
    tenant_id: form.restore_type === "tenant_only" ? form.tenant_id : null,
    preserve_ids: form.restore_type !== "tenant_only" || !asCopy,
    new_tenant_id: asCopy ? form.new_tenant_id : null,
    new_tenant_name: asCopy ? form.new_tenant_name : null,
    on_conflict: asCopy ? onConflict : undefined,
    restore_point: atPoint ? toRfc3339(point) : null,
    clean: form.restore_type === "full" && form.clean,
    skip_unsupported: form.restore_type === "full" && form.skip_unsupported === true,
    owners_and_privileges: form.restore_type === "full" && form.owners_and_privileges === true,
  });
  // A message belongs to the action that produced it: changing the form supersedes the last
  // plan's error and the last start's banner.
  const change = (patch: Partial<RestoreForm>) => {
    setForm((f) => ({ ...f, ...patch }));
    setPlan(null);
    setConfirm("");
    setStarted(null);
    planning.reset();
    starting.reset();
  };

  const planning = useMutation({ mutationFn: () => api.planRestore(request()), onSuccess: (p) => { setPlan(p); setStarted(null); } });
  const starting = useMutation({
    mutationFn: () => api.startRestore(request()),
    onSuccess: (id) => {
      setStarted(id);
      setPlan(null);
      setConfirm("");
      void queryClient.invalidateQueries({ queryKey: queryKeys.restores });
    },
  });
  const verifying = useMutation({ mutationFn: () => api.verifyByRestoring(form.backup_execution_id), onSuccess: setVerifyReport });
  const confirmed = plan !== null && (!plan.destructive || confirm === plan.target_database);

  return (
    <QueryView query={backups} what="backups">
      {() =>
        completed.length === 0 ? (
          <Empty>No completed backup to restore from yet.</Empty>
        ) : (
          <div className="space-y-3" data-testid="restore-planner">
            <div>
              <label className={label} htmlFor="restore-backup">Backup</label>
              <select id="restore-backup" data-testid="restore-backup" className={field} value={form.backup_execution_id}
                onChange={(e) => change({ backup_execution_id: e.target.value })}>
                {completed.map((b) => (
                  <option key={b.id} value={b.id}>
                    {b.configuration_name ?? "safety backup"} — {b.backup_type} — {formatDate(b.started_at)}
                  </option>
                ))}
              </select>
              <div className="mt-1 flex items-center gap-2">
                <Button size="sm" variant="ghost" data-testid="verify-by-restoring" disabled={verifying.isPending || !form.backup_execution_id}
                  onClick={() => { setVerifyReport(null); verifying.mutate(); }}>
                  {verifying.isPending ? "Verifying by restoring…" : "Verify by restoring"}
                </Button>
                {verifying.isPending && (
                  <Button size="sm" variant="outline" data-testid="verify-cancel" onClick={() => void api.cancelVerify(form.backup_execution_id)}>
                    Cancel
                  </Button>
                )}
              </div>
              {verifying.isError && <ErrorBox error={verifying.error} />}
              {verifyReport && <VerifyReport report={verifyReport} />}
            </div>
            <div>
              <label className={label} htmlFor="restore-target">Restore into</label>
              <select id="restore-target" data-testid="restore-target" className={field} value={form.target_file != null ? NEW_FILE : form.connection_id}
                onChange={(e) =>
                  e.target.value === NEW_FILE
                    ? change({ target_file: "", restore_type: form.restore_type === "tenant_only" ? "full" : form.restore_type })
                    : change({
                        connection_id: e.target.value,
                        target_file: undefined,
                        ...(connections.data?.find((c) => c.id === e.target.value)?.kind === "sqlite" && form.restore_type === "tenant_only" ? { restore_type: "full" as RestoreType } : {}),
                      })
                }>
                {(connections.data ?? []).map((c) => (
                  <option key={c.id} value={c.id}>{c.name}</option>
                ))}
                <option value={NEW_FILE}>A new SQLite file…</option>
              </select>
            </div>
            {form.target_file != null && (
              <div className="flex items-center gap-2 text-sm" data-testid="restore-new-file">
                <Button size="sm" variant="outline" data-testid="choose-new-file" onClick={async () => {
                  const path = await api.pickNewDatabaseFile("restored.db");
                  if (path) change({ target_file: path });
                }}>
                  Choose file…
                </Button>
                <span className="text-slate-600">{form.target_file || "no file chosen yet"}</span>
              </div>
            )}
            {form.target_file == null && connections.data?.find((c) => c.id === form.connection_id)?.kind === "sqlite" && (
              <p className="text-xs text-amber-700" data-testid="restore-sqlite-note">
                This connection is a SQLite database: a backup restores whole into a new file (choose "A new SQLite file…" above), or
                chosen tables or one tenant into this file, in place or as a copy under a new tenant.
              </p>
            )}
            <div>
              <label className={label} htmlFor="restore-type">Restore type</label>
              <select id="restore-type" data-testid="restore-type" className={field} value={form.restore_type}
                onChange={(e) => change({ restore_type: e.target.value as RestoreType })}>
                <option value="tenant_only" disabled={form.target_file != null}>Tenant only</option>
                <option value="selective">Selective tables</option>
                <option value="full">Full</option>
              </select>
            </div>
            {form.restore_type === "tenant_only" && (
              <div className="space-y-2">
                <label className={label} htmlFor="restore-tenant">Tenant ID</label>
                <input id="restore-tenant" data-testid="restore-tenant" className={field} value={form.tenant_id ?? ""} list="restore-tenant-options"
                  onChange={(e) => change({ tenant_id: e.target.value })} placeholder="the tenant's id" aria-invalid={tenantMissing} />
                {tenantMissing && <p className="text-xs text-red-700" data-testid="restore-tenant-error">Choose a tenant</p>}
                <datalist id="restore-tenant-options" data-testid="restore-tenant-options">
                  {(tenants.data ?? []).map((t) => (
                    <option key={t.id} value={t.id}>{t.name ?? t.id}</option>
                  ))}
                </datalist>
                <label className="flex items-center gap-2 text-sm">
                  <input type="checkbox" data-testid="restore-as-copy" checked={asCopy} disabled={form.target_file != null} onChange={(e) => { setAsCopy(e.target.checked); setPlan(null); }} />
                  Restore as a copy under a new tenant (new ids everywhere; the tenant itself is not touched)
                </label>
                {asCopy && (
                  <div className="grid grid-cols-2 gap-2">
                    <input aria-label="New tenant id" className={field} placeholder="new tenant id (default: generated)" value={form.new_tenant_id ?? ""}
                      onChange={(e) => change({ new_tenant_id: e.target.value })} />
                    <input aria-label="New tenant name" data-testid="restore-new-name" className={field} placeholder="new tenant name" value={form.new_tenant_name ?? ""}
                      onChange={(e) => change({ new_tenant_name: e.target.value })} />
                    <label className="col-span-2 text-sm">
                      <span className={label}>A row equal to one the target has on a unique value (a slug, a name)</span>
                      <select className={field} data-testid="restore-on-conflict" value={onConflict}
                        onChange={(e) => { setOnConflict(e.target.value as Resolution); setPlan(null); }}>
                        <option value="keep_both">Keep both: the copy's value gets "-copy"</option>
                        <option value="keep_target">Keep the target's row (the copy points at it)</option>
                        <option value="stop">Stop and show them</option>
                      </select>
                    </label>
                  </div>
                )}
              </div>
            )}
            {form.restore_type === "selective" && (
              <div className="grid grid-cols-2 gap-2">
                <div>
                  <label className={label} htmlFor="restore-tables">Tables</label>
                  <input id="restore-tables" data-testid="restore-tables" className={field} value={tables} placeholder="projects, project_notes"
                    onChange={(e) => { setTables(e.target.value); setPlan(null); }} />
                </div>
                <div>
                  <label className={label} htmlFor="restore-exclude">Except</label>
                  <input id="restore-exclude" className={field} value={excluded} onChange={(e) => { setExcluded(e.target.value); setPlan(null); }} />
                </div>
              </div>
            )}
            {form.restore_type === "full" && (
              <label className="flex items-center gap-2 text-sm">
                <input type="checkbox" checked={form.clean} onChange={(e) => change({ clean: e.target.checked })} />
                Replace the target's tables (otherwise the target must be empty)
              </label>
            )}
            {form.restore_type === "full" && targetConnection?.kind === "postgres" && form.target_file == null && (
              <>
                <label className="flex items-center gap-2 text-sm">
                  <input type="checkbox" data-testid="restore-owners" checked={form.owners_and_privileges === true} onChange={(e) => change({ owners_and_privileges: e.target.checked })} />
                  Owners and grants as in the source (roles the target lacks are named in the plan)
                </label>
                <label className="flex items-center gap-2 text-sm">
                  <input type="checkbox" data-testid="restore-skip-unsupported" checked={form.skip_unsupported === true} onChange={(e) => change({ skip_unsupported: e.target.checked })} />
                  Leave out what the target cannot hold (the plan names each thing and what happens to it)
                </label>
              </>
            )}
            <div>
              <label className="flex items-center gap-2 text-sm">
                <input type="checkbox" data-testid="restore-at-point" checked={atPoint} onChange={(e) => { setAtPoint(e.target.checked); setPlan(null); }} />
                Restore to a point in time instead
              </label>
              {atPoint && (
                <>
                  <input id="restore-point" aria-label="Point in time" data-testid="restore-point" type="datetime-local" step="1" className={`${field} mt-1`} value={point}
                    onChange={(e) => { setPoint(e.target.value); setPlan(null); }} />
                  <p className="text-xs text-slate-500 mt-1">Restores the newest backup of the same source taken at or before this time (your local time).</p>
                </>
              )}
            </div>
            <label className="flex items-center gap-2 text-sm">
              <input type="checkbox" data-testid="restore-safety" checked={form.safety_backup} onChange={(e) => change({ safety_backup: e.target.checked })} />
              Back up what will be replaced first (safety backup)
            </label>
            <Button data-testid="restore-review" variant="outline" disabled={planning.isPending || tenantMissing || !form.backup_execution_id || !(form.target_file != null ? form.target_file : form.connection_id)}
              onClick={() => planning.mutate()}>
              {planning.isPending ? "Planning…" : "Review plan"}
            </Button>
            {planning.isError && <ErrorBox error={planning.error} />}
            {plan && <PlanView plan={plan} />}
            {plan && plan.destructive && (
              <div>
                <label className={label} htmlFor="restore-confirm">
                  This replaces data in <b>{plan.target_database}</b>. Type its name to confirm:
                </label>
                <input id="restore-confirm" data-testid="restore-confirm" className={field} value={confirm} onChange={(e) => setConfirm(e.target.value)} />
              </div>
            )}
            {plan && (
              <Button data-testid="restore-start" variant={plan.destructive ? "destructive" : "default"} disabled={!confirmed || starting.isPending}
                onClick={() => starting.mutate()}>
                {starting.isPending ? "Starting…" : "Restore"}
              </Button>
            )}
            {starting.isError && <ErrorBox error={starting.error} />}
            {started && <p className="text-sm text-green-700" data-testid="restore-started">Restore started: follow it under Active Restore Operations.</p>}
          </div>
        )
      }
    </QueryView>
  );
}

export function PlanView({ plan }: { plan: RestorePlan }) {
  const newest = plan.chain[plan.chain.length - 1];
  return (
    <div className="rounded-md border border-slate-200 bg-slate-50 p-3 text-sm space-y-2" data-testid="restore-plan">
      <div className="font-medium">
        Plan {plan.exact ? <Badge variant="secondary">from a trial run, rolled back</Badge> : <Badge variant="secondary">from the backup's index</Badge>}
      </div>
      {newest && (
        <div>
          Backup {newest.id.slice(0, 8)} ({newest.backup_type}, snapshot <When at={newest.snapshot_time} />) of {newest.source_name}
          {plan.chain.length > 1 && <> — reads a chain of {plan.chain.length} backups</>}
        </div>
      )}
      {plan.point_in_time && (
        <div data-testid="restore-plan-point">
          Reaches <When at={plan.point_in_time.reached} />, {Math.round(plan.point_in_time.gap_seconds)} s before the time asked for.
        </div>
      )}
      <div>Into {plan.target}</div>
      {plan.tenant_id && (
        <div>
          Tenant {plan.tenant_id}{" "}
          {plan.preserve_ids ? "— its rows replace the tenant's current rows; no other tenant is touched" : `— copied as a new tenant${plan.new_tenant_id ? ` (${plan.new_tenant_id})` : ""}`}
        </div>
      )}
      <table className="w-full text-left">
        <thead>
          <tr className="text-slate-500"><th>Table</th><th className="text-right">Rows</th>{plan.exact && <><th className="text-right">Insert</th><th className="text-right">Update</th><th className="text-right">Delete</th></>}</tr>
        </thead>
        <tbody>
          {plan.tables.map((t) => (
            <tr key={t.table} data-testid="restore-plan-table">
              <td>{t.table}</td>
              <td className="text-right">{t.rows_in_backup}</td>
              {plan.exact && <><td className="text-right">{t.inserted}</td><td className="text-right">{t.updated}</td><td className="text-right">{t.deleted}</td></>}
            </tr>
          ))}
        </tbody>
      </table>
      <div>
        {formatCount(plan.rows)} rows; about {formatFileSize(plan.estimated_bytes)} to read, about {Math.max(1, Math.round(plan.estimated_seconds))} s.
        {plan.replaced_objects > 0 && <> Drops and replaces {plan.replaced_objects} tables and views of the target.</>}
      </div>
      {plan.destructive && <div>{plan.safety_backup ? "A safety backup of what is replaced is taken first." : "No safety backup will be taken."}</div>}
      {plan.warnings.map((w) => (
        <div key={w} className="text-amber-700" data-testid="restore-plan-warning">⚠ {w}</div>
      ))}
      {plan.unsupported.map((u) => (
        <div key={u} className="text-red-700" data-testid="restore-plan-unsupported">✕ The target cannot hold: {u}</div>
      ))}
    </div>
  );
}

function VerifyReport({ report }: { report: RestoreTestReport }) {
  return (
    <div className="rounded-md border border-slate-200 p-3 text-sm mt-2" data-testid="verify-report">
      <div className="font-medium">
        {report.ok ? "Verified by restoring" : "The test restore found differences"} — {report.tables.length} tables, scratch database removed
      </div>
      <ul>
        {report.tables.map((t) => (
          <li key={t.table} className={t.ok ? "" : "text-red-700"}>
            {t.ok ? "✓" : "✗"} {t.table}: {t.restored_rows}/{t.expected_rows} rows, archive {t.archive_checksum}, source {t.source}
          </li>
        ))}
      </ul>
    </div>
  );
}
