import { useEffect, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { api, ApiError, DEFAULT_CONFIGURATION_INPUT, type BackupConfiguration, type ConfigurationInput, type CronPreview, type FieldError } from "../api";
import { Button, Card, CardContent, CardHeader } from "../components/ui";
import { ErrorBox } from "../components/states";
import { queryKeys } from "../api/queries";
import { Parts, When } from "../components/When";

const input = "w-full rounded-md border border-slate-300 px-3 py-2 text-sm";

/** A new configuration: the engine's defaults (`ConfigurationInput::default()`), into `storage`. */
export function defaultInput(storage: string, connectionId: string): ConfigurationInput {
  return { ...DEFAULT_CONFIGURATION_INPUT, storage_location: storage, connection_id: connectionId };
}

export function toInput(c: BackupConfiguration): ConfigurationInput {
  return {
    configuration_name: c.configuration_name,
    backup_type: c.backup_type,
    schedule_cron: c.schedule_cron,
    retention_days: c.retention_days,
    compression_enabled: c.compression_enabled,
    encryption_enabled: c.encryption_enabled,
    storage_location: c.storage_location,
    secondary_storage: c.secondary_storage,
    missed_runs: c.missed_runs,
    time_zone: c.time_zone,
    includes_tenant_data: c.includes_tenant_data,
    includes_system_data: c.includes_system_data,
    includes_logs: c.includes_logs,
    is_active: c.is_active,
    continuous_protection: c.continuous_protection,
    whole_server: c.whole_server,
    exclude_databases: c.exclude_databases,
    server_passwords: c.server_passwords,
    connection_id: c.connection_id ?? "",
  };
}

function FieldMessage({ errors, field }: { errors: FieldError[]; field: string }) {
  const e = errors.find((f) => f.field === field);
  return e ? (
    <p className="text-sm text-red-600 mt-1" data-testid={`error-${field}`}>
      {e.message}
    </p>
  ) : null;
}

/** Create or edit a configuration, validated against the engine as the user types. */
export function ConfigurationForm({
  editing,
  onDone,
}: {
  editing: BackupConfiguration | null;
  onDone: (saved: BackupConfiguration | null) => void;
}) {
  const storage = useQuery({ queryKey: queryKeys.storage, queryFn: api.listStorage });
  const connections = useQuery({ queryKey: queryKeys.connections, queryFn: api.listConnections });
  const [value, setValue] = useState<ConfigurationInput>(() =>
    editing ? toInput(editing) : defaultInput("", ""),
  );
  const [touched, setTouched] = useState<Set<string>>(new Set());
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [saving, setSaving] = useState(false);
  const [preview, setPreview] = useState<CronPreview | null>(null);

  // Fill in the default storage and the first connection once they are known.
  useEffect(() => {
    if (editing) return;
    setValue((v) => ({
      ...v,
      storage_location: v.storage_location || storage.data?.find((s) => s.is_default)?.storage_name || storage.data?.[0]?.storage_name || "",
      connection_id: v.connection_id || connections.data?.[0]?.id || "",
    }));
  }, [editing, storage.data, connections.data]);

  useEffect(() => {
    const t = setTimeout(() => {
      api.validateConfiguration(value, editing?.id ?? null).then(setErrors, (e) => setSaveError(e));
      api.cronPreview(value.schedule_cron, value.time_zone).then(setPreview, () => setPreview(null));
    }, 200);
    return () => clearTimeout(t);
  }, [value, editing]);

  const set = <K extends keyof ConfigurationInput>(key: K, v: ConfigurationInput[K]) => {
    setValue((old) => ({ ...old, [key]: v }));
    setTouched((t) => new Set(t).add(key));
  };
  const shown = errors.filter((e) => touched.has(e.field) || touched.has("*"));

  const save = async () => {
    setTouched(new Set(["*"]));
    setSaveError(null);
    setSaving(true);
    try {
      const saved = editing ? await api.updateConfiguration(editing.id, value) : await api.createConfiguration(value);
      onDone(saved);
    } catch (e) {
      if (e instanceof ApiError && e.fields.length > 0) setErrors(e.fields);
      else setSaveError(e);
    } finally {
      setSaving(false);
    }
  };

  const check = (key: "compression_enabled" | "encryption_enabled" | "includes_tenant_data" | "includes_system_data" | "includes_logs" | "is_active" | "continuous_protection" | "whole_server" | "server_passwords", label: string) => (
    <label className="flex items-center gap-2 text-sm">
      <input type="checkbox" name={key} checked={value[key] === true} onChange={(e) => set(key, e.target.checked)} />
      {label}
    </label>
  );

  return (
    <Card data-testid="configuration-form">
      <CardHeader title={editing ? `Edit “${editing.configuration_name}”` : "New backup configuration"} description="What to back up, when, for how long, and where" />
      <CardContent className="space-y-4">
        <div className="grid grid-cols-2 gap-4">
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-name">Name</label>
            <input id="cfg-name" name="configuration_name" className={input} value={value.configuration_name}
              onChange={(e) => set("configuration_name", e.target.value)} placeholder="e.g. Nightly full backup" />
            <FieldMessage errors={shown} field="configuration_name" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-type">Backup type</label>
            <select id="cfg-type" name="backup_type" className={input} value={value.backup_type}
              onChange={(e) => set("backup_type", e.target.value as ConfigurationInput["backup_type"])}>
              <option value="full">Full</option>
              <option value="incremental">Incremental (changes since the previous backup)</option>
              <option value="differential">Differential (changes since the last full)</option>
            </select>
            <FieldMessage errors={shown} field="backup_type" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-cron">Schedule (cron)</label>
            <input id="cfg-cron" name="schedule_cron" className={`${input} font-mono`} value={value.schedule_cron}
              onChange={(e) => set("schedule_cron", e.target.value)} placeholder="0 2 * * *" />
            {preview && !errors.some((e) => e.field === "schedule_cron") && (
              <p className="text-sm text-slate-600 mt-1" data-testid="cron-description">
                {preview.description}
                <span className="block text-xs text-slate-500" data-testid="cron-time-zone">Time zone: {preview.time_zone}</span>
                {preview.next_runs.length > 0 && (
                  <span className="block text-xs text-slate-500">
                    Next: <Parts parts={preview.next_runs.map((r) => <When key={r} at={r} />)} />
                  </span>
                )}
              </p>
            )}
            <FieldMessage errors={errors} field="schedule_cron" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-retention">Retention (days)</label>
            <input id="cfg-retention" name="retention_days" type="number" className={input} value={value.retention_days}
              onChange={(e) => set("retention_days", Number.parseInt(e.target.value || "0", 10))} />
            <FieldMessage errors={shown} field="retention_days" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-connection">Database</label>
            <select id="cfg-connection" name="connection_id" className={input} value={value.connection_id}
              onChange={(e) => set("connection_id", e.target.value)}>
              <option value="">Choose a connection…</option>
              {connections.data?.map((c) => (
                <option key={c.id} value={c.id}>{c.name}</option>
              ))}
            </select>
            <FieldMessage errors={shown} field="connection_id" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-storage">Storage</label>
            <select id="cfg-storage" name="storage_location" className={input} value={value.storage_location}
              onChange={(e) => set("storage_location", e.target.value)}>
              <option value="">Choose a storage…</option>
              {storage.data?.map((s) => (
                <option key={s.id} value={s.storage_name}>{s.storage_name} ({s.storage_type})</option>
              ))}
            </select>
            <FieldMessage errors={shown} field="storage_location" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-secondary">Second copy (3-2-1)</label>
            <select id="cfg-secondary" name="secondary_storage" className={input} value={value.secondary_storage ?? ""}
              onChange={(e) => set("secondary_storage", e.target.value || null)}>
              <option value="">None</option>
              {storage.data?.filter((s) => s.storage_name !== value.storage_location).map((s) => (
                <option key={s.id} value={s.storage_name}>{s.storage_name} ({s.storage_type})</option>
              ))}
            </select>
            <FieldMessage errors={shown} field="secondary_storage" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-tz">Time zone</label>
            <input id="cfg-tz" name="time_zone" className={input} value={value.time_zone ?? ""} placeholder="the workstation's (e.g. Europe/Berlin)"
              onChange={(e) => set("time_zone", e.target.value || null)} />
            <FieldMessage errors={errors} field="time_zone" />
          </div>
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-missed">Runs missed while Safehold was closed</label>
            <select id="cfg-missed" name="missed_runs" className={input} value={value.missed_runs}
              onChange={(e) => set("missed_runs", e.target.value as ConfigurationInput["missed_runs"])}>
              <option value="run_once">Run once when Safehold starts</option>
              <option value="skip">Skip; wait for the next run</option>
            </select>
          </div>
        </div>
        <div className="grid grid-cols-3 gap-2">
          {check("includes_tenant_data", "Tenant data")}
          {check("includes_system_data", "System data")}
          {check("includes_logs", "Logs")}
          {check("compression_enabled", "Compress (zstd)")}
          {check("encryption_enabled", "Encrypt (AES-256-GCM)")}
          {check("is_active", "Active (runs on schedule)")}
          {check("continuous_protection", "Continuous protection (any second, PostgreSQL)")}
          {check("whole_server", "Every database of the server, and its roles (PostgreSQL)")}
        </div>
        <FieldMessage errors={shown} field="includes_tenant_data" />
        <FieldMessage errors={shown} field="continuous_protection" />
        <FieldMessage errors={shown} field="whole_server" />
        {value.whole_server === true && (
          <div>
            <label className="text-sm font-medium" htmlFor="cfg-exclude">Except the databases</label>
            <input id="cfg-exclude" name="exclude_databases" className={input} value={value.exclude_databases ?? ""}
              onChange={(e) => set("exclude_databases", e.target.value)} placeholder="e.g. scratch_*, old_reports" />
            <p className="text-xs text-slate-500 mt-1">Each run backs up every database the server has then (new ones too; templates left out), one archive each, with the roles and the databases' settings. * matches any run of characters.</p>
            <div className="mt-2">{check("server_passwords", "Keep the roles' password hashes (sealed; needs a superuser)")}</div>
          </div>
        )}
        <FieldMessage errors={shown} field="server_passwords" />
        <FieldMessage errors={shown} field="exclude_databases" />
        {saveError != null && <ErrorBox error={saveError} />}
        <div className="flex gap-2 justify-end">
          <Button variant="outline" onClick={() => onDone(null)}>Cancel</Button>
          <Button onClick={save} disabled={saving || errors.some((e) => e.field === "schedule_cron")} data-testid="save-configuration">
            {saving ? "Saving…" : editing ? "Save changes" : "Create configuration"}
          </Button>
        </div>
      </CardContent>
    </Card>
  );
}
