// The migration wizard behind the Migration tab's three buttons: source → target → mapping →
// rules → validate → run, with Back and Next, a summary before running, and the job followed
// live in the list below. Nothing is written before Run: validation is a rolled-back trial run.
import { useEffect, useMemo, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  api,
  type Action,
  type MigrationReport,
  type MigrationSpec,
  type MigrationType,
  type Resolution,
  type Rule,
  type TableMapping,
} from "../api";
import { Badge, Button } from "../components/ui";
import { ErrorBox } from "../components/states";
import { queryKeys } from "../api/queries";

const field = "w-full rounded-md border border-slate-300 px-3 py-2 text-sm";
const label = "block text-sm font-medium mb-1";

export type WizardKind = "import" | "export" | "migrate";

const STEPS = ["Source", "Target", "Mapping", "Rules", "Validate", "Run"] as const;
type Step = (typeof STEPS)[number];

const RULES: { value: Action["rule"]; text: string }[] = [
  { value: "mask", text: "Mask (keep first and last character)" },
  { value: "fake", text: "Fake (realistic, deterministic)" },
  { value: "hash", text: "Hash (SHA-256 with salt)" },
  { value: "set", text: "Set a constant" },
  { value: "copy", text: "Copy from another column" },
  { value: "lower", text: "Lower case" },
  { value: "upper", text: "Upper case" },
  { value: "trim", text: "Trim spaces" },
  { value: "replace", text: "Regex replace" },
  { value: "null", text: "Null out" },
  { value: "regenerate", text: "Regenerate (a fresh value of the same form)" },
  { value: "drop_row", text: "Drop the row when…" },
];

const RESOLUTIONS: { value: Resolution; text: string }[] = [
  { value: "stop", text: "Stop (do not run)" },
  { value: "keep_target", text: "Keep the target's row" },
  { value: "take_source", text: "Take the source's values" },
  { value: "keep_both", text: "Keep both (add a suffix)" },
];

function emptySpec(kind: MigrationType): MigrationSpec {
  return {
    migration_name: "",
    migration_type: kind,
    source: null,
    source_files: [],
    source_tenant_ids: [],
    target: null,
    target_file: null,
    target_tenant_id: null,
    target_tenant_name: null,
    export_format: "portable",
    archive_repository: null,
    mapping: [],
    rules: [],
    conflicts: {},
    suffix: null,
    remove_source_tenant: false,
    skip_rejected: false,
    tenant_column: null,
    tenants_table: null,
    references: [],
  };
}

function defaultAction(rule: Action["rule"]): Action {
  switch (rule) {
    case "set":
      return { rule, value: "" };
    case "copy":
      return { rule, from: "" };
    case "replace":
      return { rule, pattern: "", replacement: "" };
    case "hash":
      return { rule, salt: "" };
    case "fake":
      return { rule, kind: "email", salt: "" };
    case "drop_row":
      return { rule, op: "eq", value: "" };
    case "regenerate":
      return { rule, template: null };
    default:
      return { rule } as Action;
  }
}

export function describeSpec(spec: MigrationSpec, connName: (id: string | null) => string): string {
  const tenants = spec.source_tenant_ids.join(", ");
  switch (spec.migration_type) {
    case "tenant_copy":
      return `Copy tenant ${tenants} of ${connName(spec.source)} into ${connName(spec.target)} as ${spec.target_tenant_id || "a new tenant id"}`;
    case "tenant_merge":
      return `Merge tenant ${tenants} into tenant ${spec.target_tenant_id ?? "?"} of ${connName(spec.target)}${spec.remove_source_tenant ? ", then remove tenant " + tenants : ""}`;
    case "data_export":
      return `Export tenant ${tenants} of ${connName(spec.source)} to ${spec.target_file ?? "?"} as ${spec.export_format === "archive" ? "an encrypted Safehold archive" : "a portable ZIP"}`;
    case "data_import":
      return `Import ${spec.source_files.length} file(s) into tenant ${spec.target_tenant_id || "(new)"} of ${connName(spec.target)}`;
    default:
      return "";
  }
}

