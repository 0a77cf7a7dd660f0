// The Migration wizard's steps, one component each, over the wizard's state (`WizardState`).
import type { UseMutationResult, UseQueryResult } from "@tanstack/react-query";
import { api, type Action, type BackupStorage, type Connection, type MigrationReport, type MigrationSpec, type MigrationType, type Problem, type Resolution, type Rule, type TableMapping, type TenantRow } from "../api";
import { Badge, Button } from "../components/ui";
import { ErrorBox } from "../components/states";
import { RESOLUTIONS, RULES, References, RuleParams, defaultAction, describeSpec, field, label } from "./parts";
import type { WizardKind } from "./MigrationWizard";

/** What the wizard holds and the steps read and change. */
export type WizardState = {
  kind: WizardKind;
  spec: MigrationSpec;
  setSpec: (f: (s: MigrationSpec) => MigrationSpec) => void;
  /** Changes the spec; a validation made before no longer holds. */
  change: (patch: Partial<MigrationSpec>) => void;
  connections: UseQueryResult<Connection[]>;
  /** The connections a migration reads or writes, PostgreSQL's first. */
  databases: Connection[];
  storage: UseQueryResult<BackupStorage[]>;
  sourceTenants: UseQueryResult<TenantRow[]>;
  targetTenants: UseQueryResult<TenantRow[]>;
  propose: UseMutationResult<MigrationReport, Error, void>;
  validate: UseMutationResult<MigrationReport, Error, void>;
  start: UseMutationResult<string, Error, void>;
  report: MigrationReport | null;
  started: string | null;
  stale: boolean;
  setStale: (stale: boolean) => void;
  connName: (id: string | null) => string;
  sourceTables: string[];
  problems: { table: string; p: Problem }[];
  archiveExport: boolean;
  setRule: (i: number, r: Rule) => void;
  setMapping: (i: number, m: TableMapping) => void;
};

