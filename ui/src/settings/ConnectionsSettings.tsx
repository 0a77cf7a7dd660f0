import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ArrowLeft, Database, FolderOpen } from "lucide-react";
import { api, ApiError, type Connection, type ConnectionInput, type ConnectionReport, type FieldError } from "../api";
import { Badge, Button, Card, CardContent, CardHeader } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { formatFileSize } from "../components/format";
import { queryKeys } from "../api/queries";

const field = "w-full rounded-md border border-slate-300 px-3 py-2 text-sm";

function blank(): ConnectionInput {
  return {
    name: "", kind: "postgres", host: "127.0.0.1", port: 5432, database_name: "", username: "postgres",
    tls_mode: "prefer", sqlite_path: null, password: null, tenant_column: "tenant_id", tenants_table: "tenants",
  };
}

function fromConnection(c: Connection): ConnectionInput {
  return {
    name: c.name, kind: c.kind, host: c.host, port: c.port, database_name: c.database_name, username: c.username,
    tls_mode: c.tls_mode, sqlite_path: c.sqlite_path, password: null, tenant_column: c.tenant_column, tenants_table: c.tenants_table,
  };
}

export function Report({ report }: { report: ConnectionReport }) {
  return (
    <div className="rounded-md border border-green-200 bg-green-50 p-3 text-sm" data-testid="connection-report">
      <div className="font-medium">Connected: {report.server_version}</div>
      <div>{formatFileSize(report.size_bytes)} · {report.table_count} tables</div>
      <div>
        {report.tenant_tables.length === 0
          ? "No tenant tables found."
          : `Tenant tables: ${report.tenant_tables.map((t) => (t.schema ? `${t.schema}.${t.name}` : t.name)).join(", ")}`}
      </div>
    </div>
  );
}

function ConnectionForm({ editing, onDone }: { editing: Connection | null; onDone: () => void }) {
  const [value, setValue] = useState<ConnectionInput>(() => (editing ? fromConnection(editing) : blank()));
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [report, setReport] = useState<ConnectionReport | null>(null);
  const [busy, setBusy] = useState(false);
  const set = <K extends keyof ConnectionInput>(k: K, v: ConnectionInput[K]) => setValue((o) => ({ ...o, [k]: v }));
  const msg = (f: string) => errors.find((e) => e.field === f)?.message;

  const run = async (what: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    setErrors([]);
    setReport(null);
    try {
      await what();
    } catch (e) {
      if (e instanceof ApiError && e.fields.length > 0) setErrors(e.fields);
      else setError(e);
    } finally {
      setBusy(false);
    }
  };
  // Tests what is filled in, before saving. (A stored password is used by "Test" on the saved connection.)
  const test = () => run(async () => setReport(await api.probeConnection(value)));
  const save = () => run(async () => {
    if (editing) await api.updateConnection(editing.id, value);
    else await api.addConnection(value);
    onDone();
  });
  const pick = async () => {
    const path = await api.pickSqliteFile();
    if (path) set("sqlite_path", path);
  };

  return (
    <Card data-testid="connection-form">
      <CardHeader title={editing ? `Edit “${editing.name}”` : "Add a connection"} description="A platform database to back up" />
      <CardContent className="space-y-3">
        <div className="grid grid-cols-2 gap-3">
          <label className="text-sm">Name
            <input className={field} name="name" value={value.name} onChange={(e) => set("name", e.target.value)} />
            {msg("name") && <span className="text-red-600 text-sm">{msg("name")}</span>}
          </label>
          <label className="text-sm">Kind
            <select className={field} name="kind" value={value.kind ?? "postgres"} onChange={(e) => set("kind", e.target.value as ConnectionInput["kind"])}>
              <option value="postgres">PostgreSQL</option>
              <option value="sqlite">SQLite file</option>
            </select>
          </label>
          {value.kind === "sqlite" ? (
            <div className="col-span-2 text-sm">
              SQLite database file
              <div className="flex gap-2">
                <input className={field} name="sqlite_path" value={value.sqlite_path ?? ""} onChange={(e) => set("sqlite_path", e.target.value)} />
                <Button variant="outline" onClick={pick}><FolderOpen className="w-4 h-4" /> Choose…</Button>
              </div>
              {msg("sqlite_path") && <span className="text-red-600 text-sm">{msg("sqlite_path")}</span>}
            </div>
          ) : (
            <>
              <label className="text-sm">Host
                <input className={field} name="host" value={value.host ?? ""} onChange={(e) => set("host", e.target.value)} />
                {msg("host") && <span className="text-red-600 text-sm">{msg("host")}</span>}
              </label>
              <label className="text-sm">Port
                <input className={field} name="port" type="number" value={value.port ?? 5432} onChange={(e) => set("port", Number.parseInt(e.target.value || "0", 10))} />
                {msg("port") && <span className="text-red-600 text-sm">{msg("port")}</span>}
              </label>
              <label className="text-sm">Database
                <input className={field} name="database_name" value={value.database_name ?? ""} onChange={(e) => set("database_name", e.target.value)} />
                {msg("database_name") && <span className="text-red-600 text-sm">{msg("database_name")}</span>}
              </label>
              <label className="text-sm">User
                <input className={field} name="username" value={value.username ?? ""} onChange={(e) => set("username", e.target.value)} />
                {msg("username") && <span className="text-red-600 text-sm">{msg("username")}</span>}
              </label>
              <label className="text-sm">Password {editing?.has_password && <span className="text-slate-500">(stored in the OS keychain; leave empty to keep)</span>}
                <input className={field} name="password" type="password" autoComplete="off" value={value.password ?? ""}
                  onChange={(e) => set("password", e.target.value === "" ? null : e.target.value)} />
              </label>
              <label className="text-sm">TLS
                <select className={field} name="tls_mode" value={value.tls_mode ?? "prefer"} onChange={(e) => set("tls_mode", e.target.value as ConnectionInput["tls_mode"])}>
                  <option value="disable">disable</option>
                  <option value="prefer">prefer</option>
                  <option value="require">require</option>
                  <option value="verify-ca">verify-ca</option>
                  <option value="verify-full">verify-full</option>
                </select>
              </label>
            </>
          )}
          <label className="text-sm">Tenant column
            <input className={field} name="tenant_column" value={value.tenant_column ?? ""} onChange={(e) => set("tenant_column", e.target.value)} />
          </label>
          <label className="text-sm">Tenants table
            <input className={field} name="tenants_table" value={value.tenants_table ?? ""} onChange={(e) => set("tenants_table", e.target.value)} />
          </label>
        </div>
        {report && <Report report={report} />}
        {error != null && <ErrorBox error={error} />}
        <div className="flex justify-end gap-2">
          <Button variant="outline" onClick={onDone}>Cancel</Button>
          <Button variant="outline" onClick={test} disabled={busy} data-testid="probe-connection">Test connection</Button>
          <Button onClick={save} disabled={busy} data-testid="save-connection">{editing ? "Save changes" : "Add connection"}</Button>
        </div>
      </CardContent>
    </Card>
  );
}