export function MigrationWizard({ kind, onClose }: { kind: WizardKind; onClose: () => void }) {
  const queryClient = useQueryClient();
  const connections = useQuery({ queryKey: queryKeys.connections, queryFn: api.listConnections });
  const storage = useQuery({ queryKey: queryKeys.storage, queryFn: api.listStorage, enabled: kind === "export" });
  const pgConnections = (connections.data ?? []).filter((c) => c.kind === "postgres");
  const initial: MigrationType = kind === "import" ? "data_import" : kind === "export" ? "data_export" : "tenant_copy";
  const [spec, setSpec] = useState<MigrationSpec>(() => emptySpec(initial));
  const [step, setStep] = useState<Step>("Source");
  const [report, setReport] = useState<MigrationReport | null>(null);
  const [started, setStarted] = useState<string | null>(null);
  // Conflict rules chosen after a validation: validate again before running.
  const [stale, setStale] = useState(false);
  const archiveExport = spec.migration_type === "data_export" && spec.export_format === "archive";
  // An archive holds the rows as they are: no rules step.
  const steps: Step[] =
    spec.migration_type === "data_export" ? (archiveExport ? ["Source", "Target", "Validate", "Run"] : ["Source", "Target", "Rules", "Validate", "Run"]) : [...STEPS];
  const at = steps.indexOf(step);
  const change = (patch: Partial<MigrationSpec>) => {
    setSpec((s) => ({ ...s, ...patch }));
    setReport(null);
  };

  useEffect(() => {
    if (!spec.source && pgConnections[0] && spec.migration_type !== "data_import") change({ source: pgConnections[0].id });
    if (!spec.target && pgConnections[0] && spec.migration_type !== "data_export") change({ target: pgConnections[0].id });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [connections.data]);

  const sourceTenants = useQuery({
    queryKey: queryKeys.tenants(spec.source),
    queryFn: () => api.listTenants(spec.source ?? ""),
    enabled: !!spec.source && spec.migration_type !== "data_import",
  });
  const targetTenants = useQuery({
    queryKey: queryKeys.tenants(spec.target),
    queryFn: () => api.listTenants(spec.target ?? ""),
    enabled: !!spec.target && (spec.migration_type === "tenant_merge" || spec.migration_type === "data_import"),
  });

  const propose = useMutation({
    mutationFn: () => api.proposeMigration({ ...spec, mapping: [], rules: [] }),
    onSuccess: (r) => setSpec((s) => ({ ...s, mapping: r.mapping })),
  });
  const validate = useMutation({
    mutationFn: () => api.validateMigration(spec),
    onSuccess: (r) => {
      setReport(r);
      setStale(false);
    },
  });
  const start = useMutation({
    mutationFn: () => api.startMigration(spec),
    onSuccess: (id) => {
      setStarted(id);
      void queryClient.invalidateQueries({ queryKey: queryKeys.migrations });
    },
  });

  const connName = (id: string | null) => (connections.data ?? []).find((c) => c.id === id)?.name ?? id ?? "?";
  const sourceTables = useMemo(() => spec.mapping.map((m) => m.source), [spec.mapping]);
  const problems = report ? report.tables.flatMap((t) => t.problems.map((p) => ({ table: t.table, p }))) : [];
  const canRun = !!report && !stale && (problems.length === 0 || spec.skip_rejected);

  const ready: Record<Step, boolean> = {
    Source:
      spec.migration_type === "data_import"
        ? spec.source_files.length > 0
        : !!spec.source && spec.source_tenant_ids.length > 0,
    Target:
      spec.migration_type === "data_export"
        ? !!spec.target_file
        : !!spec.target && (spec.migration_type !== "tenant_merge" || !!spec.target_tenant_id),
    Mapping: true,
    Rules: spec.rules.every((r) => r.table && r.column),
    Validate: canRun,
    Run: true,
  };

  const next = () => {
    const n = steps[at + 1];
    if (!n) return;
    if (n === "Mapping" && spec.mapping.length === 0) propose.mutate();
    if (n === "Validate") validate.mutate();
    setStep(n);
  };

  const setRule = (i: number, r: Rule) => change({ rules: spec.rules.map((x, j) => (j === i ? r : x)) });
  const setMapping = (i: number, m: TableMapping) => change({ mapping: spec.mapping.map((x, j) => (j === i ? m : x)) });

  return (
    <div className="border rounded-lg p-4 space-y-4 bg-slate-50" data-testid="migration-wizard">
      <div className="flex items-center justify-between">
        <ol className="flex gap-2 text-sm" aria-label="Steps">
          {steps.map((s, i) => (
            <li key={s} className={i === at ? "font-semibold text-slate-900" : "text-slate-400"} aria-current={i === at ? "step" : undefined}>
              {i + 1}. {s}
            </li>
          ))}
        </ol>
        <Button variant="outline" onClick={onClose} data-testid="mig-close">
          Close
        </Button>
      </div>

      {step === "Source" && (
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
                  {pgConnections.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
                </select>
                {pgConnections.length === 0 && (
                  <p className="text-sm text-slate-500 mt-1">Tenant migrations work on PostgreSQL connections: add one under Settings (the demo platform is SQLite).</p>
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
      )}

      {step === "Target" && (
        <div className="space-y-3">
          {spec.migration_type === "data_export" ? (
            <div className="space-y-2">
              <label className={label} htmlFor="mig-export-format">Format</label>
              <select id="mig-export-format" className={field} data-testid="mig-export-format" value={spec.export_format}
                onChange={(e) => change({ export_format: e.target.value as MigrationSpec["export_format"], rules: [], target_file: null })}>
                <option value="portable">Portable export for the customer (ZIP: JSON Lines and CSV per table, schema.json, manifest.json)</option>
                <option value="archive">Safehold archive (encrypted; restorable with Restore)</option>
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
                  {pgConnections.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
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
      )}

      {step === "Mapping" && (
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
      )}

      {step === "Rules" && (
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
      )}

      {step === "Validate" && (
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
              {report.warnings.filter((w) => !inferredReference(w)).map((w) => <p key={w} className="text-sm text-amber-700">{w}</p>)}
              <References
                inferred={report.warnings.map(inferredReference).filter((r): r is string => !!r)}
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
      )}

      {step === "Run" && (
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
      )}

      <div className="flex justify-between">
        <Button variant="outline" data-testid="mig-back" disabled={at === 0 || !!started} onClick={() => setStep(steps[at - 1])}>Back</Button>
        {step !== "Run" && (
          <Button data-testid="mig-next" disabled={!ready[step]} onClick={next}>Next</Button>
        )}
      </div>
    </div>
  );
}

/// The reference a validation warning proposes (`… --reference CHILD.COL=PARENT.COL`), if any.
function inferredReference(warning: string): string | null {
  if (!warning.startsWith("inferred:")) return null;
  const m = /--reference (\S+)$/.exec(warning);
  return m ? m[1] : null;
}

/// References no foreign key declares: the ones validation infers, to confirm, and the declared
/// ones, to remove; another typed in.
function References({ inferred, declared, remembered, onChange }: { inferred: string[]; declared: string[]; remembered: string[]; onChange: (r: string[]) => void }) {
  const [typed, setTyped] = useState("");
  const open = inferred.filter((r) => !declared.includes(r));
  return (
    <div className="border rounded p-2 bg-white space-y-1" data-testid="mig-references">
      <p className="text-sm font-medium">References no foreign key declares</p>
      {open.length === 0 && declared.length === 0 && remembered.length === 0 && <p className="text-xs text-slate-500">None found. A copy follows only declared foreign keys and the references below.</p>}
      {open.map((r) => (
        <div key={r} className="flex items-center gap-2 text-sm" data-testid="mig-inferred-reference">
          <span className="font-mono text-xs">{r}</span>
          <span className="text-xs text-slate-500">inferred: every value is found there</span>
          <Button variant="outline" onClick={() => onChange([...declared, r])}>Confirm</Button>
        </div>
      ))}
      {remembered.map((r) => (
        <div key={r} className="flex items-center gap-2 text-sm" data-testid="mig-remembered-reference">
          <span className="font-mono text-xs">{r}</span>
          <Badge>remembered with the connection</Badge>
        </div>
      ))}
      {declared.map((r) => (
        <div key={r} className="flex items-center gap-2 text-sm" data-testid="mig-declared-reference">
          <span className="font-mono text-xs">{r}</span>
          <Badge>declared</Badge>
          <Button variant="outline" onClick={() => onChange(declared.filter((d) => d !== r))}>Remove</Button>
        </div>
      ))}
      <div className="flex items-center gap-2">
        <input className="rounded border px-2 py-1 text-sm w-96" aria-label="Declare a reference" placeholder="child_table.column=parent_table.column" value={typed}
          onChange={(e) => setTyped(e.target.value)} />
        <Button variant="outline" disabled={!typed.includes("=")} onClick={() => { onChange([...declared, typed.trim()]); setTyped(""); }}>Declare</Button>
      </div>
    </div>
  );
}

function RuleParams({ action, onChange }: { action: Action; onChange: (a: Action) => void }) {
  const input = (labelText: string, value: string, set: (v: string) => void) => (
    <input className="rounded border px-2 py-1 text-sm w-36" aria-label={labelText} placeholder={labelText} value={value} onChange={(e) => set(e.target.value)} />
  );
  switch (action.rule) {
    case "set":
      return input("value", action.value ?? "", (v) => onChange({ ...action, value: v }));
    case "copy":
      return input("from column", action.from, (v) => onChange({ ...action, from: v }));
    case "replace":
      return (
        <>
          {input("pattern", action.pattern, (v) => onChange({ ...action, pattern: v }))}
          {input("replacement", action.replacement, (v) => onChange({ ...action, replacement: v }))}
        </>
      );
    case "hash":
      return input("salt", action.salt, (v) => onChange({ ...action, salt: v }));
    case "fake":
      return (
        <>
          <select className="rounded border px-2 py-1 text-sm" aria-label="Fake kind" value={action.kind}
            onChange={(e) => onChange({ ...action, kind: e.target.value as typeof action.kind })}>
            {["email", "name", "first_name", "last_name", "phone"].map((k) => <option key={k} value={k}>{k}</option>)}
          </select>
          {input("salt", action.salt, (v) => onChange({ ...action, salt: v }))}
        </>
      );
    case "drop_row":
      return (
        <>
          <select className="rounded border px-2 py-1 text-sm" aria-label="Condition" value={action.op}
            onChange={(e) => onChange({ ...action, op: e.target.value as typeof action.op })}>
            {["eq", "ne", "lt", "gt", "contains", "matches", "is_null", "not_null"].map((k) => <option key={k} value={k}>{k}</option>)}
          </select>
          {action.op !== "is_null" && action.op !== "not_null" && input("value", action.value ?? "", (v) => onChange({ ...action, value: v }))}
        </>
      );
    default:
      return null;
  }
}
