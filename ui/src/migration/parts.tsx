// What the Migration wizard's steps share: field styles, the rule and conflict-rule choices, the
// references panel, a rule's parameters, and the one-line summary of a migration.
import { useState } from "react";
import type { Action, MigrationSpec, Resolution } from "../api";
import { Badge, Button } from "../components/ui";

export const field = "w-full rounded-md border border-slate-300 px-3 py-2 text-sm";
export const label = "block text-sm font-medium mb-1";

export const RULES: { value: Action["rule"]; text: string }[] = [
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

export const RESOLUTIONS: { value: Resolution; text: string }[] = [
  { value: "stop", text: "Stop (do not run)" },
  { value: "keep_target", text: "Keep the target's row" },
  { value: "take_source", text: "Take the source's values" },
  { value: "keep_both", text: "Keep both (add a suffix)" },
];

export function defaultAction(rule: Action["rule"]): Action {
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

// References no foreign key declares: the ones validation infers, to confirm, and the declared
// ones, to remove; another typed in.
export function References({ inferred, declared, remembered, onChange }: { inferred: string[]; declared: string[]; remembered: string[]; onChange: (r: string[]) => void }) {
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

export function RuleParams({ action, onChange }: { action: Action; onChange: (a: Action) => void }) {
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
