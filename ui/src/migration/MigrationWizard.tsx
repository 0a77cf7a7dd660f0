// The migration wizard behind the Migration tab's three buttons: source → target → mapping →
// rules → validate → run, with Back and Next, a summary before running, and the job followed
// live in the list below. Nothing is written before Run: validation is a rolled-back trial run.
import { useEffect, useMemo, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  api,
  type MigrationReport,
  type MigrationSpec,
  type MigrationType,
  type Rule,
  type TableMapping,
} from "../api";
import { Button } from "../components/ui";
import { MappingStep, RulesStep, RunStep, SourceStep, TargetStep, ValidateStep, type WizardState } from "./steps";
import { queryKeys } from "../api/queries";

export type WizardKind = "import" | "export" | "migrate";

const STEPS = ["Source", "Target", "Mapping", "Rules", "Validate", "Run"] as const;
type Step = (typeof STEPS)[number];



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



export function MigrationWizard({ kind, onClose }: { kind: WizardKind; onClose: () => void }) {
  const queryClient = useQueryClient();
  const connections = useQuery({ queryKey: queryKeys.connections, queryFn: api.listConnections });
  const storage = useQuery({ queryKey: queryKeys.storage, queryFn: api.listStorage, enabled: kind === "export" });
  // Every database can be migrated; PostgreSQL ones first (a copy or merge stays on one engine:
  // the target step offers the source's kind only).
  const databases = [...(connections.data ?? [])].sort((a, b) => Number(b.kind === "postgres") - Number(a.kind === "postgres"));
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
    if (!spec.source && databases[0] && spec.migration_type !== "data_import") change({ source: databases[0].id });
    if (!spec.target && databases[0] && spec.migration_type !== "data_export") change({ target: databases[0].id });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [connections.data]);
  // A copy or merge writes into a database of the source's engine.
  useEffect(() => {
    const kind = databases.find((c) => c.id === spec.source)?.kind;
    const target = databases.find((c) => c.id === spec.target);
    if (kind && target && target.kind !== kind && spec.migration_type !== "data_import") {
      const first = databases.find((c) => c.kind === kind);
      if (first) change({ target: first.id });
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [spec.source, connections.data]);

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

  const w: WizardState = { kind, spec, setSpec, change, connections, databases, storage, sourceTenants, targetTenants, propose, validate, start, report, started, stale, setStale, connName, sourceTables, problems, archiveExport, setRule, setMapping };

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

      {step === "Source" && <SourceStep w={w} />}

      {step === "Target" && <TargetStep w={w} />}

      {step === "Mapping" && <MappingStep w={w} />}

      {step === "Rules" && <RulesStep w={w} />}

      {step === "Validate" && <ValidateStep w={w} />}

      {step === "Run" && <RunStep w={w} />}

      <div className="flex justify-between">
        <Button variant="outline" data-testid="mig-back" disabled={at === 0 || !!started} onClick={() => setStep(steps[at - 1])}>Back</Button>
        {step !== "Run" && (
          <Button data-testid="mig-next" disabled={!ready[step]} onClick={next}>Next</Button>
        )}
      </div>
    </div>
  );
}