/** What is read: a database and its tenant, or the files of an import. */
export function SourceStep({ w }: { w: WizardState }) {
  const { kind, spec, change, databases, sourceTenants } = w;
  return (
    <div className="space-y-3">
      {kind === "migrate" && (
        <div>
          <label className={label} htmlFor="mig-kind">What to do</label>
          <select id="mig-kind" className={field} data-testid="mig-kind" value={spec.migration_type ?? "tenant_copy"}
            onChange={(e) => change({ migration_type: e.target.value as MigrationType, target_tenant_id: null })}>
            <option value="tenant_copy">Copy a tenant (new ids everywhere)</option>
            <option value="tenant_merge">Merge a tenant into another</option>
          </select>
        </div>
      )}
      {spec.migration_type === "data_import" ? (
        <div className="space-y-2">
          <Button variant="outline" data-testid="mig-pick-files" onClick={async () => {
            const files = await api.pickImportFiles();
            if (files.length) change({ source_files: files });
          }}>
            Choose files…
          </Button>
          <label className={label} htmlFor="mig-files">Files (a portable export .zip, a Safehold archive, or CSV / JSON Lines files named after their tables)</label>
          <textarea id="mig-files" className={field} rows={2} data-testid="mig-files" value={spec.source_files.join("\n")}
            onChange={(e) => change({ source_files: e.target.value.split("\n").map((f) => f.trim()).filter(Boolean) })} />
          <label className={label} htmlFor="mig-archive-tenant">From a backup or a multi-tenant export: the tenant to import</label>
          <input id="mig-archive-tenant" className={field} value={spec.source_tenant_ids.join(",")}
            onChange={(e) => change({ source_tenant_ids: e.target.value.split(",").map((t) => t.trim()).filter(Boolean) })} />
        </div>
      ) : (
        <>
          <div>
            <label className={label} htmlFor="mig-source">Source database</label>
            <select id="mig-source" className={field} data-testid="mig-source" value={spec.source ?? ""}
              onChange={(e) => change({ source: e.target.value, source_tenant_ids: [] })}>
              {databases.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
            </select>
            {databases.length === 0 && (
              <p className="text-sm text-slate-500 mt-1">Add the database to read from under Connections (top right).</p>
            )}
          </div>
          <div>
            <label className={label} htmlFor="mig-tenant">Tenant</label>
            <select id="mig-tenant" className={field} data-testid="mig-tenant" value={spec.source_tenant_ids[0] ?? ""}
              onChange={(e) => change({ source_tenant_ids: e.target.value ? [e.target.value] : [] })}>
              <option value="">Choose a tenant…</option>
              {(sourceTenants.data ?? []).map((t) => <option key={t.id} value={t.id}>{t.name ? `${t.name} (${t.id})` : t.id}</option>)}
            </select>
            {sourceTenants.error && <ErrorBox error={sourceTenants.error} />}
          </div>
        </>
      )}
    </div>
  );
}

/** Where it goes: a database (and the tenant merged into), or the export's file and format. */
export function TargetStep({ w }: { w: WizardState }) {
  const { spec, change, databases, storage, targetTenants, archiveExport } = w;
  // A tenant is copied or merged between databases of one engine (across engines: export, then import).
  const sourceKind = databases.find((c) => c.id === spec.source)?.kind;
  const targets = spec.migration_type === "data_import" || !sourceKind ? databases : databases.filter((c) => c.kind === sourceKind);
  const sqliteSource = sourceKind === "sqlite";
  return (
    <div className="space-y-3">
      {spec.migration_type === "data_export" ? (
        <div className="space-y-2">
          <label className={label} htmlFor="mig-export-format">Format</label>
          <select id="mig-export-format" className={field} data-testid="mig-export-format" value={spec.export_format}
            onChange={(e) => change({ export_format: e.target.value as MigrationSpec["export_format"], rules: [], target_file: null })}>
            <option value="portable">Portable export for the customer (ZIP: JSON Lines and CSV per table, schema.json, manifest.json)</option>
            <option value="archive" disabled={sqliteSource}>Safehold archive (encrypted; restorable with Restore){sqliteSource ? " — from PostgreSQL sources" : ""}</option>
          </select>
          {archiveExport && (
            <>
              <label className={label} htmlFor="mig-archive-repo">Encrypted with the key of the storage</label>
              <select id="mig-archive-repo" className={field} data-testid="mig-archive-repo" value={spec.archive_repository ?? ""}
                onChange={(e) => change({ archive_repository: e.target.value || null })}>
                <option value="">The default storage location</option>
                {(storage.data ?? []).map((s) => <option key={s.id} value={s.id}>{s.storage_name}</option>)}
              </select>
              <p className="text-xs text-muted-foreground">
                The archive holds the tenant's rows of every tenant table and the shared tables whole. It opens with that storage's key or its recovery kit.
              </p>
            </>
          )}
          <label className={label} htmlFor="mig-target-file">Save the export to</label>
          <div className="flex gap-2">
            <input id="mig-target-file" className={field} data-testid="mig-target-file" value={spec.target_file ?? ""}
              onChange={(e) => change({ target_file: e.target.value || null })} />
            <Button variant="outline" onClick={async () => {
              const base = `tenant-${spec.source_tenant_ids[0] ?? "export"}`;
              const f = await api.pickExportFile(archiveExport ? `${base}.shar` : `${base}.zip`);
              if (f) change({ target_file: f });
            }}>
              Save as…
            </Button>
          </div>
        </div>
      ) : (
        <>
          <div>
            <label className={label} htmlFor="mig-target">Target database</label>
            <select id="mig-target" className={field} data-testid="mig-target" value={spec.target ?? ""} onChange={(e) => change({ target: e.target.value })}>
              {targets.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
            </select>
          </div>
          {spec.migration_type === "tenant_merge" ? (
            <>
              <label className={label} htmlFor="mig-into">Merge into the tenant</label>
              <select id="mig-into" className={field} data-testid="mig-into" value={spec.target_tenant_id ?? ""}
                onChange={(e) => change({ target_tenant_id: e.target.value || null })}>
                <option value="">Choose a tenant…</option>
                {(targetTenants.data ?? []).filter((t) => !(spec.target === spec.source && spec.source_tenant_ids.includes(t.id))).map((t) => (
                  <option key={t.id} value={t.id}>{t.name ? `${t.name} (${t.id})` : t.id}</option>
                ))}
              </select>
              <label className="flex items-center gap-2 text-sm">
                <input type="checkbox" checked={spec.remove_source_tenant} onChange={(e) => change({ remove_source_tenant: e.target.checked })} />
                Remove tenant {spec.source_tenant_ids[0]} afterwards (same database only)
              </label>
            </>
          ) : (
            <div className="grid grid-cols-2 gap-3">
              <div>
                <label className={label} htmlFor="mig-new-tenant">
                  {spec.migration_type === "data_import" ? "Tenant id (existing: merged into; new: created)" : "New tenant id (empty: made by the database)"}
                </label>
                <input id="mig-new-tenant" className={field} data-testid="mig-new-tenant" value={spec.target_tenant_id ?? ""}
                  onChange={(e) => change({ target_tenant_id: e.target.value || null })} />
              </div>
              <div>
                <label className={label} htmlFor="mig-new-name">New tenant's name (optional)</label>
                <input id="mig-new-name" className={field} data-testid="mig-new-name" value={spec.target_tenant_name ?? ""}
                  onChange={(e) => change({ target_tenant_name: e.target.value || null })} />
              </div>
            </div>
          )}
        </>
      )}
    </div>
  );
}

/** Each source table onto a target table, column by column. */
export function MappingStep({ w }: { w: WizardState }) {
  const { spec, propose, setMapping } = w;
  return (
    <div className="space-y-3" data-testid="mig-mapping">
      <p className="text-sm text-slate-600">Proposed from the names. Change a target table or column, or empty a column to leave it out.</p>
      {propose.isPending && <p className="text-sm">Reading the source…</p>}
      {propose.error && <ErrorBox error={propose.error} />}
      {spec.mapping.map((m, i) => (
        <details key={m.source} className="border rounded p-2 bg-white">
          <summary className="text-sm">
            <span className="font-medium">{m.source}</span> → {m.target}
          </summary>
          <div className="mt-2 space-y-1">
            <label className="text-xs">Target table <input className={field} value={m.target} onChange={(e) => setMapping(i, { ...m, target: e.target.value })} /></label>
            {[...Object.keys(m.columns), ...m.drop].map((c) => (
              <div key={c} className="flex items-center gap-2 text-sm">
                <span className="w-40 truncate">{c}</span>→
                <input className={field} aria-label={`${m.source}.${c} goes to`} value={m.columns[c] ?? ""} placeholder="(not written)"
                  onChange={(e) => {
                    const columns = { ...m.columns };
                    const drop = m.drop.filter((d) => d !== c);
                    if (e.target.value) columns[c] = e.target.value;
                    else {
                      delete columns[c];
                      drop.push(c);
                    }
                    setMapping(i, { ...m, columns, drop });
                  }} />
              </div>
            ))}
            <label className="text-xs block">Defaults for target columns the source lacks (one column=value per line)
              <textarea className={field} rows={2} value={Object.entries(m.defaults).map(([k, v]) => `${k}=${v}`).join("\n")}
                onChange={(e) => setMapping(i, {
                  ...m,
                  defaults: Object.fromEntries(e.target.value.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")).trim(), l.slice(l.indexOf("=") + 1)])),
                })} />
            </label>
          </div>
        </details>
      ))}
    </div>
  );
}

/** Transformation rules applied to the rows read. */
export function RulesStep({ w }: { w: WizardState }) {
  const { spec, change, sourceTables, setRule } = w;
  return (
    <div className="space-y-2" data-testid="mig-rules">
      <p className="text-sm text-slate-600">Applied to every row, in order, before writing (e.g. mask production emails when copying into staging).</p>
      {spec.rules.map((r, i) => (
        <div key={i} className="flex flex-wrap gap-2 items-center bg-white border rounded p-2" data-testid="mig-rule">
          <input className="rounded border px-2 py-1 text-sm w-40" aria-label="Table" placeholder="table" list="mig-tables" value={r.table}
            onChange={(e) => setRule(i, { ...r, table: e.target.value })} />
          <input className="rounded border px-2 py-1 text-sm w-32" aria-label="Column" placeholder="column" value={r.column}
            onChange={(e) => setRule(i, { ...r, column: e.target.value })} />
          <select className="rounded border px-2 py-1 text-sm" aria-label="Rule" value={r.action.rule}
            onChange={(e) => setRule(i, { ...r, action: defaultAction(e.target.value as Action["rule"]) })}>
            {RULES.map((x) => <option key={x.value} value={x.value}>{x.text}</option>)}
          </select>
          <RuleParams action={r.action} onChange={(action) => setRule(i, { ...r, action })} />
          <Button variant="outline" onClick={() => change({ rules: spec.rules.filter((_, j) => j !== i) })}>Remove</Button>
        </div>
      ))}
      <datalist id="mig-tables">{sourceTables.map((t) => <option key={t} value={t} />)}</datalist>
      <Button variant="outline" data-testid="mig-add-rule"
        onClick={() => change({ rules: [...spec.rules, { table: sourceTables[0] ?? "", column: "", action: { rule: "mask" } }] })}>
        Add a rule
      </Button>
    </div>
  );
}

/** The rolled-back trial run's report: problems, conflict rules, inferred references. */
export function ValidateStep({ w }: { w: WizardState }) {
  const { spec, setSpec, validate, report, stale, setStale, problems } = w;
  return (
    <div className="space-y-2" data-testid="mig-validation">
      {validate.isPending && <p className="text-sm">Validating: the whole migration runs in a transaction that is rolled back…</p>}
      {validate.error && <ErrorBox error={validate.error} />}
      {report && (
        <>
          <table className="w-full text-sm">
            <thead>
              <tr className="text-left text-slate-500"><th>Table</th><th>Read</th><th>Would write</th><th>Set aside</th></tr>
            </thead>
            <tbody>
              {report.tables.map((t) => (
                <tr key={t.table}>
                  <td>{t.table}{t.source_table && t.source_table !== t.table ? ` (from ${t.source_table})` : ""}</td>
                  <td>{t.rows_read}</td>
                  <td>{t.rows_written + t.rows_updated}</td>
                  <td>{t.rows_rejected}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {report.warnings.filter((w) => !report.inferred.some((r) => w.startsWith(`inferred: ${r} `))).map((w) => <p key={w} className="text-sm text-amber-700">{w}</p>)}
          <References
            inferred={report.inferred}
            declared={spec.references}
            remembered={report.references.filter((r) => !spec.references.includes(r))}
            onChange={(references) => {
              setSpec((s) => ({ ...s, references }));
              setStale(true);
            }}
          />
          {problems.length === 0 ? (
            <p className="text-sm text-green-700" data-testid="mig-valid">Validation passed: nothing was changed. {report.rows_read} rows read.</p>
          ) : (
            <div className="space-y-2">
              {problems.map(({ table, p }, i) => (
                <div key={i} className="border border-red-200 bg-red-50 rounded p-2 text-sm" data-testid="mig-problem">
                  <Badge variant="destructive">{p.kind}</Badge> <span>{table}: {p.message}</span>
                  {p.samples.length > 0 && <div className="text-xs text-slate-600">e.g. {p.samples.join("; ")}</div>}
                  {p.kind === "unique_conflict" && (
                    <select className="mt-1 rounded border px-2 py-1 text-sm" data-testid={`mig-conflict-${table}`} aria-label={`On conflicts in ${table}`}
                      value={spec.conflicts[table] ?? "stop"}
                      onChange={(e) => {
                        setSpec((s) => ({ ...s, conflicts: { ...s.conflicts, [table]: e.target.value as Resolution } }));
                        setStale(true);
                      }}>
                      {RESOLUTIONS.map((r) => <option key={r.value} value={r.value}>{r.text}</option>)}
                    </select>
                  )}
                </div>
              ))}
              <label className="flex items-center gap-2 text-sm">
                <input type="checkbox" checked={spec.skip_rejected} onChange={(e) => setSpec((s) => ({ ...s, skip_rejected: e.target.checked }))} />
                Run anyway and skip the rows set aside
              </label>
            </div>
          )}
        </>
      )}
      {stale && <p className="text-sm text-amber-700">Validate again to see the result of the conflict rules.</p>}
      <Button variant="outline" data-testid="mig-revalidate" onClick={() => validate.mutate()} disabled={validate.isPending}>Validate again</Button>
    </div>
  );
}

/** The summary, and Run. */
export function RunStep({ w }: { w: WizardState }) {
  const { spec, start, report, started, connName, problems } = w;
  return (
    <div className="space-y-2" data-testid="mig-summary">
      <p className="text-sm font-medium">{describeSpec(spec, connName)}</p>
      <p className="text-sm text-slate-600">
        {spec.mapping.length} tables mapped, {spec.rules.length} rules, {report?.rows_read ?? 0} rows read in validation
        {spec.skip_rejected && problems.length > 0 ? `; ${report?.rows_rejected ?? 0} rows will be skipped` : ""}. All or nothing: one transaction.
      </p>
      {start.error && <ErrorBox error={start.error} />}
      {started ? (
        <p className="text-sm text-green-700" data-testid="mig-started">Started: follow it in the list below.</p>
      ) : (
        <Button data-testid="mig-run" onClick={() => start.mutate()} disabled={start.isPending}>Run</Button>
      )}
    </div>
  );
}