function ConnectionRow({ connection, onEdit }: { connection: Connection; onEdit: () => void }) {
  const queryClient = useQueryClient();
  const test = useMutation({ mutationFn: () => api.testConnection(connection.id) });
  const remove = useMutation({
    mutationFn: () => api.removeConnection(connection.id),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: queryKeys.connections }),
  });
  const address = connection.kind === "sqlite"
    ? connection.sqlite_path
    : `${connection.username}@${connection.host}:${connection.port}/${connection.database_name}`;
  return (
    <div className="p-4 border rounded-lg space-y-2" data-testid="connection" data-name={connection.name}>
      <div className="flex items-center justify-between">
        <div className="flex items-center gap-3">
          <Database className="w-5 h-5 text-blue-500" />
          <div>
            <div className="font-medium">{connection.name} <Badge variant="secondary">{connection.kind}</Badge></div>
            <div className="text-sm text-slate-500 font-mono">{address}</div>
          </div>
        </div>
        <div className="flex gap-2">
          <Button size="sm" variant="outline" onClick={() => test.mutate()} disabled={test.isPending}>
            {test.isPending ? "Testing…" : "Test connection"}
          </Button>
          <Button size="sm" variant="outline" onClick={onEdit}>Edit</Button>
          <Button size="sm" variant="ghost" onClick={() => remove.mutate()} disabled={remove.isPending}>Remove</Button>
        </div>
      </div>
      {test.data && <Report report={test.data} />}
      {test.isError && <ErrorBox error={test.error} />}
      {remove.isError && <ErrorBox error={remove.error} />}
    </div>
  );
}

/** Settings: the connections (platform databases) that Safehold backs up. */
export function ConnectionsSettings({ onClose }: { onClose: () => void }) {
  const queryClient = useQueryClient();
  const query = useQuery({ queryKey: queryKeys.connections, queryFn: api.listConnections });
  const [form, setForm] = useState<{ editing: Connection | null } | null>(null);
  const done = () => {
    setForm(null);
    queryClient.invalidateQueries({ queryKey: queryKeys.connections });
  };
  return (
    <div className="space-y-4">
      <div className="flex items-center gap-3">
        <Button variant="ghost" onClick={onClose} data-testid="close-settings"><ArrowLeft className="w-4 h-4" /> Back</Button>
        <h1 className="text-2xl font-bold">Connections</h1>
      </div>
      {form && <ConnectionForm key={form.editing?.id ?? "new"} editing={form.editing} onDone={done} />}
      <Card>
        <CardHeader title="Platform databases" description="Passwords are kept in the OS keychain, never in Safehold's catalog"
          action={!form && <Button size="sm" onClick={() => setForm({ editing: null })} data-testid="add-connection">Add connection</Button>} />
        <CardContent>
          <QueryView query={query} what="connections">
            {(list) => list.length === 0 ? <Empty>No connections yet.</Empty> : (
              <div className="space-y-3">
                {list.map((c) => <ConnectionRow key={c.id} connection={c} onEdit={() => setForm({ editing: c })} />)}
              </div>
            )}
          </QueryView>
        </CardContent>
      </Card>
    </div>
  );
}
